"""``NeuroMFATrainerCallback``: the Lightning callback's twin for the Hugging Face ``Trainer``.

Added the standard way, ``Trainer(..., callbacks=[NeuroMFATrainerCallback(every_n_steps=100)])``:

* the same snapshot pipeline (:class:`~neuromfa_callback.monitor.SnapshotMonitor`), scheduled by
  ``TrainerState.global_step``: the baseline just before the first optimizer step (the first step's
  forward pass, observed with hooks that are then removed, gives the node sets), then whenever
  ``every_n_steps`` steps have passed, and the final weights at the last step;
* every record is logged as a log event of its own AT THE STEP ITS WEIGHTS WERE TAKEN: appended to
  ``trainer.state.log_history`` (``{"neuromfa/alpha0": ..., "step": 5}``) and handed to every other
  callback's ``on_log`` (the ``report_to`` integrations: W&B, TensorBoard, MLflow, ...) with
  ``state.global_step`` set to that step. No loss log is forced. The Trainer passes its callbacks no
  handle on itself, so the callback finds the ``CallbackHandler`` that holds it (once, through the
  garbage collector's referrers); if none is found it warns once and fills ``log_history`` only;
* resumable through the Trainer's own callback-state mechanism (``ExportableState``): the state is
  saved in ``trainer_state.json`` with every checkpoint, and ``trainer.train(resume_from_checkpoint=...)``
  restores it into this very instance when its arguments are the same (a callable ``module=`` or an
  ``example_input`` cannot be saved: pass ``module`` as an attribute path to resume such runs).
"""

from __future__ import annotations

import copy
import gc
import json
import warnings
import weakref
from typing import Any, ClassVar

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from neuromfa_callback._checks import check_positive_int
from neuromfa_callback._dist import distributed
from neuromfa_callback.loggers import depth_metrics, scalar_metrics
from neuromfa_callback.monitor import SnapshotMonitor

__all__ = ["NeuroMFATrainerCallback"]



def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _find_handler(callback: Any) -> Any:
    """The object whose ``callbacks`` list holds ``callback`` (the Trainer's ``CallbackHandler``), or ``None``."""
    for ref in gc.get_referrers(callback):
        if not isinstance(ref, list):
            continue
        for owner in gc.get_referrers(ref):
            candidates = [owner]
            if isinstance(owner, dict):
                candidates = [o for o in gc.get_referrers(owner) if getattr(o, "__dict__", None) is owner]
            for o in candidates:
                if getattr(o, "callbacks", None) is ref and callable(getattr(o, "call_event", None)):
                    return o
    return None


class NeuroMFATrainerCallback(TrainerCallback, ExportableState):
    """NeuroMFA snapshots during ``transformers.Trainer`` training.

    Args:
        every_n_steps: snapshot interval in optimizer steps.
        prefix: prefix of the logged keys (``neuromfa/alpha0``, ...).
        log_per_depth: also log one value per depth (``neuromfa/depth/<name>/alpha0``, ...).
        **kwargs: the snapshot options of :class:`~neuromfa_callback.monitor.SnapshotMonitor`
            (``scale_control``, ``history_path``, ``asynchronous``, ``on_error``, ``history_window``) and
            the analysis options of :class:`~neuromfa_callback.NeuroMFAOptions` (``samples``,
            ``neurons_per_layer``, ``full``, ``null``, ``architecture``, ``module``, ``backend``, ...).

    Example:
        >>> cb = NeuroMFATrainerCallback(every_n_steps=50, samples=4)
        >>> cb.every_n_steps, cb.monitor.options.samples
        (50, 4)
    """

    _live: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()

    def __new__(cls, *args: Any, _from_state: bool = False, **kwargs: Any) -> NeuroMFATrainerCallback:
        if _from_state:  # the Trainer rebuilding us from a checkpoint: reuse the user's instance if it matches
            live = cls._live.get(cls._key(args, kwargs))
            if live is not None:
                return live
        return super().__new__(cls)

    @staticmethod
    def _key(args: tuple, kwargs: dict[str, Any]) -> str:
        return json.dumps([list(args), {k: v for k, v in kwargs.items() if _jsonable(v)}], sort_keys=True, default=str)

    def __init__(self, every_n_steps: int = 100, *, prefix: str = "neuromfa/", log_per_depth: bool = False,
                 _from_state: bool = False, **kwargs: Any) -> None:
        if _from_state and getattr(self, "_initialised", False):
            return  # the Trainer's rebuild returned this live instance: keep it as it is
        self.every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        if not isinstance(prefix, str):
            raise TypeError(f"Expected `prefix` to be a str, got {prefix!r}")
        self.prefix = prefix
        self.log_per_depth = bool(log_per_depth)
        self.monitor = SnapshotMonitor(**kwargs)
        self._init_args = {"every_n_steps": every_n_steps, "prefix": prefix, "log_per_depth": log_per_depth, **kwargs}
        self._resume_state: dict[str, Any] | None = None
        self._handler: Any = None
        self._discovering = False
        self._resumed = False
        self._warned_handler = False
        self._initialised = True
        NeuroMFATrainerCallback._live[self._key((), self._init_args)] = self

    @property
    def history(self) -> list[dict[str, Any]]:
        """The finished snapshot records kept in RAM (thinned beyond ``history_window``; the file has all)."""
        return self.monitor.history

    # -------------------------------------------------------------------- Trainer callback state
    def state(self) -> dict[str, Any]:
        """What the Trainer saves with each checkpoint (``trainer_state.json``): our arguments and state."""
        saved = {k: v for k, v in self._init_args.items() if _jsonable(v)}
        return {"args": {**saved, "_from_state": True}, "attributes": {"_resume_state": self.monitor.state_dict()}}

    def _saved_state(self, state: Any) -> dict[str, Any] | None:
        """Our entry in a resumed ``TrainerState.stateful_callbacks`` (the one saved with the same arguments)."""
        entries = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        entries = entries if isinstance(entries, list) else [entries] if entries else []
        mine = self._key((), self._init_args)
        for entry in entries:
            saved_args = {k: v for k, v in entry.get("args", {}).items() if k != "_from_state"}
            if self._key((), saved_args) == mine:
                return entry.get("attributes", {}).get("_resume_state")
        if entries:
            warnings.warn("NeuroMFATrainerCallback: the checkpoint's NeuroMFA state was saved with other arguments; "
                          "starting a new baseline", RuntimeWarning, stacklevel=3)
        return None

    # -------------------------------------------------------------------------------- emitting
    def _emit(self, args: Any, state: Any, control: Any, records: list[dict[str, Any]], model: Any = None) -> None:
        """Log each record as its own log event at its own step (see the module docstring)."""
        if not records:
            return
        if self._handler is None and not self._warned_handler:  # searched once more, then not again (a gc scan)
            self._handler = _find_handler(self)
            if self._handler is None:
                self._warned_handler = True
                warnings.warn("NeuroMFATrainerCallback is not held by a Trainer's CallbackHandler: its values go to "
                              "`trainer.state.log_history` only", RuntimeWarning, stacklevel=3)
        for rec in records:
            logs = scalar_metrics(rec, self.prefix)
            if self.log_per_depth:
                logs.update(depth_metrics(rec, self.prefix))
            state.log_history.append({**logs, "step": int(rec["step"])})
            if self._handler is None:
                continue
            at_step = copy.copy(state)
            at_step.global_step = int(rec["step"])
            for cb in list(self._handler.callbacks):
                if cb is not self:
                    cb.on_log(args, at_step, control, model=model, logs=dict(logs))

    # ---------------------------------------------------------------------------------- events
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise ValueError("NeuroMFATrainerCallback needs the model (the Trainer passes it as `model`)")
        restored, self._resume_state = self._resume_state, None
        if restored is None and state.global_step > 0:
            restored = self._saved_state(state)  # TrainingArguments.restore_callback_states_from_checkpoint is off by default
        self.monitor.close()
        self.monitor.reset()  # a new train() call: new baseline and history, unless resumed below
        if restored is not None and state.global_step > 0:
            self.monitor.load_state_dict(restored)
        self._resumed = self.monitor.resumed
        self.monitor.check_model(model)
        self.monitor.start_worker(model)
        self.monitor.start_history(state.global_step)
        self._handler = _find_handler(self)
        self.monitor.begin_discovery(model)
        self._discovering = True
        if self._resumed:
            for step in self.monitor.steps_to_redo(state.global_step):
                self.monitor.snapshot(model, step)

    def _end_discovery(self, args: Any, state: Any, control: Any, model: Any) -> None:
        if not self._discovering:
            return
        self._discovering = False
        self.monitor.end_discovery()
        if not self._resumed:
            self.monitor.snapshot(model, state.global_step)  # the baseline: before the first optimizer step
            self._emit(args, state, control, [] if distributed() else self.monitor.drain(), model)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._end_discovery(args, state, control, model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._end_discovery(args, state, control, model)
        step = state.global_step
        last = bool(state.max_steps) and step >= state.max_steps
        due = step - self.monitor.last_step >= self.every_n_steps or (last and step > self.monitor.last_step)
        if distributed():
            if due or last:
                self._emit(args, state, control, self.monitor.drain(block=True), model)
        else:
            self._emit(args, state, control, self.monitor.drain(), model)
        if due:
            self.monitor.snapshot(model, step)
        if last:  # the final weights reach every integration before on_train_end
            self._emit(args, state, control, self.monitor.flush(), model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._end_discovery(args, state, control, model)
        if state.global_step > self.monitor.last_step:
            self.monitor.snapshot(model, state.global_step)
        self._emit(args, state, control, self.monitor.flush(), model)
        self.monitor.close()
