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
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "4"], env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = load_history(tmp_path / "history.jsonl")
    assert [r["step"] for r in history] == [0, 4, 8]  # written once, by rank 0

    with open(tmp_path / "csv" / "run" / "version_0" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("neuromfa/alpha0")]
    assert sorted(int(r["step"]) for r in rows) == [0, 4, 8]

    module = TinyLM()
    module.load_state_dict(torch.load(tmp_path / "final.pt", weights_only=True))
    for scale, key in ((None, "alpha0"), ("rms", "alpha0_rms")):
        metric = NeuroMFA(samples=4, neurons_per_layer=16, scale=scale)
        metric.update(module)
        out = metric.compute()
        assert history[-1][key] == pytest.approx(float(out["alpha0"]), abs=1e-12)
        assert history[-1][key.replace("alpha0", "width")] == pytest.approx(float(out["width"]), abs=1e-12)
        assert history[-1][key.replace("alpha0", "alpha0") + "_std"] == pytest.approx(float(out["alpha0_std"]), abs=1e-12)
