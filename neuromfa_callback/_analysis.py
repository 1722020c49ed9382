"""The analysis of one snapshot: what the worker process runs (kept light: no Lightning, no torchmetrics).

Importing this module (and running an analysis of prepared chunks) imports NumPy and the package's
functional core only, no torch, so the worker process starts in a fraction of a second.
"""

from __future__ import annotations

import time
from typing import Any

from neuromfa_callback.functional.neuromfa import NeuroMFAOptions

__all__ = ["SnapshotAnalysis", "warm_up"]


def warm_up() -> bool:
    """Import what an analysis needs (the worker runs this when it starts, ahead of the first snapshot)."""
    import neuromfa_callback.backends.numpy_backend  # noqa: F401
    import neuromfa_callback.functional.summary  # noqa: F401

    return True


class SnapshotAnalysis:
    """The analysis of one snapshot, run by the worker process (or inline): partition sums for every
    network (by depth, with nulls), then the analyses; or, in a distributed run, the states to reduce.

    :meth:`prepare` (in the training process: the worker's feeder thread, or inline) turns the networks
    into their CSR chunks and the nulls' chunks (NumPy arrays); only those, the options (without
    ``module``/``example_input``) and the depth names are pickled, so the worker imports no torch.
    """

    def __init__(self, jobs: list[tuple[str, NeuroMFAOptions, tuple[str, ...], str, list[Any]]], compute: bool) -> None:
        self.jobs, self.compute = jobs, compute
        self._prepared = False

    def prepare(self) -> None:
        """Networks -> chunks (waits for their pending device copies first)."""
        from neuromfa_callback.functional.neuromfa import _network_chunks

        if not self._prepared:
            self.jobs = [(k, o, d, f, [_network_chunks(n, o) for n in nets]) for k, o, d, f, nets in self.jobs]
            self._prepared = True

    synchronize = prepare  # what the worker's feeder calls before shipping

    def __call__(self) -> dict[str, Any]:
        from neuromfa_callback.functional.neuromfa import NeuroMFAState, _neuromfa_add_chunks, _neuromfa_compute

        self.prepare()
        wall, cpu = time.perf_counter(), time.thread_time()
        out: dict[str, Any] = {}
        for key, options, depth_names, family, networks in self.jobs:
            state = NeuroMFAState.empty(options, depth_names)
            for slot, chunks, nulls in networks:
                _neuromfa_add_chunks(state, slot, chunks, nulls)
            if not self.compute:
                out[key] = (state, family)
                continue
            try:
                out[key] = _neuromfa_compute(state, family=family)
            except ValueError as err:  # no node qualifies, ...: raw -> flagged record; rms -> *_rms NaN
                out[f"{key}_error"] = err
        self.jobs = []  # drop the weight copies as soon as they are used
        out["_timing"] = (time.perf_counter() - wall, time.thread_time() - cpu)
        return out
