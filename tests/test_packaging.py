"""Packaging: one version source, the MIT licence in the metadata, dependency floors, the built wheel.

The wheel test builds from a copy of the tracked files (nothing is written into the checkout) with
pip's default build isolation: the isolated environment holds only the declared build requirements,
so the build proves that the version is read from ``neuromfa_callback/__init__.py`` without
importing the package (which would need numpy and torch there).
"""

from __future__ import annotations

import ast
import email
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import neuromfa_callback

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _floor(requirement: str) -> tuple[int, ...]:
    """``"torch>=2.10"`` -> ``(2, 10)``."""
    match = re.fullmatch(r"[A-Za-z0-9_.\-]+>=([0-9.]+)", requirement)
    assert match, requirement
    return tuple(int(p) for p in match[1].split("."))


def _dependency(name: str) -> str:
    (req,) = [d for d in PYPROJECT["project"]["dependencies"] if re.match(rf"{name}\b", d)]
    return req


def test_version_has_one_source():
    """pyproject reads the version from ``__version__`` (a literal that setuptools finds without importing)."""
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "neuromfa_callback.__version__"}
    tree = ast.parse((ROOT / "neuromfa_callback" / "__init__.py").read_text())
    (value,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__version__" for t in n.targets)]
    assert isinstance(value, ast.Constant) and value.value == neuromfa_callback.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", value.value)


def test_cli_version_is_the_installed_metadata_version():
    """``neuromfa --version`` (the installed console script) prints the version pip recorded."""
    script = Path(sys.executable).with_name("neuromfa")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "neuromfa_callback"]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    installed = importlib.metadata.version("neuromfa-callback")
    assert proc.stdout.strip() == f"neuromfa {installed}"
    assert installed == neuromfa_callback.__version__


def test_license_is_mit_and_declared():
    """LICENSE holds the MIT text; pyproject declares it as a PEP 639 expression and licence file."""
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert _floor(setuptools) >= (77, 0, 1)  # first setuptools with PEP 639 (`license` string, `license-files`)


def test_dependency_floors():
    """Floors the code relies on (see the commit message for each): W&B incremental tables, safe torch.load."""
    assert _floor(_dependency("wandb")) >= (0, 20)  # wandb.Table(log_mode="INCREMENTAL") appeared in 0.20.0
    assert _floor(_dependency("torch")) >= (2, 4)  # DTensor / FSDP2 fully_shard (older torch: pickles refused at load)
    readme = " ".join((ROOT / "README.md").read_text().split())  # the README wraps lines
    assert f"the package needs `{_dependency('torch')}`" in readme


def _tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    src = _tracked_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("neuromfa_callback-*.whl")
    return whl


def test_wheel_metadata_and_contents(wheel):
    """The wheel: version from __init__, MIT licence file and expression, console script, every module."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = f"neuromfa_callback-{neuromfa_callback.__version__}.dist-info"
        meta = email.message_from_bytes(zf.read(f"{dist_info}/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        licence = zf.read(f"{dist_info}/licenses/LICENSE").decode()
    assert meta["Version"] == neuromfa_callback.__version__
    assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
    assert licence == (ROOT / "LICENSE").read_text()
    assert "neuromfa = neuromfa_callback.cli:main" in entry_points
    requires = meta.get_all("Requires-Dist")
    assert _dependency("torch") in requires and _dependency("wandb") in requires
    package = ROOT / "neuromfa_callback"
    sources = {p.relative_to(ROOT).as_posix() for pattern in ("**/*.py", "py.typed", "backends/kernels/*.cu")
               for p in package.glob(pattern) if "__pycache__" not in p.parts}
    assert sources <= names, sorted(sources - names)
    assert not any(n.startswith("tests/") for n in names)
