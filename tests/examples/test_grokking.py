"""Smoke test of ``examples/grokking.py``: a tiny run writes every output, and the summary finds the steps."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from neuromfa_callback.history import load_history

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "grokking.py"


@pytest.fixture(scope="module")
def grokking():
    """The example script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("grokking_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(120)
def test_tiny_run_writes_all_outputs(grokking, tmp_path):
    out = tmp_path / "run"
    summary = grokking.main(["--max-steps", "30", "--every", "10", "--p", "11", "--samples", "2", "--output", str(out)])

    for name in ("history.jsonl", "metrics.csv", "grokking.png", "spectra.png", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    history = load_history(out / "history.jsonl")
    assert [r["step"] for r in history] == [0, 10, 20, 30]
    assert history[0]["emergence"] == 0.0 and history[0]["emergence_rms"] == 0.0
    assert all(np.isfinite(r[k]) for r in history for k in ("alpha0", "width", "emergence", "emergence_rms", "weighted_degree"))

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    eval_steps = sorted(int(r["step"]) for r in rows if r.get("val/acc"))
    mfa_steps = sorted(int(r["step"]) for r in rows if r.get("neuromfa/emergence"))
    assert eval_steps == mfa_steps == [0, 10, 20, 30]  # accuracy and NeuroMFA of the same weights share a step

    saved = json.loads((out / "summary.json").read_text())
    assert saved["settings"]["p"] == 11 and saved["at"]["init"]["step"] == 0 and saved["at"]["end"]["step"] == 30
    assert summary["at"]["end"]["E"] == pytest.approx(history[-1]["emergence"])
    assert set(summary["spearman_with_val_acc"]) >= {"E", "E_rms", "weighted_degree"}


def test_summarise_finds_memorisation_and_grokking(grokking):
    steps = np.arange(0, 1100, 100)
    train = np.array([0.0, 0.5, 1.0] + [1.0] * 8)
    val = np.array([0.0, 0.01, 0.02, 0.05, 0.05, 0.1, 0.4, 0.7, 0.95, 1.0, 1.0])
    e = np.linspace(0, 1, steps.size)
    cols = {"step": steps, "train/acc": train, "val/acc": val, "emergence": e, "emergence_rms": e / 2}
    for key in grokking.QUANTITIES.values():
        cols.setdefault(key, np.linspace(1, 2, steps.size))
    s = grokking.summarise(cols)
    assert (s["step_memorised"], s["step_climb"], s["step_grokked"]) == (200, 600, 800)
    assert s["at"]["before_grok"]["step"] == 700
    assert s["phases"]["climb"]["E"] == pytest.approx(0.2)
    assert s["spearman_with_step"]["E"] == pytest.approx(1.0)
    assert s["spearman_val_acc_with_step"] > 0.99


def test_spearman_ties_and_nan(grokking):
    assert grokking.spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
    assert grokking.spearman([1, 1, 2, 3], [1, 1, 2, 3]) == pytest.approx(1.0)
    assert np.isnan(grokking.spearman([1, 2], [1, 2]))
    assert np.isnan(grokking.spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.timeout(120)
def test_wandb_offline_run_holds_accuracy_and_emergence(grokking, tmp_path, monkeypatch):
    from tests.helpers.wandb_reader import installed_wandb_is_checked, read_records, scalars, wait_for_run_file

    ok, why = installed_wandb_is_checked()
    if not ok:
        pytest.skip(why)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    out = tmp_path / "run"
    grokking.main(["--max-steps", "20", "--every", "10", "--p", "11", "--samples", "2", "--output", str(out), "--wandb"])
    records = read_records(wait_for_run_file(out))
    for key in ("val/acc", "train/acc", "neuromfa/emergence", "neuromfa/emergence_rms"):
        assert [s for s, _ in scalars(records, key, step_key="trainer/global_step")] == [0, 10, 20], key
