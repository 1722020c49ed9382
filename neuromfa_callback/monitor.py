"""The snapshot pipeline shared by the Lightning and the Hugging Face callbacks (no framework imports).

Training thread: :meth:`SnapshotMonitor.snapshot` gathers the sampled weights (small submatrices,
copied to CPU; from CUDA through pinned memory with a non-blocking copy and an event) and queues
the analysis. One worker thread computes partition sums. :meth:`SnapshotMonitor.drain`, called
from the training thread at the next hook, turns finished analyses into records, in step order,
appends them to the history file, and hands them to the caller for logging. A worker error
surfaces there. In a distributed run the ranks split the samples, and records are finalised only at
points every rank reaches (the next snapshot, a checkpoint, the end of training), where the ranks
first agree that every share succeeded and then reduce their metric states collectively.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from neuromfa_callback._checks import check_choice, check_int, check_positive_int
from neuromfa_callback.functional.spectrum import BACKENDS
from neuromfa_callback.history import HistoryFile, load_history, make_record
from neuromfa_callback.metric import NeuroMFA

__all__ = ["SnapshotMonitor"]

log = logging.getLogger(__name__)

_ON_ERROR = ("warn", "raise")
#: The ``compute()`` scalars ``make_record`` reads, all NaN: a scale-controlled analysis that could not run.
_NAN_SUMMARY = dict.fromkeys(("alpha0", "alpha0_std", "width", "width_std", "weighted_degree", "n_ill_formed"), float("nan"))


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _is_rank_zero() -> bool:
    return not _distributed() or torch.distributed.get_rank() == 0


@dataclass
class _Pending:
    step: int
    epoch: int | None
    wall_time: float
    future: cf.Future | None = None
    record: dict[str, Any] | None = None  # set when the snapshot failed before reaching the worker
    extra: dict[str, Any] = field(default_factory=dict)


class SnapshotMonitor:
    """Snapshots, asynchronous analysis, baseline, history and resumable state.

    Args: see :class:`~neuromfa_callback.NeuroMFACallback`.
    """

    def __init__(
        self,
        *,
        samples: int = 10,
        neurons_per_layer: int = 32,
        full: bool = False,
        backend: str = "auto",
        scale_control: bool = True,
        history_path: Any = None,
        asynchronous: bool = True,
        q: Any = None,
        threshold: float = 150.0,
        decimals: int = 0,
        min_neighbours: int = 10,
        on_error: str = "warn",
        max_pending: int = 2,
    ) -> None:
        self.metric_kwargs = {
            "samples": check_positive_int("samples", samples),
            "neurons_per_layer": check_positive_int("neurons_per_layer", neurons_per_layer),
            "full": bool(full),
            "q": q,
            "threshold": threshold,
            "decimals": decimals,
            "min_neighbours": min_neighbours,
            "backend": check_choice("backend", backend, BACKENDS),
        }
        NeuroMFA(**self.metric_kwargs)  # validates q, threshold, decimals, min_neighbours now
        self.scale_control = bool(scale_control)
        self.asynchronous = bool(asynchronous)
        self.on_error = check_choice("on_error", on_error, _ON_ERROR)
        self.max_pending = check_int("max_pending", max_pending, minimum=1)
        self.history_file = HistoryFile(history_path) if history_path is not None else None
        self.baseline: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []
        self.last_step = -1
        self.errors = 0
        self._warned: set[str] = set()
        self._pending: deque[_Pending] = deque()
        self._ready: list[dict[str, Any]] = []
        self._executor: cf.ThreadPoolExecutor | None = None

    # -------------------------------------------------------------------------------- building
    def metric(self, scale: str | None) -> NeuroMFA:
        """A fresh metric with this monitor's parameters."""
        return NeuroMFA(scale=scale, **self.metric_kwargs)

    def _scales(self) -> list[tuple[str, str | None]]:
        return [("raw", None)] + ([("rms", "rms")] if self.scale_control else [])

    def check_model(self, model: torch.nn.Module) -> None:
        """Fail before training: unsupported models, bad sizes, non-finite weights, a missing backend."""
        from neuromfa_callback.backends.cupy_backend import require_cupy
        from neuromfa_callback.functional.network import build_network

        if self.metric_kwargs["backend"] == "cupy":
            require_cupy()  # ImportError naming the extra to install, or RuntimeError without a GPU

        build_network(model, neurons_per_layer=self.metric_kwargs["neurons_per_layer"], seed=0, full=self.metric_kwargs["full"])

    @property
    def full(self) -> bool:
        return self.metric_kwargs["full"]

    # ----------------------------------------------------------------------------- snapshotting
    def snapshot(self, model: torch.nn.Module, step: int, epoch: int | None = None) -> None:
        """Training thread: copy what the analysis needs and queue it (or run it, if synchronous)."""
        self.last_step = int(step)
        pending = _Pending(step=int(step), epoch=epoch, wall_time=time.time())
        try:
            jobs = []
            for key, scale in self._scales():
                metric = self.metric(scale)
                try:
                    nets = metric.build_networks(model)
                except ValueError as err:
                    if key == "raw":
                        raise
                    # scale="rms" only (a matrix of zeros cannot be rescaled): keep the raw values, *_rms NaN
                    self._warn_once(
                        f"snapshot:{key}:{type(err).__name__}",
                        f"NeuroMFA scale-controlled snapshot at step {step} failed: {err}; the *_rms values are logged as NaN",
                    )
                    continue
                if not self.full:  # small sampled submatrices: pinned, non-blocking copy + event
                    nets = [n.to("cpu", non_blocking=True) for n in nets]
                jobs.append((key, metric, nets))
        except ValueError as err:  # NaN/inf weights, sizes: a flagged value, training continues
            self._warn_once(f"snapshot:{type(err).__name__}", f"NeuroMFA snapshot at step {step} failed: {err}; logged as NaN")
            pending.record = make_record(step, None, baseline=self.baseline, epoch=epoch, error=str(err), wall_time=pending.wall_time)
            self._pending.append(pending)
            return
        work = _Analysis(jobs, compute=not _distributed())
        if self.asynchronous and not self.full:
            if self._executor is None:
                self._executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuromfa")
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

    # --------------------------------------------------------------------------------- draining
    def drain(self, block: bool = False) -> list[dict[str, Any]]:
        """Finalise finished snapshots in step order; returns the records not yet handed out.

        In a distributed run only ``block=True`` finalises (every rank must reach the same point).
        Raises the worker's error (wrapped, with the step) when ``on_error="raise"``.
        """
        self._finalise_ready(block)
        out, self._ready = self._ready, []
        return out

    def _finalise_ready(self, block: bool) -> None:
        if _distributed() and not block:
            return
        while self._pending:
            p = self._pending[0]
            if p.future is not None and not p.future.done() and not block:
                break
            self._pending.popleft()
            self._finalise(p)

    def _finalise(self, p: _Pending) -> dict[str, Any]:
        failure: BaseException | None = None
        results: dict[str, Any] = {}
        if p.record is None:
            try:
                results = p.future.result()
            except Exception as err:  # noqa: BLE001
                failure = err
            if _distributed():
                ok = torch.tensor([0.0 if failure is not None else 1.0], device=_sync_device())
                torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
                if failure is None and ok.item() < 1:
                    failure = RuntimeError("the analysis failed on another rank")
                if failure is None:
                    try:
                        results = {k: m.to(_sync_device()).compute() for k, m in results.items()}
                    except ValueError as err:
                        failure = err
        if failure is not None:
            record = make_record(p.step, None, baseline=self.baseline, epoch=p.epoch, error=repr(failure), wall_time=p.wall_time)
            if isinstance(failure, ValueError):  # bad input (no node qualifies, ...): flagged, not an error
                self._warn_once(f"value:{failure}", f"NeuroMFA at step {p.step}: {failure}; logged as NaN")
            else:
                self.errors += 1
                record["errors"] = self.errors
                self._record(record)
                if self.on_error == "raise":
                    raise RuntimeError(f"NeuroMFA analysis of step {p.step} failed: {failure!r}") from failure
                tb = "".join(traceback.format_exception(type(failure), failure, failure.__traceback__))
                self._warn_once(f"worker:{type(failure).__name__}", f"NeuroMFA analysis of step {p.step} failed (training continues; on_error='warn'):\n{tb}")
                return record
        elif p.record is not None:
            record = p.record
        else:
            if "rms_error" in results:
                self._warn_once(
                    "analysis:rms", f"NeuroMFA scale-controlled analysis at step {p.step} failed: {results['rms_error']}; "
                    "the *_rms values are logged as NaN"
                )
            rms = results.get("rms", _NAN_SUMMARY if self.scale_control else None)  # missing: scale="rms" failed
            record = make_record(p.step, results.get("raw"), rms, baseline=self.baseline, epoch=p.epoch, wall_time=p.wall_time)
            if self.baseline is None and _finite(record.get("alpha0")):
                self.baseline = {k: record[k] for k in ("alpha0", "width", "alpha0_rms", "width_rms") if k in record}
        record["errors"] = self.errors
        self._record(record)
        return record

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self._ready.append(record)
        if self.history_file is not None and _is_rank_zero():
            try:
                self.history_file.append(record)
            except OSError as err:
                self._warn_once("history", f"NeuroMFA could not write {self.history_file.path}: {err}")

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
        """Join the worker thread and close the history file (pending work is dropped: flush first)."""
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
        which the resumed run will compute again. Only rank 0 touches the file; the in-memory history
        is changed on rank 0 only, and nothing here decides what a rank does next.
        """
        if self.history_file is None or not _is_rank_zero():
            return
        if not self.resumed:
            self.history_file.rewrite([])
            return
        kept = load_history(self.history_file.path) if self.history_file.path.exists() else []
        by_step = {r["step"]: r for r in kept if r.get("step", -1) <= current_step}
        by_step.update({r["step"]: r for r in self.history})
        self.history = [by_step[s] for s in sorted(by_step)]
        self.history_file.rewrite(self.history)

    def state_dict(self) -> dict[str, Any]:
        """Baseline, last step, error count and history (pending snapshots are finalised first)."""
        self._finalise_ready(block=True)
        return {"version": 1, "baseline": self.baseline, "last_step": self.last_step, "errors": self.errors, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = state.get("baseline")
        self.last_step = int(state.get("last_step", -1))
        self.errors = int(state.get("errors", 0))
        self.history = list(state.get("history", []))


class _Analysis:
    """The worker-thread part of a snapshot: partition sums for every network, then compute()."""

    def __init__(self, jobs: list[tuple[str, NeuroMFA, list[Any]]], compute: bool) -> None:
        self.jobs, self.compute = jobs, compute

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, metric, nets in self.jobs:
            metric.update(nets)
            if not self.compute:
                out[key] = metric
                continue
            try:
                out[key] = metric.compute()
            except ValueError as err:
                if key == "raw":
                    raise
                # scale-controlled only (e.g. no node qualifies after rescaling): raw values stay, *_rms NaN
                out[f"{key}_error"] = str(err)
        self.jobs = []  # drop the weight copies as soon as they are used
        return out


def _sync_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _finite(x: Any) -> bool:
    return isinstance(x, float) and x == x and abs(x) != float("inf")
