"""The analysis worker: a child process that never competes with training for cores or for the GIL.

A thread in the training process would share its GIL: whenever the worker ran Python (or NumPy code that
holds the GIL), the training thread would wait, and at a low priority the worker would hold the GIL
while descheduled (priority inversion: measured +68 % on a 2-core machine). So the analysis runs in
ONE child process (``spawn``: safe with CUDA and with threads), started on first use, that

* runs at the lowest scheduling priority the platform offers (Linux: ``SCHED_IDLE``, else ``nice 19``),
* uses one thread (NumPy's BLAS limited to one; torch is not even imported there),
* receives each snapshot as CSR chunks (NumPy arrays, a few MB) through a pipe and returns the analyses.

In the training process a feeder thread waits for the pending device copies, turns the sampled networks
into chunks (small NumPy work) and hands them to the child, releasing the GIL while it waits.
``asynchronous=False`` runs the same analysis inline.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["AnalysisWorker", "child_setup", "lower_priority"]


def lower_priority(pid: int = 0) -> str:
    """Put the process (``pid=0``: the calling one) at the lowest scheduling priority available; says which."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, pid, 19)
            return "nice 19"
        except OSError:
            pass
    return "unchanged"


def child_setup() -> None:
    """In the child: lowest priority, one thread for torch and for NumPy's BLAS."""
    nice = os.environ.get("NEUROMFA_WORKER_NICE")
    if nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, int(nice))
    else:
        lower_priority()
    os.environ["OMP_NUM_THREADS"] = "1"  # torch, should a backend import it here (the NumPy path does not)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    threadpool_limits(limits=1)


def _describe_priority() -> tuple[str, int, list[int], int]:
    """(scheduling policy name, torch threads, BLAS threads, pid) of the calling process: for tests."""
    import numpy  # noqa: F401 - loads the BLAS that threadpoolctl reports
    import torch

    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else -1
    name = "SCHED_IDLE" if policy == getattr(os, "SCHED_IDLE", -2) else str(policy)
    try:
        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:  # pragma: no cover
        blas = []
    return name, torch.get_num_threads(), blas, os.getpid()


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """While the child starts, hide where ``__main__`` came from: ``spawn`` would otherwise import the user's
    training script in the child (running its training again where it lacks an ``if __name__ == "__main__":``
    guard). Everything the child runs lives in this package."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


class AnalysisWorker:
    """Futures of analyses computed in the child process (see the module docstring).

    ``submit(fn, *args)`` returns a future at once; ``fn`` and ``args`` must pickle (the networks do,
    as NumPy arrays). Analyses run one at a time, in order.
    """

    def __init__(self) -> None:
        self._feeder = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuromfa-feeder")
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _child(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=child_setup
                )
                with _main_hidden():
                    self._pool.submit(int).result()  # starts the process now, without the user's script
            return self._pool

    def _run(self, fn: Any, args: tuple) -> Any:
        for a in (fn, *args):  # chunk the networks here (waiting for their device copies), off the training thread
            sync = getattr(a, "synchronize", None)
            if callable(sync):
                sync()
        return self._child().submit(fn, *args).result()

    def submit(self, fn: Any, *args: Any) -> cf.Future:
        return self._feeder.submit(self._run, fn, args)

    def start(self) -> cf.Future:
        """Start the child now (it imports what an analysis needs at its low priority), so the first snapshot
        does not wait for it; returns the future of that warm-up."""
        from neuromfa_callback._analysis import warm_up

        return self._feeder.submit(lambda: self._child().submit(warm_up).result())

    def call_in_child(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the child now (tests: its priority and threads)."""
        return self._child().submit(fn, *args).result()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop taking work; the feeder is joined (``wait``), the child is told to exit and left to do so
        (nothing is pending once the feeder has finished)."""
        self._feeder.shutdown(wait=wait, cancel_futures=cancel_futures)
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=cancel_futures)
                self._pool = None
