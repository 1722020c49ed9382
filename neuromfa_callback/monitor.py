"""The snapshot pipeline shared by the Lightning and the Hugging Face callbacks (no framework imports).

Structure: the node sets are found once per fit from the first training step's own forward pass
(:meth:`SnapshotMonitor.begin_discovery` puts the hooks on, :meth:`~SnapshotMonitor.end_discovery`
takes them off before the first optimizer step, so the baseline snapshot still sees the initial
weights); without that pass, :func:`~neuromfa_callback.architectures.resolve` finds them on its own.

Training thread: :meth:`~SnapshotMonitor.snapshot` gathers the sampled weights (small submatrices,
copied to CPU; from CUDA through pinned memory with non-blocking copies and one event per source
device) and queues the analysis. One worker process (:mod:`neuromfa_callback._worker`: one thread,
lowest scheduling priority, no GIL shared with training) computes partition sums. :meth:`~SnapshotMonitor.drain`, called
from the training thread at the next hook, turns finished analyses into records, in step order,
appends them to the history file, and hands them to the caller for logging. In a distributed run
the ranks split the samples, and records are finalised only at points every rank reaches (the next
snapshot, the end of training), where the ranks first agree that every share succeeded and then
reduce their metric states collectively. :meth:`~SnapshotMonitor.state_dict` never communicates or
waits, so a checkpoint can always be saved.

Memory is bounded: the records kept in RAM (and in checkpoints) are thinned to at most
``history_window`` spread over the whole run; the history file keeps every record.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from neuromfa_callback._analysis import SnapshotAnalysis as _Analysis
from neuromfa_callback._checks import check_choice, check_int
from neuromfa_callback._dist import distributed, is_rank_zero, rank_and_world, sync_device
from neuromfa_callback.functional.neuromfa import NeuroMFAOptions
from neuromfa_callback.functional.summary import ModelAnalysis
from neuromfa_callback.history import HistoryFile, baseline_of, load_history, make_record
from neuromfa_callback.metric import NeuroMFA

__all__ = ["SnapshotMonitor", "ThinnedHistory"]

log = logging.getLogger(__name__)

_ON_ERROR = ("warn", "raise")


class ThinnedHistory(list):
    """A list of records that never holds more than ``cap``: records are kept on a grid of every
    ``stride``-th one (the stride doubles whenever the list is full), plus always the newest, so what
    remains spans the whole run evenly.

    Example:
        >>> h = ThinnedHistory(cap=4)
        >>> for s in range(10):
        ...     h.append({"step": s})
        >>> [r["step"] for r in h], h.stride
        ([0, 4, 8, 9], 4)
    """

    def __init__(self, records: Any = (), cap: int = 512) -> None:
        super().__init__()
        self.cap = check_int("history_window", cap, minimum=2)
        self.stride = 1
        self._index: list[int] = []
        self._seen = 0
        for r in records:
            self.append(r)

    def append(self, record: Any) -> None:  # noqa: D102
        if self._index and self._index[-1] % self.stride:  # the previous newest is off the grid: replace it
            super().pop()
            self._index.pop()
        super().append(record)
        self._index.append(self._seen)
        self._seen += 1
        while len(self) > self.cap:
            self.stride *= 2
            keep = [k for k, i in enumerate(self._index) if i % self.stride == 0 or k == len(self) - 1]
            self[:] = [self[k] for k in keep]
            self._index = [self._index[k] for k in keep]


@dataclass
class _Pending:
    step: int
    epoch: int | None
    wall_time: float
    future: cf.Future | None = None
    record: dict[str, Any] | None = None  # set when the snapshot failed before reaching the worker


class SnapshotMonitor:
    """Snapshots, asynchronous analysis, baseline, history and resumable state.

    Args:
        scale_control: also analyse with every matrix rescaled to RMS ``scale_rms`` (``*_rms`` values).
        history_path: append every finished snapshot to this JSON-lines file, flushed at once.
        asynchronous: ``"auto"`` (default): analyse in a worker process (the training thread only
            copies the sampled weights) when training leaves CPU cores free, i.e. the weights are on an
            accelerator or torch uses fewer threads than the process has cores; inline otherwise, since a
            worker can only take cores from a training that uses them all. ``True``: always the worker;
            ``False``: always inline. Full mode always runs inline, on the weights' device.
        on_error: ``"warn"`` (log NaN, count, warn once with the traceback, train on) or ``"raise"``.
        max_pending: snapshots in flight before the training thread waits (bounds the copies held).
        history_window: records kept in RAM and in checkpoints (thinned evenly beyond it).
        **options: the analysis options (:class:`~neuromfa_callback.NeuroMFAOptions`).
    """

    def __init__(
        self,
        *,
        scale_control: bool = True,
        history_path: Any = None,
        asynchronous: bool | str = "auto",
        on_error: str = "warn",
        max_pending: int = 2,
        history_window: int = 512,
        **options: Any,
    ) -> None:
        unknown = NeuroMFAOptions.split(options)[1]
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; analysis options are {NeuroMFAOptions.names()}")
        self.options = NeuroMFAOptions(**options)
        self.scale_control = bool(scale_control)
        if asynchronous not in (True, False, "auto"):
            raise ValueError(f"Expected `asynchronous` to be True, False or 'auto', got {asynchronous!r}")
        self.asynchronous = asynchronous
        self.on_error = check_choice("on_error", on_error, _ON_ERROR)
        self.max_pending = check_int("max_pending", max_pending, minimum=1)
        self.history_window = check_int("history_window", history_window, minimum=2)
        self.history_file = HistoryFile(history_path) if history_path is not None else None
        self._warned: set[str] = set()
        self._auto_worker: bool | None = None
        self._executor: Any = None  # the AnalysisWorker, started on the first asynchronous snapshot
        self.reset()

    # ------------------------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Forget the run: baseline, history, structure (a new fit; a checkpoint restores them after)."""
        self.baseline: dict[str, Any] | None = None
        self.history = ThinnedHistory(cap=self.history_window)
        self.last_step = -1
        self.errors = 0
        self.layout: Any = None
        self._auto_worker = None  # decided again at the next fit's first snapshot
        self._recorder: Any = None
        self._target: Any = None
        self._pending: deque[_Pending] = deque()
        self._ready: list[dict[str, Any]] = []
        self._lost: list[int] = []
        self.timings: list[tuple[float, float]] = []  # per finished analysis: (wall s, CPU s of the analysing thread)

    def metric(self, scale: str | None) -> NeuroMFA:
        """A fresh metric with this monitor's options (the null is computed for the raw analysis only)."""
        return NeuroMFA(**{**self.options.__dict__, "scale": scale, "null": self.options.null if scale is None else 0})

    def _local_seeds(self) -> list[int]:
        """The seeds this process analyses: all, or its share in a distributed run (the ranks split them)."""
        rank, world = rank_and_world()
        return list(self.options.seeds)[rank::world]

    @property
    def full(self) -> bool:
        return self.options.full

    def check_model(self, model: torch.nn.Module) -> None:
        """Fail before training: no weight operator, a bad ``module``, a backend that cannot run."""
        from neuromfa_callback.architectures import find_operators, select_module
        from neuromfa_callback.backends import check_backend

        from neuromfa_callback.architectures import _model_type, gpt_neox, resolve
        from neuromfa_callback.functional._weights import check_finite

        root, _ = select_module(model, self.options.module)
        found = find_operators(root)
        if not found:
            resolve(root)  # raises the full "no weight operator" message
        device = next((p.device for p in root.parameters()), torch.device("cpu"))
        check_backend(self.options.backend, device if self.full else torch.device("cpu"))
        seen: set[int] = set()
        with torch.no_grad():  # a non-finite initial weight: refused now, not logged as NaN at every snapshot
            for _, _, ops in found:
                for op in ops:
                    for name, t in op.tensors():
                        if id(t) not in seen and not t.is_meta:
                            seen.add(id(t))
                            check_finite(t.detach(), name)
        arch = self.options.architecture
        if not self.full and (arch == "gpt_neox" or (arch == "auto" and _model_type(root, [m for _, m, _ in found]) in gpt_neox.MODEL_TYPES)):
            gpt_neox.check_neurons_per_layer([op for _, _, ops in found for op in ops], self.options.neurons_per_layer)

    def uses_worker(self, model: torch.nn.Module | None = None) -> bool:
        """Whether snapshots are analysed in the worker process (see ``asynchronous``)."""
        if self.full or self.asynchronous is False:
            return False
        if self.asynchronous is True:
            return True
        if self._auto_worker is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu")) if model is not None else None
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            self._auto_worker = (device is not None and device.type != "cpu") or torch.get_num_threads() < cores
        return self._auto_worker

    def start_worker(self, model: torch.nn.Module | None = None) -> None:
        """Start the analysis process ahead of the first snapshot, if snapshots go to it."""
        if self._executor is None and self.uses_worker(model):
            from neuromfa_callback._worker import AnalysisWorker

            self._executor = AnalysisWorker()
            self._executor.start()

    # ------------------------------------------------------------------------------ structure
    def begin_discovery(self, model: torch.nn.Module) -> None:
        """Hooks on, to observe the next forward pass (the first training step's)."""
        from neuromfa_callback.architectures import DataflowRecorder, select_module

        self.end_discovery(resolve_now=False)
        root, _ = select_module(model, self.options.module)
        self._target, self._recorder = model, DataflowRecorder(root, source="training step")

    def end_discovery(self, resolve_now: bool = True) -> None:
        """Hooks off; the node sets from what they saw (or, if they saw nothing, found otherwise)."""
        if self._recorder is None:
            return
        obs, model = self._recorder.detach(), self._target
        self._recorder = self._target = None
        if resolve_now and self.layout is None:
            self.layout = self._resolve(model, None if obs.empty else obs)

    def _resolve(self, model: torch.nn.Module, observation: Any = None) -> Any:
        from neuromfa_callback.architectures import resolve

        o = self.options
        return resolve(model, o.architecture, module=o.module, example_input=o.example_input, observation=observation)

    # ----------------------------------------------------------------------------- snapshotting
    def snapshot(self, model: torch.nn.Module, step: int, epoch: int | None = None) -> None:
        """Training thread: copy what the analysis needs and queue it (or run it, if synchronous)."""
        self.end_discovery()
        self.last_step = int(step)
        pending = _Pending(step=int(step), epoch=epoch, wall_time=time.time())
        try:
            if self.layout is None:
                self.layout = self._resolve(model)
            from neuromfa_callback.functional.neuromfa import _neuromfa_networks, _raw_networks_and_rms
            from neuromfa_callback.functional.network import rescaled

            opts = self.options.replace(module=None, example_input=None)
            seeds = self._local_seeds()
            if self.scale_control:
                raw, rms = _raw_networks_and_rms(self.layout, opts, seeds)
            else:
                raw, rms = _neuromfa_networks(self.layout, opts.replace(scale=None), seeds), None
            if not self.full:  # small sampled submatrices: pinned, non-blocking copies + events
                raw = [n.to("cpu", non_blocking=True) for n in raw]
            jobs = [("raw", opts.replace(scale=None), self.layout.depth_names, self.layout.family, raw)]
            if isinstance(rms, ValueError):
                self._warn_rms(step, rms)  # a matrix of zeros cannot be rescaled: raw kept, *_rms NaN
            elif rms is not None:
                nets = [rescaled(n, self.layout, rms, opts.scale_rms) for n in raw]
                jobs.append(("rms", opts.replace(scale="rms", null=0), self.layout.depth_names, self.layout.family, nets))
        except ValueError as err:  # NaN/inf weights: a flagged value, training continues
            self._warn_once(f"snapshot:{type(err).__name__}", f"NeuroMFA snapshot at step {step} failed: {err}; logged as NaN")
            pending.record = self._make(pending, None, None, error=str(err))
            self._pending.append(pending)
            return
        work = _Analysis(jobs, compute=not distributed())
        if self.uses_worker(model):
            self.start_worker(model)
            pending.future = self._executor.submit(work)
        else:
            pending.future = cf.Future()
            try:
                pending.future.set_result(work())
            except BaseException as err:  # noqa: BLE001 - delivered through the future like the async path
                pending.future.set_exception(err)
        self._pending.append(pending)
        running = [p.future for p in self._pending if p.future is not None and not p.future.done()]
        if len(running) > self.max_pending:  # back-pressure: bound the weight copies in flight
            cf.wait(running[: len(running) - self.max_pending])

    def _make(self, p: _Pending, raw: ModelAnalysis | None, rms: ModelAnalysis | None, error: str | None = None) -> dict[str, Any]:
        return make_record(p.step, raw, rms, scale_control=self.scale_control, baseline=self.baseline, epoch=p.epoch,
                           error=error, wall_time=p.wall_time)

    # --------------------------------------------------------------------------------- draining
    def drain(self, block: bool = False) -> list[dict[str, Any]]:
        """Finalise finished snapshots in step order; returns the records not yet handed out.

        In a distributed run only ``block=True`` finalises (every rank must reach the same point).
        Raises the worker's error (wrapped, with the step) when ``on_error="raise"``.
        """
        if not distributed() or block:
            while self._pending:
                p = self._pending[0]
                if p.future is not None and not p.future.done() and not block:
                    break
                self._pending.popleft()
                self._finalise(p)
        out, self._ready = self._ready, []
        return out

    def _results(self, p: _Pending) -> tuple[dict[str, Any], BaseException | None]:
        """The worker's results (analyses, or metrics to reduce first when distributed) and its failure."""
        failure: BaseException | None = None
        try:
            results = p.future.result()
        except Exception as err:  # noqa: BLE001
            results, failure = {}, err
        if not distributed():
            return results, failure
        ok = torch.tensor([0.0 if failure is not None else 1.0], device=sync_device())
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)  # every rank's share succeeded?
        if failure is not None or ok.item() < 1:
            return {}, failure or RuntimeError("the analysis failed on another rank")
        out = {"_timing": results.pop("_timing")} if "_timing" in results else {}
        for key, (state, family) in results.items():
            metric = self.metric(None if key == "raw" else "rms")
            metric.load_state(state, family)
            metric.to(sync_device()).sync()  # collective: every rank reduces the same states in the same order
            try:
                out[key] = metric.compute_analysis()
            except ValueError as err:
                out[f"{key}_error"] = err
            metric.unsync()
        return out, None

    def _finalise(self, p: _Pending) -> None:
        if p.record is not None:
            self._record(p.record)
            return
        results, failure = self._results(p)
        if "_timing" in results:
            self.timings.append(results.pop("_timing"))
        if failure is None and "raw_error" in results:
            failure = results["raw_error"]  # no node qualifies (or the like): a flagged value, not an error
        if failure is not None:
            record = self._make(p, None, None, error=repr(failure))
            if isinstance(failure, ValueError):
                self._warn_once(f"value:{failure}", f"NeuroMFA at step {p.step}: {failure}; logged as NaN")
            else:
                self.errors += 1
                record["errors"] = self.errors
                self._record(record)
                if self.on_error == "raise":
                    raise RuntimeError(f"NeuroMFA analysis of step {p.step} failed: {failure!r}") from failure
                tb = "".join(traceback.format_exception(type(failure), failure, failure.__traceback__))
                self._warn_once(f"worker:{type(failure).__name__}",
                                f"NeuroMFA analysis of step {p.step} failed (training continues; on_error='warn'):\n{tb}")
                return
        else:
            if "rms_error" in results:
                self._warn_rms(p.step, results["rms_error"])
            record = self._make(p, results.get("raw"), results.get("rms"))
            if self.baseline is None:
                self.baseline = baseline_of(record)
        self._record(record)

    def _record(self, record: dict[str, Any]) -> None:
        record.setdefault("errors", self.errors)
        self.history.append(record)
        self._ready.append(record)
        if self.history_file is not None and is_rank_zero():
            try:
                self.history_file.append(record)
            except OSError as err:
                self._warn_once("history", f"NeuroMFA could not write {self.history_file.path}: {err}")

    def _warn_rms(self, step: int, err: Any) -> None:
        self._warn_once("analysis:rms", f"NeuroMFA scale-controlled analysis at step {step} failed: {err}; the *_rms values are logged as NaN")

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            log.debug(message)
            return
        self._warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # --------------------------------------------------------------------------- lifecycle/state
    def flush(self) -> list[dict[str, Any]]:
        """Wait for every pending snapshot and finalise it."""
        return self.drain(block=True)

    def close(self) -> None:
        """Remove discovery hooks, stop the worker, close the history file (flush first: pending work is dropped)."""
        self.end_discovery(resolve_now=False)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.history_file is not None:
            self.history_file.close()

    @property
    def pending_steps(self) -> list[int]:
        return [p.step for p in self._pending]

    @property
    def resumed(self) -> bool:
        """Whether state from a checkpoint was loaded (the same answer on every rank)."""
        return self.last_step >= 0

    def start_history(self, current_step: int) -> None:
        """Align the history file with the run: a fresh run starts an empty file; a resumed run keeps
        the file's records up to ``current_step`` (merged with the checkpoint's) and drops later ones,
        which the resumed run will compute again. Only rank 0 touches the file.
        """
        if self.history_file is None or not is_rank_zero():
            return
        if not self.resumed:
            self.history_file.rewrite([])
            return
        kept = load_history(self.history_file.path) if self.history_file.path.exists() else []
        by_step = {r["step"]: r for r in kept if r.get("step", -1) <= current_step}
        by_step.update({r["step"]: r for r in self.history})
        self.history = ThinnedHistory((by_step[s] for s in sorted(by_step)), cap=self.history_window)
        self.history_file.rewrite(by_step[s] for s in sorted(by_step))
        if self.baseline is None and self.history and self.history[0].get("error") is None:
            # the checkpoint was saved before the baseline's analysis finished; the file has it
            self.baseline = baseline_of(self.history[0])

    def steps_to_redo(self, current_step: int) -> list[int]:
        """Snapshots the checkpoint had taken but not finished: redone at resume if they are at the
        checkpoint's step (the weights are the same), else reported lost (warned)."""
        done = {r["step"] for r in self.history}
        if self.history_file is not None and self.history_file.path.exists():
            done |= {r.get("step") for r in load_history(self.history_file.path)}
        missing = [s for s in self._lost if s not in done]
        self._lost = []
        lost = [s for s in missing if s != current_step]
        if lost:
            self._warn_once("lost", f"NeuroMFA snapshots at steps {lost} were not finished before the checkpoint; they are missing")
        return [s for s in missing if s == current_step]

    def state_dict(self) -> dict[str, Any]:
        """Baseline, last step, error count, the (thinned) records, and the unfinished steps. Never
        communicates, so a checkpoint saves even after a failure on one rank; it waits for the worker in
        one case only: a single process whose baseline analysis is still running (E of a resumed run is
        measured against it)."""
        if self.baseline is None and self._pending and not distributed():
            first = self._pending[0]
            if first.future is not None:
                cf.wait([first.future])
            while self._pending and (self._pending[0].future is None or self._pending[0].future.done()):
                self._finalise(self._pending.popleft())  # the records wait in _ready for the next drain()
        return {
            "version": 2,
            "baseline": self.baseline,
            "last_step": self.last_step,
            "errors": self.errors,
            "history": list(self.history),
            "pending_steps": self.pending_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = state.get("baseline")
        self.last_step = int(state.get("last_step", -1))
        self.errors = int(state.get("errors", 0))
        self.history = ThinnedHistory(state.get("history", []), cap=self.history_window)
        self._lost = list(state.get("pending_steps", []))
