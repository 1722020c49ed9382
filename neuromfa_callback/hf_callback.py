"""``NeuroMFATrainerCallback``: the Lightning callback's twin for the Hugging Face ``Trainer``.

Same snapshot pipeline (:class:`~neuromfa_callback.monitor.SnapshotMonitor`), scheduled by
``TrainerState.global_step``. Records reach every ``report_to`` integration (W&B, TensorBoard,
...) through the Trainer's own logging: when a record is ready the callback sets
``control.should_log`` and adds its scalars to the ``logs`` dict in ``on_log``. For that it must
run before the reporting callbacks: add it with :meth:`NeuroMFATrainerCallback.attach`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from neuromfa_callback._checks import check_positive_int
from neuromfa_callback.loggers import scalar_metrics
from neuromfa_callback.monitor import SnapshotMonitor

__all__ = ["NeuroMFATrainerCallback"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


class NeuroMFATrainerCallback(TrainerCallback):
    """NeuroMFA snapshots during ``transformers.Trainer`` training.

    Args:
        every_n_steps: snapshot interval in optimizer steps.
        prefix: prefix of the logged keys (``neuromfa/alpha0``, ...).
        **kwargs: the snapshot options of :class:`~neuromfa_callback.NeuroMFACallback`
            (``samples``, ``neurons_per_layer``, ``full``, ``backend``, ``scale_control``,
            ``history_path``, ``asynchronous``, ``q``, ``threshold``, ``decimals``,
            ``min_neighbours``, ``on_error``).

    Example:
        >>> cb = NeuroMFATrainerCallback(every_n_steps=50, samples=4)
        >>> cb.every_n_steps
        50
    """

    def __init__(self, every_n_steps: int = 100, *, prefix: str = "neuromfa/", **kwargs: Any) -> None:
        self.every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        self.prefix = prefix
        self.monitor = SnapshotMonitor(**kwargs)
        self._unlogged: list[dict[str, Any]] = []

    def attach(self, trainer: Any) -> NeuroMFATrainerCallback:
        """Register with ``trainer`` ahead of the reporting integrations (so they see our keys)."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.monitor.history

    def _collect(self, control: Any, block: bool = False) -> None:
        self._unlogged.extend(self.monitor.drain(block=block))
        if self._unlogged and control is not None:
            control.should_log = True

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise ValueError("NeuroMFATrainerCallback needs the model (the Trainer passes it as `model`)")
        self.monitor.check_model(model)
        resumed = self.monitor.resumed
        self.monitor.start_history(state.global_step)
        if not resumed:
            self.monitor.snapshot(model, state.global_step, epoch=None)
            self._collect(control)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        step = state.global_step
        self._collect(control)
        last = bool(state.max_steps) and step >= state.max_steps
        if step > self.monitor.last_step and (step % self.every_n_steps == 0 or last):
            if _distributed():
                self._collect(control, block=True)
            self.monitor.snapshot(model, step)
        if last:
            self._collect(control, block=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs is None or not self._unlogged:
            return
        rec = self._unlogged.pop(0)  # one record per log call, oldest first; the rest at the next steps
        logs.update(scalar_metrics(rec, self.prefix))
        logs[f"{self.prefix}step"] = rec["step"]

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._unlogged.extend(self.monitor.flush())
        self.monitor.close()
