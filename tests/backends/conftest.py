"""Fixtures of the kernel tests: the CPU harness, built once per session."""

from __future__ import annotations

import pytest

from tests.backends.kernel_harness import HarnessRunner, build, compiler


@pytest.fixture(scope="session")
def harness_dir(tmp_path_factory):
    if compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) on PATH: the CPU kernel harness cannot be built")
    return tmp_path_factory.mktemp("kernel_harness")


@pytest.fixture(scope="session")
def harness_lib(harness_dir):
    return build(harness_dir)


@pytest.fixture
def runner(harness_lib):
    return HarnessRunner(harness_lib)
