"""Two CPU processes (DDP, gloo): samples split across ranks, logged once, equal to one process."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuromfa_callback import NeuroMFA
from neuromfa_callback.history import load_history
from tests._models import TinyLM

SCRIPT = Path(__file__).with_name("ddp_script.py")


@pytest.mark.timeout(600)
def test_ddp_two_processes_log_once_and_match_single_process(tmp_path):
    """Ranks split the 4 samples (and their nulls) and reduce their partition sums: the history, written once,
    equals one process analysing every sample of the final weights: whole network, per depth, null."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "4", "1"], env=env, capture_output=True, text=True,
                          timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = load_history(tmp_path / "history.jsonl")
    assert [r["step"] for r in history] == [0, 4, 8]  # written once, by rank 0

    with open(tmp_path / "csv" / "run" / "version_0" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("neuromfa/alpha0")]
    assert sorted(int(r["step"]) for r in rows) == [0, 4, 8]
    depth_key = "neuromfa/depth/gpt_neox.layers.1/alpha0"
    assert all(r.get(depth_key) for r in rows), sorted(rows[0])  # per-depth scalars logged too (once)

    module = TinyLM()
    module.load_state_dict(torch.load(tmp_path / "final.pt", weights_only=True))
    last = history[-1]
    for scale, suffix in ((None, ""), ("rms", "_rms")):
        metric = NeuroMFA(samples=4, neurons_per_layer=16, scale=scale, null=1 if scale is None else 0)
        metric.update(module)
        a = metric.compute_analysis()
        assert last[f"alpha0{suffix}"] == pytest.approx(a.alpha0_mean, abs=1e-12)
        assert last[f"width{suffix}"] == pytest.approx(a.width_mean, abs=1e-12)
        assert last[f"alpha0{suffix}_std"] == pytest.approx(a.alpha0_std, abs=1e-12)
        assert last[f"weighted_degree{suffix}"] == pytest.approx(a.weighted_degree, rel=1e-12)
        assert [d["name"] for d in last["by_depth"]] == [d.name for d in a.by_depth]
        for row, d in zip(last["by_depth"], a.by_depth):
            assert row[f"alpha0{suffix}"] == pytest.approx(d.alpha0_mean, abs=1e-12)
            assert row[f"width{suffix}"] == pytest.approx(d.width_mean, abs=1e-12)
        if scale is None:
            for key in ("alpha0_null", "alpha0_null_std", "width_null", "emergence_null", "emergence_null_std"):
                assert last[key] == pytest.approx(a.scalars()[key], abs=1e-12), key


@pytest.mark.timeout(600)
def test_a_failure_on_one_rank_does_not_hang_the_checkpoint_or_the_run(tmp_path):
    """Rank 1's analysis of step 4 raises; the step-4 checkpoint is saved right after (state_dict() does not
    communicate), the ranks agree at the next snapshot that step 4 failed (logged once, with an error, on
    every rank alike), and the run finishes: steps 0, 4, 8 in the history, 0 and 8 with values."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    script = Path(__file__).with_name("ddp_fail_script.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"]
    history = load_history(tmp_path / "history.jsonl")
    assert [r["step"] for r in history] == [0, 4, 8]
    assert "injected failure on rank 1" in history[1]["error"] or "another rank" in history[1]["error"]
    assert history[0]["alpha0"] == history[0]["alpha0"] and history[2]["alpha0"] == history[2]["alpha0"]  # not NaN
    assert (tmp_path / "done_rank0.txt").read_text() == (tmp_path / "done_rank1.txt").read_text() == "[0, 4, 8]"


@pytest.mark.timeout(600)
def test_with_on_error_raise_the_checkpoint_after_a_one_rank_failure_still_saves(tmp_path):
    """on_error="raise": the step-4 checkpoint saves (state_dict() neither finalises nor communicates, so the
    failure cannot surface, on one rank only, inside checkpointing), then every rank raises the same error
    at the next snapshot, where they agree on it: the run stops, it does not hang."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    script = Path(__file__).with_name("ddp_fail_script.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "raise"], env=env, capture_output=True,
                          text=True, timeout=540)
    assert proc.returncode != 0
    assert "NeuroMFA analysis of step 4 failed" in proc.stdout + proc.stderr
    assert (tmp_path / "ckpt" / "epoch=0-step=4.ckpt").is_file()
