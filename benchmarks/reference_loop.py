"""A straightforward Python-loop implementation of NEUROMFA.md section 2, written as the reference is.

Per-node ``collections.Counter`` of rounded distances, and for every radius a Python sum over each
node's counter. This is the speed baseline for ``bench_spectrum.py`` / ``bench_network.py``; it lives
in ``benchmarks/`` on purpose (the package holds no per-edge Python objects).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def loop_spectrum(indptr, distances, q=None, threshold=150.0, decimals=0, min_neighbours=10):
    """Return (tau, alpha, f_alpha) computed with Python loops."""
    q = np.round(np.arange(-30, 31) * 0.1, 1) if q is None else np.asarray(q, dtype=float)
    counters = []
    for i in range(len(indptr) - 1):
        kept = [d for d in distances[indptr[i] : indptr[i + 1]] if 1 < d <= threshold]
        if len(kept) > min_neighbours:
            counters.append(Counter(np.round(kept, decimals).tolist()))
    if not counters:
        raise ValueError(f"no node has more than {min_neighbours} neighbours within (1, threshold]")
    radii = sorted(set().union(*counters))
    big_l = radii[-1]
    totals = [1 + sum(c.values()) for c in counters]
    log_z = []
    for r in radii:
        z = np.zeros_like(q)
        for c, total in zip(counters, totals):
            mass = 1 + sum(v for k, v in c.items() if k <= r)
            z += (mass / total) ** q
        log_z.append(np.log(z))
    x = np.log(np.array(radii) / big_l)
    log_z = np.array(log_z)
    xc = x - x.mean()
    tau = xc @ (log_z - log_z.mean(axis=0)) / (xc @ xc)
    alpha = np.diff(tau) / np.diff(q)
    return tau, alpha, q[:-1] * alpha - tau[:-1]
