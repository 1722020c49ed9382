"""Shared fixtures: golden cases, seeded RNG, backends available here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"
GOLDEN_CASES = ["gptneox_tiny_init", "pythia70m_shape_init", "student_t3", "lognormal", "student_t3_thr200_fdigi1"]


def load_golden(name: str) -> tuple[dict, dict]:
    """(npz arrays, json dict) of a golden case."""
    arrays = dict(np.load(GOLDEN_DIR / f"{name}.npz"))
    meta = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    return arrays, meta


def cpu_backends() -> list[str]:
    return ["numpy", "torch"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def pytest_collection_modifyitems(config, items):
    import torch

    has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
