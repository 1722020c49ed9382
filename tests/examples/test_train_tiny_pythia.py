"""The demo runs end to end (tiny settings), and `neuromfa analyze` on its checkpoints reproduces the log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_tiny_pythia
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("demo")
    result = train_tiny_pythia.main(["--max-steps", "40", "--every", "20", "--samples", "3", "--output", str(out), "--no-wandb"])
    return out, result


def test_demo_writes_history_figures_and_checkpoints(demo_run):
    out, result = demo_run
    from neuromfa_callback import load_history

    assert [r["step"] for r in load_history(out / "history.jsonl")] == [0, 20, 40]
    assert (out / "spectra.png").stat().st_size > 10_000 and (out / "emergence.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step=0", "step=20", "step=40"]
    assert result["val_loss"][40] < result["val_loss"][0]  # the model learns


def test_cli_on_demo_checkpoints_reproduces_the_logged_values(demo_run, capsys):
    out, _ = demo_run
    from neuromfa_callback import load_history
    from neuromfa_callback.cli import main

    paths = [str(out / "checkpoints" / f"step={s}") for s in (0, 20, 40)]
    assert main(["analyze", *paths, "--samples", "3", "--json", str(out / "cli.json"), "--quiet"]) == 0
    logged = {r["step"]: r for r in load_history(out / "history.jsonl")}
    keys = ["alpha0", "alpha0_std", "width", "width_std", "emergence", "alpha0_rms", "width_rms", "emergence_rms",
            "weighted_degree", "weighted_degree_rms", "n_ill_formed"]
    for rec in json.loads((out / "cli.json").read_text())["checkpoints"]:
        for k in keys:
            assert rec[k] == pytest.approx(logged[rec["step"]][k], rel=1e-12, abs=1e-15), (rec["step"], k)
        # per depth too (the callback names depths from the LightningModule, the CLI from the checkpoint's model)
        rows, logged_rows = rec["by_depth"], logged[rec["step"]]["by_depth"]
        assert len(rows) == len(logged_rows) > 0
        for row, ref in zip(rows, logged_rows):
            assert ref["name"].endswith(row["name"]), (ref["name"], row["name"])
            for k in ("alpha0", "width", "emergence", "alpha0_rms", "width_rms", "emergence_rms"):
                assert row[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-15), (rec["step"], row["name"], k)
    table = capsys.readouterr().out
    assert f"{logged[40]['alpha0']:.4f}" in table  # the printed precision (four decimals)
