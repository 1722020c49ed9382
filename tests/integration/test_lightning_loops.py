"""Real Lightning runs through the loops that change when hooks fire: snapshot steps (regular, final),
a callback reused for a second ``fit``, two monitors on one Trainer with checkpoint and resume, manual
optimisation with two optimizers, gradient accumulation, ``fast_dev_run``; and the final snapshot equals
the direct API on the final weights.

Every model is the tiny GPT-NeoX of ``tests._models`` (hidden 64, 2 layers) and every run takes a few
seconds on a CPU.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from neuromfa_callback import NeuroMFACallback, analyze_model
from neuromfa_callback.history import load_history
from tests._models import RecordingLogger, TinyLM, tiny_gpt_neox

SMALL = {"samples": 1, "neurons_per_layer": 16}


def _trainer(tmp_path, callbacks, logger=None, **kw: Any) -> pl.Trainer:
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1,
                      logger=RecordingLogger() if logger is None else logger, callbacks=list(callbacks),
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def _steps(records) -> list[int]:
    return [r["step"] for r in records]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _analysis_values(module, **kw):
    """alpha0/width (raw and rms) and per-depth alpha0 of the direct API on ``module``'s current weights."""
    raw = analyze_model(module, **SMALL, **kw)
    rms = analyze_model(module, **SMALL, scale="rms", **kw)
    return {"alpha0": raw.alpha0_mean, "width": raw.width_mean, "weighted_degree": raw.weighted_degree,
            "alpha0_rms": rms.alpha0_mean, "width_rms": rms.width_mean,
            "depth_alpha0": [d.alpha0_mean for d in raw.by_depth], "depth_names": [d.name for d in raw.by_depth]}


def _record_values(rec):
    return {"alpha0": rec["alpha0"], "width": rec["width"], "weighted_degree": rec["weighted_degree"],
            "alpha0_rms": rec["alpha0_rms"], "width_rms": rec["width_rms"],
            "depth_alpha0": [d["alpha0"] for d in rec["by_depth"]], "depth_names": [d["name"] for d in rec["by_depth"]]}


# --------------------------------------------------------------------------- snapshot steps, final values
def test_snapshots_at_zero_every_n_and_the_final_step(tmp_path):
    """max_steps=7, every 4: the baseline (0), 4, and the final weights (7): no more, no fewer, each logged once."""
    logger = RecordingLogger()
    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=4, history_path=hist, **SMALL)
    module = TinyLM()
    initial = copy.deepcopy(module)
    trainer = _trainer(tmp_path, [cb], logger, max_steps=7)
    trainer.fit(module)
    assert trainer.global_step == 7
    assert _steps(cb.history) == [0, 4, 7]
    assert logger.neuromfa_steps() == [0, 4, 7]  # one log call per snapshot
    assert _steps(load_history(hist)) == [0, 4, 7] and _same(load_history(hist), cb.history)
    assert cb.monitor.last_step == 7 and cb.monitor.pending_steps == []
    # the baseline saw the initial weights, the final snapshot the final weights
    assert _record_values(cb.history[0]) == _analysis_values(initial)
    assert _record_values(cb.history[-1]) == _analysis_values(module)
    assert cb.history[0]["emergence"] == 0.0 and cb.history[-1]["emergence"] != 0.0
    assert logger.values("neuromfa/alpha0")[7] == cb.history[-1]["alpha0"]


def test_final_snapshot_values_equal_analyze_model_on_the_final_weights(tmp_path):
    """Per sample, per depth and for the null: the last record is what ``analyze_model`` gives for the
    trained module, so a logged value can always be reproduced offline."""
    cb = NeuroMFACallback(every_n_train_steps=3, samples=2, neurons_per_layer=16, null=1)
    module = TinyLM()
    _trainer(tmp_path, [cb], max_steps=5).fit(module)
    assert _steps(cb.history) == [0, 3, 5]
    last = cb.history[-1]
    raw = analyze_model(module, samples=2, neurons_per_layer=16, null=1)
    rms = analyze_model(module, samples=2, neurons_per_layer=16, scale="rms")
    for key, value in raw.scalars().items():
        assert last[key] == value, key
    for key in ("alpha0", "alpha0_std", "width", "width_std", "weighted_degree"):
        assert last[f"{key[:-4]}_rms_std" if key.endswith("_std") else f"{key}_rms"] == rms.scalars()[key], key
    assert last["tau"] == raw.tau_mean.tolist() and last["f_alpha"] == raw.f_alpha_mean.tolist()
    assert [d["name"] for d in last["by_depth"]] == ["gpt_neox.layers.0", "gpt_neox.layers.1"]
    for row, d, r in zip(last["by_depth"], raw.by_depth, rms.by_depth):
        assert (row["alpha0"], row["width"], row["alpha0_std"]) == (d.alpha0_mean, d.width_mean, d.alpha0_std)
        assert (row["alpha0_rms"], row["width_rms"]) == (r.alpha0_mean, r.width_mean)
    for key in ("alpha0_null", "width_null", "emergence_null"):
        assert math.isfinite(last[key])


# ------------------------------------------------------------------------------- a callback reused
def test_a_callback_reused_for_a_second_fit_starts_a_new_baseline_and_history(tmp_path):
    """A new ``fit`` (not resumed) is a new run: history and file restarted, E = 0 at its first snapshot,
    whose weights are the first fit's final weights; a third fit on another model finds its own depths."""
    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=2, history_path=hist, **SMALL)
    module = TinyLM()
    first_logger, second_logger = RecordingLogger(), RecordingLogger()
    _trainer(tmp_path / "1", [cb], first_logger, max_steps=4).fit(module)
    first = copy.deepcopy(list(cb.history))
    assert _steps(first) == [0, 2, 4] and first[-1]["emergence"] != 0.0

    _trainer(tmp_path / "2", [cb], second_logger, max_steps=4).fit(module)  # the same weights go on training
    second = list(cb.history)
    assert _steps(second) == [0, 2, 4]  # restarted, not appended
    assert second_logger.neuromfa_steps() == [0, 2, 4]
    assert second[0]["emergence"] == 0.0 and second[0]["emergence_rms"] == 0.0
    assert all(row["emergence"] == 0.0 for row in second[0]["by_depth"])
    assert second[0]["alpha0"] == first[-1]["alpha0"] and second[0]["width"] == first[-1]["width"]  # same weights
    assert second[-1]["emergence"] != 0.0
    assert _same(load_history(hist), second)  # the file holds the second fit only

    other = TinyLM(layers=3, seed=4)
    _trainer(tmp_path / "3", [cb], max_steps=2).fit(other)
    assert _steps(cb.history) == [0, 2]
    assert [d["name"] for d in cb.history[-1]["by_depth"]] == [f"gpt_neox.layers.{i}" for i in range(3)]
    assert _record_values(cb.history[-1]) == _analysis_values(other)


# -------------------------------------------------------------------- two monitors, checkpoint, resume
class EncDec(pl.LightningModule):
    """Two tiny GPT-NeoX sub-models trained together (``enc`` and ``dec``)."""

    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.enc = tiny_gpt_neox(seed=0)
        self.dec = tiny_gpt_neox(seed=1)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.enc(input_ids=x, labels=x).loss + self.dec(input_ids=x, labels=x).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        # 4 batches: the step-4 checkpoint ends an epoch, so the resumed run sees the same batches as the
        # uninterrupted one (a mid-epoch resume would replay the epoch's first batches)
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, 64, (16, 16), generator=g)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)


def _two_monitors(asynchronous: bool = False):
    # With the asynchronous worker a snapshot (even the baseline) may still be pending when the step-4
    # checkpoint is saved; state_dict() then waits for the baseline only (test_faults.py), so both work.
    a = NeuroMFACallback(every_n_train_steps=4, module="enc", prefix="a/", asynchronous=asynchronous, **SMALL)
    b = NeuroMFACallback(every_n_train_steps=4, module="dec", prefix="b/", asynchronous=asynchronous, **SMALL)
    return a, b


def test_two_monitors_log_side_by_side_and_resume_from_a_checkpoint(tmp_path):
    """Two callbacks (``enc`` under ``a/``, ``dec`` under ``b/``) both log; the checkpoint holds both states
    under distinct keys, and a resumed run restores both: baselines kept, histories continued, the
    snapshot at the checkpoint's step identical to the uninterrupted run's."""
    a, b = _two_monitors()
    assert a.state_key != b.state_key
    logger = RecordingLogger()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, filename="{step}")
    module = EncDec()
    _trainer(tmp_path, [a, b, ckpt], logger, max_steps=8, enable_checkpointing=True).fit(module)
    assert logger.neuromfa_steps("a/alpha0") == logger.neuromfa_steps("b/alpha0") == [0, 4, 8]
    assert not any(k.startswith("neuromfa/") for _, m in logger.calls for k in m)
    assert _steps(a.history) == _steps(b.history) == [0, 4, 8]
    assert a.history[0]["alpha0"] != b.history[0]["alpha0"]  # two different models
    assert [d["name"] for d in a.history[0]["by_depth"]] == ["gpt_neox.layers.0", "gpt_neox.layers.1"]  # relative to `enc`
    assert _record_values(a.history[-1]) == _analysis_values(module.enc)
    assert _record_values(b.history[-1]) == _analysis_values(module.dec)

    path = tmp_path / "ckpt" / "step=4.ckpt"
    state = torch.load(path, weights_only=False)["callbacks"]
    assert {a.state_key, b.state_key} <= set(state)
    for cb in (a, b):
        saved = state[cb.state_key]
        assert saved["last_step"] == 4 and saved["baseline"]["alpha0"] == cb.history[0]["alpha0"]
        # the step-4 snapshot was taken in the same hook, just before the checkpoint: not final yet, so it is
        # saved as pending and redone by the resumed run (the weights are the checkpoint's)
        assert _steps(saved["history"]) == [0] and saved["pending_steps"] == [4]

    ra, rb = _two_monitors()
    resumed_logger = RecordingLogger()
    _trainer(tmp_path / "r", [ra, rb], resumed_logger, max_steps=8).fit(EncDec(), ckpt_path=path)
    for new, old, prefix in ((ra, a, "a/"), (rb, b, "b/")):
        assert new.monitor.baseline == old.monitor.baseline
        assert _steps(new.history) == [0, 4, 8]
        assert _same(new.history[0], old.history[0])
        for s in (1, 2):  # the redone snapshot at the checkpoint's step and the next one: the same numbers
            assert _record_values(new.history[s]) == _record_values(old.history[s]), (prefix, s)
            assert new.history[s]["emergence"] == old.history[s]["emergence"]
        assert resumed_logger.neuromfa_steps(f"{prefix}alpha0")[-1] == 8


# ------------------------------------------------------------------------------- manual optimisation
class ManualTwoOptimizers(TinyLM):
    """Manual optimisation: two optimizers (the blocks / the rest), two ``step()`` per batch, so
    ``global_step`` advances by 2 per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        (x,) = batch
        opt_blocks, opt_rest = self.optimizers()
        loss = self.model(input_ids=x, labels=x).loss
        self.manual_backward(loss)
        opt_blocks.step()
        opt_rest.step()
        opt_blocks.zero_grad()
        opt_rest.zero_grad()
        return loss

    def configure_optimizers(self):
        blocks = list(self.model.gpt_neox.layers.parameters())
        ids = {id(p) for p in blocks}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return torch.optim.AdamW(blocks, lr=3e-3), torch.optim.AdamW(rest, lr=3e-3)


@pytest.mark.parametrize(("every", "expected"), [(4, [0, 4, 8, 12, 16]), (6, [0, 6, 12, 16])])
def test_manual_optimisation_with_two_optimizers_snapshots_on_global_step_without_duplicates(tmp_path, every, expected):
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=every, **SMALL)
    module = ManualTwoOptimizers()
    initial = copy.deepcopy(module)
    trainer = _trainer(tmp_path, [cb], logger, max_steps=16)
    trainer.fit(module)
    assert trainer.global_step == 16
    assert _steps(cb.history) == expected
    assert logger.neuromfa_steps() == expected  # each step logged once
    assert _record_values(cb.history[0]) == _analysis_values(initial)  # before the first of the two steps
    assert _record_values(cb.history[-1]) == _analysis_values(module)


# ------------------------------------------------------------------------------ gradient accumulation
def test_gradient_accumulation_snapshots_every_n_optimizer_steps(tmp_path):
    """accumulate_grad_batches=3: 18 batches, 6 optimizer steps; snapshots at 0, 2, 4, 6 optimizer steps,
    none repeated on the batches that do not step; the baseline is the initial weights (taken before the
    first optimizer step, after three forward passes)."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, asynchronous=False, **SMALL)
    module = TinyLM()
    initial = copy.deepcopy(module)
    trainer = _trainer(tmp_path, [cb], logger, max_steps=6, accumulate_grad_batches=3)
    trainer.fit(module)
    assert trainer.global_step == 6 and trainer.fit_loop.epoch_loop.batch_progress.total.completed == 18
    assert _steps(cb.history) == [0, 2, 4, 6]
    assert logger.neuromfa_steps() == [0, 2, 4, 6]
    assert _record_values(cb.history[0]) == _analysis_values(initial)
    assert _record_values(cb.history[-1]) == _analysis_values(module)


# ----------------------------------------------------------------------------------- fast_dev_run
def test_fast_dev_run_is_skipped(tmp_path):
    """No snapshot, no log, no history file, no worker: fast_dev_run is a smoke test of the user's loop."""
    import threading

    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=1, history_path=hist, **SMALL)
    module = TinyLM()
    trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, fast_dev_run=3, callbacks=[cb],
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    assert trainer.global_step == 3
    assert cb.history == [] and cb.monitor.last_step == -1 and cb.monitor.pending_steps == []
    assert not hist.exists() or load_history(hist) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("neuromfa")]
    # the same callback then works in a real fit
    _trainer(tmp_path, [cb], max_steps=2).fit(module)
    assert _steps(cb.history) == [0, 1, 2]
