"""The Lightning callback in a real Trainer on CPU: schedule, baseline, accumulation, resume, errors."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from neuromfa_callback import NeuroMFA, NeuroMFACallback
from neuromfa_callback.history import load_history
from tests._models import RecordingLogger, TinyLM

KEYS = [
    "neuromfa/alpha0",
    "neuromfa/alpha0_std",
    "neuromfa/width",
    "neuromfa/width_std",
    "neuromfa/emergence",
    "neuromfa/alpha0_rms",
    "neuromfa/width_rms",
    "neuromfa/emergence_rms",
    "neuromfa/weighted_degree",
    "neuromfa/n_ill_formed",
    "neuromfa/errors",
]


def _trainer(tmp_path, callbacks, logger=None, **kw):
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=logger if logger is not None else RecordingLogger(),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=kw.pop("enable_checkpointing", False),
        num_sanity_val_steps=0,
        **kw,
    )


@pytest.mark.parametrize("asynchronous", [True, False])
def test_logs_every_key_at_exactly_the_snapshot_steps(tmp_path, asynchronous):
    """Baseline at step 0 plus every 5 optimizer steps; E is 0 at the baseline and matches the formula."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=5, samples=3, neurons_per_layer=16, asynchronous=asynchronous)
    _trainer(tmp_path, [cb], logger, max_steps=20).fit(TinyLM())
    assert logger.neuromfa_steps() == [0, 5, 10, 15, 20]
    for step, metrics in logger.calls:
        if "neuromfa/alpha0" in metrics:
            assert set(KEYS) <= set(metrics), set(KEYS) - set(metrics)
    e = logger.values("neuromfa/emergence")
    a = logger.values("neuromfa/alpha0")
    w = logger.values("neuromfa/width")
    assert e[0] == 0.0 and logger.values("neuromfa/emergence_rms")[0] == 0.0
    for s in (5, 10, 15, 20):
        assert e[s] == pytest.approx((w[s] / w[0]) * math.log(a[0] / a[s]), rel=1e-12)
    assert [r["step"] for r in cb.history] == [0, 5, 10, 15, 20]


def test_logged_values_equal_the_metric_on_the_same_weights(tmp_path):
    """The callback's final snapshot equals NeuroMFA computed directly on the trained model."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=4, samples=2, neurons_per_layer=16, scale_control=False)
    module = TinyLM()
    _trainer(tmp_path, [cb], logger, max_steps=8).fit(module)
    metric = NeuroMFA(samples=2, neurons_per_layer=16)
    metric.update(module)
    out = metric.compute()
    assert logger.values("neuromfa/alpha0")[8] == pytest.approx(float(out["alpha0"]), abs=1e-12)
    assert logger.values("neuromfa/width")[8] == pytest.approx(float(out["width"]), abs=1e-12)
    assert cb.history[-1]["tau"] == pytest.approx(out["tau"].tolist(), abs=1e-12)


def test_gradient_accumulation_does_not_duplicate(tmp_path):
    """With accumulate_grad_batches=3 the hook fires per micro-batch, the snapshot once per step."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=2, neurons_per_layer=16)
    _trainer(tmp_path, [cb], logger, max_steps=6, accumulate_grad_batches=3).fit(TinyLM())
    assert logger.neuromfa_steps() == [0, 2, 4, 6]


def test_fast_dev_run_is_skipped(tmp_path):
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=1, samples=2, neurons_per_layer=16)
    pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=logger, callbacks=[cb], fast_dev_run=3,
               enable_progress_bar=False, enable_model_summary=False).fit(TinyLM())
    assert logger.neuromfa_steps() == []
    assert cb.history == []


def test_resume_from_checkpoint_continues_the_history(tmp_path):
    """A run resumed at step 10 continues to 20 with E relative to the original step-0 baseline."""
    hist = tmp_path / "history.jsonl"
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    cb1 = NeuroMFACallback(every_n_train_steps=5, samples=2, neurons_per_layer=16, history_path=hist)
    _trainer(tmp_path, [cb1, ckpt], max_steps=10, enable_checkpointing=True).fit(TinyLM())
    baseline = dict(cb1.monitor.baseline)
    path = next((tmp_path / "ckpt").glob("*step=10*.ckpt"))

    logger2 = RecordingLogger()
    cb2 = NeuroMFACallback(every_n_train_steps=5, samples=2, neurons_per_layer=16, history_path=hist)
    _trainer(tmp_path, [cb2], logger2, max_steps=20).fit(TinyLM(), ckpt_path=path)
    assert cb2.monitor.baseline == baseline
    assert logger2.neuromfa_steps() == [15, 20]  # no second baseline, no repeat of step 10
    assert [r["step"] for r in cb2.history] == [0, 5, 10, 15, 20]
    assert [r["step"] for r in load_history(hist)] == [0, 5, 10, 15, 20]
    e15 = cb2.history[3]
    expected = (e15["width"] / baseline["width"]) * math.log(baseline["alpha0"] / e15["alpha0"])
    assert e15["emergence"] == pytest.approx(expected, rel=1e-12)


def test_nan_weights_mid_training_are_logged_as_nan_and_training_continues(tmp_path):
    class Diverging(TinyLM):
        def on_train_batch_start(self, batch, batch_idx):
            if self.global_step == 4:
                with torch.no_grad():
                    self.model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight[0, 0] = float("nan")

        def training_step(self, batch, batch_idx):
            if self.global_step >= 4:  # keep training on a finite loss after the weight went bad
                return sum(p.sum() * 0 for p in self.parameters() if torch.isfinite(p).all()) + torch.tensor(0.0, requires_grad=True)
            return super().training_step(batch, batch_idx)

    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=2, neurons_per_layer=16)
    with pytest.warns(RuntimeWarning, match=r"dense_h_to_4h"):
        _trainer(tmp_path, [cb], logger, max_steps=8).fit(Diverging())
    a = logger.values("neuromfa/alpha0")
    assert sorted(a) == [0, 2, 4, 6, 8]
    # the weight goes bad during the 5th batch, after the step-4 snapshot
    assert all(np.isfinite(a[s]) for s in (0, 2, 4)) and all(math.isnan(a[s]) for s in (6, 8))
    assert "error" in cb.history[-1]


def test_invalid_arguments_raise_in_init():
    with pytest.raises(ValueError, match=r"`every_n_train_steps` >= 1, got 0"):
        NeuroMFACallback(every_n_train_steps=0)
    with pytest.raises(ValueError, match=r"`samples` >= 1, got 0"):
        NeuroMFACallback(samples=0)
    with pytest.raises(ValueError, match=r"`on_error` to be one of"):
        NeuroMFACallback(on_error="ignore")
    with pytest.raises(ValueError, match=r"`threshold` > 1"):
        NeuroMFACallback(threshold=1.0)
    with pytest.raises(ValueError, match=r"`backend` to be one of"):
        NeuroMFACallback(backend="tpu")


def test_model_without_weight_operator_raises_in_setup(tmp_path):
    class Conv(pl.LightningModule):  # an embedding and a norm: nothing NeuroMFA can analyse
        def __init__(self):
            super().__init__()
            self.emb, self.norm = torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4)

        def training_step(self, batch, batch_idx):  # pragma: no cover - never reached
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 3, 8, 8)))

    with pytest.raises(MisconfigurationException, match=r"cannot analyse this model: Conv has no weight operator"):
        _trainer(tmp_path, [NeuroMFACallback(samples=1)], max_steps=1).fit(Conv())


def test_no_logger_and_no_history_raises_in_setup(tmp_path):
    cb = NeuroMFACallback(samples=1, neurons_per_layer=16)
    trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, callbacks=[cb], max_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(MisconfigurationException, match=r"no logger and `history_path` is None"):
        trainer.fit(TinyLM())


def test_history_only_without_logger_is_allowed(tmp_path):
    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, history_path=hist)
    trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, callbacks=[cb], max_steps=4,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyLM())
    assert [r["step"] for r in load_history(hist)] == [0, 2, 4]


def test_callback_record_equals_analyze_model_key_for_key(tmp_path):
    """The training-time record and the offline analysis agree exactly (same seeds, same options)."""
    from neuromfa_callback import analyze_model

    cb = NeuroMFACallback(every_n_train_steps=3, samples=3, neurons_per_layer=16)
    module = TinyLM()
    _trainer(tmp_path, [cb], max_steps=3).fit(module)
    rec = cb.history[-1]
    raw = analyze_model(module, samples=3, neurons_per_layer=16)
    rms = analyze_model(module, samples=3, neurons_per_layer=16, scale="rms")
    assert rec["alpha0"] == raw.alpha0_mean and rec["width_std"] == raw.width_std
    assert rec["weighted_degree"] == pytest.approx(raw.weighted_degree, rel=1e-15)
    assert rec["weighted_degree_rms"] == pytest.approx(rms.weighted_degree, rel=1e-15)
    assert rec["alpha0_rms"] == rms.alpha0_mean
