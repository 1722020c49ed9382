"""Fault injection: the callback never costs a user their training run or their data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from neuromfa_callback import NeuroMFA, NeuroMFACallback
from neuromfa_callback.history import load_history
from tests._models import RecordingLogger, TinyLM

KILL_SCRIPT = Path(__file__).with_name("kill_script.py")


def _fit(tmp_path, cb, logger=None, max_steps=8, module=None, callbacks_after=(), **kw):
    trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_steps=max_steps,
                         logger=logger if logger is not None else RecordingLogger(), callbacks=[cb, *callbacks_after],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **kw)
    trainer.fit(module or TinyLM())
    return trainer


@pytest.fixture
def failing_worker(monkeypatch):
    """The analysis raises (in the worker process, or inline when synchronous) for every snapshot after the baseline."""
    from neuromfa_callback import monitor as monitor_mod
    from tests.integration._failing import FailingAnalysis

    FailingAnalysis.made = 0
    monkeypatch.setattr(monitor_mod, "_Analysis", FailingAnalysis)
    return FailingAnalysis


def _neuromfa_threads():
    return [t for t in threading.enumerate() if t.name.startswith("neuromfa")]


def test_worker_error_warns_once_counts_and_training_continues(tmp_path, failing_worker):
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, history_path=tmp_path / "h.jsonl")
    with pytest.warns(RuntimeWarning) as rec:
        trainer = _fit(tmp_path, cb, logger, max_steps=8)
    assert trainer.global_step == 8  # training finished
    msgs = [str(w.message) for w in rec if "analysis of step" in str(w.message)]
    assert len(msgs) == 1 and "injected worker failure" in msgs[0] and "Traceback" in msgs[0]
    errors = logger.values("neuromfa/errors")
    assert errors == {0: 0.0, 2: 1.0, 4: 2.0, 6: 3.0, 8: 4.0}
    assert [r["step"] for r in load_history(tmp_path / "h.jsonl")] == [0, 2, 4, 6, 8]
    assert _neuromfa_threads() == []


def test_worker_error_with_on_error_raise_stops_training(tmp_path, failing_worker):
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, on_error="raise", asynchronous=False)
    with pytest.raises(RuntimeError, match=r"NeuroMFA analysis of step 2 failed.*injected worker failure"):
        _fit(tmp_path, cb, max_steps=8)
    assert _neuromfa_threads() == []


def test_async_worker_error_with_on_error_raise_surfaces_at_a_later_hook(tmp_path, failing_worker):
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, on_error="raise")
    with pytest.raises(RuntimeError, match=r"NeuroMFA analysis of step 2 failed"):
        _fit(tmp_path, cb, max_steps=50)
    assert cb.monitor.last_step < 50
    assert _neuromfa_threads() == []


class _BrokenLogger(RecordingLogger):
    @property
    def name(self):
        return "broken"

    def log_metrics(self, metrics, step=None):
        if any(k.startswith("neuromfa/") for k in metrics):
            raise OSError(f"[Errno 13] Permission denied: 'wandb/run-{step}'")
        super().log_metrics(metrics, step)


def test_a_raising_logger_does_not_stop_training_and_history_keeps_everything(tmp_path):
    hist = tmp_path / "h.jsonl"
    good = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, history_path=hist)
    with pytest.warns(RuntimeWarning, match=r"could not log scalars of step \d+ to _BrokenLogger.*Permission denied.*history file"):
        trainer = _fit(tmp_path, cb, [_BrokenLogger(), good], max_steps=6)
    assert trainer.global_step == 6
    assert [r["step"] for r in load_history(hist)] == [0, 2, 4, 6]
    assert good.neuromfa_steps() == [0, 2, 4, 6]  # the other logger still gets everything


def test_training_exception_flushes_pending_snapshots_and_joins_the_worker(tmp_path):
    class Crashing(TinyLM):
        def training_step(self, batch, batch_idx):
            if self.global_step == 5:
                raise ValueError("injected training failure")
            return super().training_step(batch, batch_idx)

    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=2, samples=2, neurons_per_layer=16, history_path=hist)
    with pytest.raises(ValueError, match="injected training failure"):
        _fit(tmp_path, cb, max_steps=20, module=Crashing())
    assert [r["step"] for r in load_history(hist)] == [0, 2, 4]  # every snapshot taken was written
    assert cb.monitor.pending_steps == []
    assert _neuromfa_threads() == []


@pytest.mark.timeout(600)
def test_sigkill_loses_no_finished_snapshot_and_resume_continues_without_gaps(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    hist = tmp_path / "history.jsonl"
    proc = subprocess.Popen([sys.executable, str(KILL_SCRIPT), str(tmp_path), "200"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            ckpts = list((tmp_path / "ckpt").glob("step=*.ckpt")) if (tmp_path / "ckpt").exists() else []
            steps = [int(p.stem.split("=")[1]) for p in ckpts]
            if hist.exists() and len(hist.read_text().splitlines()) >= 6 and steps and max(steps) >= 8:
                break
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        else:
            pytest.fail("training did not reach 6 snapshots in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = hist.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]  # every line parses
    steps = [r["step"] for r in records]
    assert steps == list(range(0, 2 * len(steps), 2)) and len(steps) >= 6

    last_ckpt = max((tmp_path / "ckpt").glob("step=*.ckpt"), key=lambda p: int(p.stem.split("=")[1]))
    resumed_at = int(last_ckpt.stem.split("=")[1])
    target = resumed_at + 6
    out = subprocess.run([sys.executable, str(KILL_SCRIPT), str(tmp_path), str(target), str(last_ckpt)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    final = [r["step"] for r in load_history(hist)]
    assert final == list(range(0, target + 1, 2))  # no duplicate, no missing step


class _SaveAt(pl.Callback):
    """At ``step`` (after NeuroMFA's hook took that step's snapshot): notes what the monitor has not finished,
    lets the held worker go, and saves a checkpoint at once."""

    def __init__(self, step: int, path: Path, gate: threading.Event, cb: NeuroMFACallback) -> None:
        self.step, self.path, self.gate, self.cb = step, path, gate, cb
        self.unfinished: list[int] | None = None
        self.baseline = "unset"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and not self.path.exists():
            self.unfinished, self.baseline = list(self.cb.monitor.pending_steps), self.cb.monitor.baseline
            self.gate.set()
            trainer.save_checkpoint(self.path)


class _EpochOf4(TinyLM):
    """4 batches per epoch: a checkpoint at step 4 ends an epoch, so a resumed run sees the same batches."""

    def train_dataloader(self):
        from torch.utils.data import DataLoader, TensorDataset

        g = torch.Generator().manual_seed(1)
        return DataLoader(TensorDataset(torch.randint(0, 64, (16, 16), generator=g)), batch_size=4)


def test_checkpoint_while_the_baseline_is_still_pending_keeps_the_baseline_on_resume(tmp_path, monkeypatch):
    """The worker is held until the step-4 checkpoint is requested (as a starved low-priority worker would
    be): the baseline is not finished then. The uninterrupted run and the run resumed from that checkpoint
    must log the same E at steps 4 and 8 (against the initial weights)."""
    from neuromfa_callback._worker import AnalysisWorker

    gate = threading.Event()
    original = AnalysisWorker._run

    def held(self, fn, args):  # the feeder waits before handing the snapshot to the worker process
        gate.wait(60)
        return original(self, fn, args)

    monkeypatch.setattr(AnalysisWorker, "_run", held)
    path = tmp_path / "step4.ckpt"
    cb = NeuroMFACallback(every_n_train_steps=4, samples=1, neurons_per_layer=16, asynchronous=True)
    saver = _SaveAt(4, path, gate, cb)
    _fit(tmp_path, cb, max_steps=8, module=_EpochOf4(), callbacks_after=[saver])
    assert [r["step"] for r in cb.history] == [0, 4, 8]
    assert saver.unfinished == [0, 4] and saver.baseline is None  # the scenario: the baseline was still pending
    monkeypatch.setattr(AnalysisWorker, "_run", original)

    resumed = NeuroMFACallback(every_n_train_steps=4, samples=1, neurons_per_layer=16, asynchronous=True)
    trainer = pl.Trainer(default_root_dir=tmp_path / "r", accelerator="cpu", max_steps=8, logger=RecordingLogger(),
                         callbacks=[resumed], enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.fit(_EpochOf4(), ckpt_path=path)
    by_step = {r["step"]: r for r in resumed.history}
    ref = {r["step"]: r for r in cb.history}
    assert resumed.monitor.baseline is not None and resumed.monitor.baseline["alpha0"] == ref[0]["alpha0"]
    for step in (4, 8):
        assert by_step[step]["alpha0"] == ref[step]["alpha0"]  # same weights (holds today)
        assert by_step[step]["emergence"] == ref[step]["emergence"] != 0.0  # against the initial weights
