"""SnapshotMonitor units: partial failures keep what can be kept."""

from __future__ import annotations

import math
import os
import threading

import pytest
import torch

from neuromfa_callback.monitor import SnapshotMonitor


def _mlp_with_outliers():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    with torch.no_grad():
        for lin in mlp:
            lin.weight.normal_(0, 0.02)
            lin.weight[0, 0] = 100.0  # one huge weight: rescaling to RMS 0.02 pushes every other |w| below 1/150
    return mlp


@pytest.mark.parametrize("asynchronous", [False, True])
def test_rms_analysis_failing_alone_keeps_the_raw_values(asynchronous):
    """No node qualifies after rescaling, but the raw network is fine: raw logged, *_rms NaN, one warning."""
    mon = SnapshotMonitor(samples=2, neurons_per_layer=16, asynchronous=asynchronous)
    with pytest.warns(RuntimeWarning, match=r"scale-controlled analysis at step 0 failed: no node has more than 10"):
        mon.snapshot(_mlp_with_outliers(), 0)
        (rec,) = mon.flush()
    mon.close()
    assert math.isfinite(rec["alpha0"]) and rec["emergence"] == 0.0
    assert math.isnan(rec["alpha0_rms"]) and math.isnan(rec["emergence_rms"])
    assert "error" not in rec and rec["errors"] == 0


def test_state_dict_round_trip_keeps_baseline_and_history():
    """Finished (drained) snapshots travel in the state: baseline, history, last step, no pending step."""
    mon = SnapshotMonitor(samples=1, neurons_per_layer=16, scale_control=False, asynchronous=False)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    mon.snapshot(mlp, 0)
    mon.snapshot(mlp, 5)
    assert [r["step"] for r in mon.drain()] == [0, 5]
    state = mon.state_dict()
    assert state["pending_steps"] == [] and state["version"] == 2
    other = SnapshotMonitor(samples=1, neurons_per_layer=16, scale_control=False)
    other.load_state_dict(state)
    assert other.resumed and other.last_step == 5
    assert other.baseline == mon.baseline and other.baseline["alpha0"] == mon.history[0]["alpha0"]
    assert [r["step"] for r in other.history] == [0, 5]
    assert other.steps_to_redo(5) == []
    mon.close()


def test_state_dict_never_waits_and_records_the_unfinished_steps(monkeypatch):
    """``state_dict()`` returns at once while the worker is busy; the unfinished steps are saved, and on
    resume the one at the checkpoint's step is redone (same weights) while an earlier one is reported lost.
    (The baseline is finished first: a pending baseline is another matter, see
    ``tests/integration/test_faults.py::test_checkpoint_while_the_baseline_is_still_pending_keeps_the_baseline_on_resume``.)"""
    import threading
    import time

    from neuromfa_callback import monitor as monitor_mod

    gate = threading.Event()
    original = monitor_mod._Analysis.__call__
    calls = []

    def blocked(self):
        calls.append(1)
        if len(calls) > 1:  # the baseline runs; every later analysis waits for the gate
            gate.wait(30)
        return original(self)

    monkeypatch.setattr(monitor_mod._Analysis, "__call__", blocked)
    mon = SnapshotMonitor(samples=1, neurons_per_layer=16, scale_control=False, asynchronous=True, max_pending=4)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    try:
        mon.snapshot(mlp, 0)
        assert [r["step"] for r in mon.flush()] == [0]
        mon.snapshot(mlp, 5)
        mon.snapshot(mlp, 10)
        t0 = time.perf_counter()
        state = mon.state_dict()
        assert time.perf_counter() - t0 < 1.0  # the worker is still blocked: nothing was awaited
        assert state["pending_steps"] == [5, 10] and [r["step"] for r in state["history"]] == [0]
        assert state["last_step"] == 10 and state["baseline"] == mon.baseline is not None
        assert mon.drain() == []  # not finished yet: nothing to hand out
    finally:
        gate.set()
    assert [r["step"] for r in mon.flush()] == [5, 10]
    mon.close()
    other = SnapshotMonitor(samples=1, neurons_per_layer=16, scale_control=False)
    other.load_state_dict(state)
    assert other.resumed and other.last_step == 10 and other.baseline == mon.baseline
    with pytest.warns(RuntimeWarning, match=r"snapshots at steps \[5\] were not finished before the checkpoint"):
        assert other.steps_to_redo(10) == [10]
    assert other.steps_to_redo(10) == []  # reported once


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_worker_is_an_idle_priority_single_threaded_process_and_the_monitor_uses_it():
    """The analysis never competes with training: it runs in another process (no shared GIL) at SCHED_IDLE
    with one torch thread and one BLAS thread; the training process keeps its policy and threads; the
    asynchronous record equals the synchronous one; close() stops the process and joins the feeder."""
    from threadpoolctl import threadpool_info

    from neuromfa_callback._worker import AnalysisWorker, _describe_priority

    worker = AnalysisWorker()
    try:
        policy, torch_threads, blas, pid = worker.call_in_child(_describe_priority)
    finally:
        worker.shutdown()
    assert (policy, torch_threads) == ("SCHED_IDLE", 1) and set(blas) <= {1} and pid != os.getpid()
    assert os.sched_getscheduler(0) != os.SCHED_IDLE
    assert all(i["num_threads"] >= 1 for i in threadpool_info())

    records = []
    for asynchronous in (True, False):
        mon = SnapshotMonitor(samples=2, neurons_per_layer=16, scale_control=True, asynchronous=asynchronous)
        mon.snapshot(_mlp_with_outliers(), 0)
        (rec,) = mon.flush()
        assert isinstance(mon._executor, AnalysisWorker) if asynchronous else mon._executor is None
        mon.close()
        records.append(rec)
    assert records[0]["alpha0"] == records[1]["alpha0"] and records[0]["by_depth"] == records[1]["by_depth"]
    assert not [t for t in threading.enumerate() if t.name.startswith("neuromfa")]  # joined by close()


def test_history_in_ram_is_bounded_by_history_window_while_the_file_keeps_everything(tmp_path):
    """``history_window=4``: the records in RAM (and in the checkpoint state) never exceed 4, always span
    the run (the first and the newest kept, the rest on a doubling grid); the history file has all."""
    from neuromfa_callback.history import load_history
    from neuromfa_callback.monitor import ThinnedHistory

    h = ThinnedHistory(cap=4)
    for s in range(37):
        h.append({"step": s})
        assert len(h) <= 4 and h[0]["step"] == 0 and h[-1]["step"] == s
        kept = [r["step"] for r in h]
        assert kept == sorted(set(kept))
        assert all(k % h.stride == 0 for k in kept[:-1])
    with pytest.raises(ValueError, match=r"Expected `history_window` >= 2, got 1"):
        ThinnedHistory(cap=1)

    hist = tmp_path / "h.jsonl"
    mon = SnapshotMonitor(samples=1, neurons_per_layer=16, scale_control=False, asynchronous=False,
                          history_window=4, history_path=hist)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    for step in range(0, 50, 5):
        mon.snapshot(mlp, step)
        mon.drain()
        assert len(mon.history) <= 4
    mon.close()
    assert [r["step"] for r in load_history(hist)] == list(range(0, 50, 5))
    assert mon.history[0]["step"] == 0 and mon.history[-1]["step"] == 45
    state = mon.state_dict()
    assert len(state["history"]) <= 4
    other = SnapshotMonitor(samples=1, neurons_per_layer=16, history_window=4)
    other.load_state_dict(state)
    assert [r["step"] for r in other.history] == [r["step"] for r in mon.history]


def test_worker_receives_prepared_numpy_chunks_and_never_imports_torch():
    """The feeder thread turns the snapshot's networks into NumPy chunks before shipping them, so the child
    process unpickles no tensor and never imports torch (that import is what made it slow to start and
    heavy to run). Before the fix the feeder skipped the preparation and the child imported torch."""
    from neuromfa_callback._worker import AnalysisWorker

    mon = SnapshotMonitor(samples=2, neurons_per_layer=16, scale_control=True, asynchronous=True)
    try:
        mon.snapshot(_mlp_with_outliers(), 0)
        (rec,) = mon.flush()
        assert isinstance(mon._executor, AnalysisWorker) and math.isfinite(rec["alpha0"])
        imported = mon._executor.call_in_child(eval, "sorted(m for m in __import__('sys').modules if m == 'torch')")
    finally:
        mon.close()
    assert imported == []
