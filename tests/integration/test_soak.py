"""Soak (slow): 2,000 steps, a snapshot every 10: bounded memory, constant threads, nothing lost.

A short run of the same harness (not marked slow) keeps it working between soak runs."""

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


@pytest.mark.timeout(300)
def test_soak_harness_short_run(tmp_path):
    """60 steps, a snapshot every 4 (60 is on the grid, so the final snapshot adds nothing): every snapshot in
    the history once, the thread counts constant after warm-up (one worker, reused)."""
    r = soak(steps=60, every=4, samples=2, out_dir=str(tmp_path))
    assert r["history_steps"] == list(range(0, 61, 4)) and len(r["history_steps"]) == r["expected_snapshots"]
    assert len(r["probes"]) >= 2
    assert len(r["python_threads"]) == 1 and len(r["os_threads"]) == 1, r["probes"]
