"""The analysis worker: one thread that never competes with training for cores.

The worker thread runs at the lowest scheduling priority the platform offers (Linux: ``SCHED_IDLE``,
else the highest ``nice``), and everything it runs has a bounded thread budget: NumPy's BLAS is limited
to one thread while it works (``threadpoolctl``) and the analysis makes no calls into torch's
intra-op thread pool on CPU tensors (NumPy does the CPU work). So the training thread keeps its cores,
and the worker only uses time that would otherwise be idle.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import threading
from typing import Any

__all__ = ["lower_priority", "worker_executor"]


def lower_priority() -> str:
    """Put the calling thread at the lowest scheduling priority available; returns what was done."""
    tid = threading.get_native_id()
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
            return "nice 19"
        except OSError:
            pass
    return "unchanged"


class _Limited:
    """A callable run with NumPy's BLAS limited to one thread (the limit is global to that library, so it
    is applied only while the worker runs; torch's own BLAS is separate and untouched)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self) -> Any:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with the dev/test environment
            ctx: Any = contextlib.nullcontext()
        else:
            ctx = threadpool_limits(limits=1, user_api="blas")
        with ctx:
            return self.fn()


class _Executor(cf.ThreadPoolExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future:  # noqa: D102
        return super().submit(_Limited(lambda: fn(*args, **kwargs)))


def worker_executor() -> cf.ThreadPoolExecutor:
    """A one-thread executor whose thread runs at the lowest priority with a bounded thread budget."""
    return _Executor(max_workers=1, thread_name_prefix="neuromfa", initializer=lower_priority)
