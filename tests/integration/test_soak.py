"""Soak (slow): 2,000 steps, a snapshot every 10: bounded memory, constant threads, nothing lost."""

from __future__ import annotations

import pytest

from benchmarks.soak import soak


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_2000_steps(tmp_path):
    r = soak(steps=2000, every=10, out_dir=str(tmp_path))
    assert r["history_steps"] == list(range(0, 2001, 10))
    assert r["rss_growth"] < 0.05, r["probes"]
    assert len(r["python_threads"]) == 1 and len(r["os_threads"]) == 1, r["probes"]
