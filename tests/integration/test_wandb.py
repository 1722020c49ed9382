"""A real WandbLogger(offline=True): the run file holds the scalars at their steps, the table and images."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import WandbLogger

from neuromfa_callback import NeuroMFACallback
from tests._models import TinyLM
from tests.helpers.wandb_reader import installed_wandb_is_checked, images, read_records, scalars, tables, wait_for_run_file


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    ok, why = installed_wandb_is_checked()
    if not ok:
        pytest.skip(why)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def test_offline_wandb_run_holds_scalars_table_and_images(offline_wandb):
    tmp_path = offline_wandb
    logger = WandbLogger(project="neuromfa-test", save_dir=str(tmp_path), offline=True)
    cb = NeuroMFACallback(every_n_train_steps=5, samples=2, neurons_per_layer=16, figure_every_n_snapshots=2, null=1,
                          log_per_depth=True)
    trainer = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_steps=10, logger=logger, callbacks=[cb],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyLM())
    logger.experiment.finish()
    run_file = wait_for_run_file(tmp_path)
    records = read_records(run_file)

    by_step = {r["step"]: r for r in cb.history}
    for key in ("alpha0", "width", "emergence", "alpha0_rms", "emergence_rms", "weighted_degree", "alpha0_null",
                "emergence_null", "depth/gpt_neox.layers.1/alpha0"):
        got = scalars(records, f"neuromfa/{key}", step_key="trainer/global_step")
        assert [s for s, _ in got] == [0, 5, 10], key
        expected = [by_step[s][key] if "/" not in key else by_step[s]["by_depth"][1]["alpha0"] for s in (0, 5, 10)]
        assert [v for _, v in got] == pytest.approx(expected, abs=1e-12)

    tbls = tables(records, run_file)["neuromfa/spectrum_table"]
    rows = [row for t in tbls for row in t["data"]]
    assert tbls[0]["columns"] == ["step", "q", "tau", "alpha", "f_alpha"]
    assert sorted({row[0] for row in rows}) == [0, 5, 10]
    assert len(rows) == 3 * 60  # incremental: each snapshot's 60 rows logged once
    step10 = [row for row in rows if row[0] == 10]
    assert [row[3] for row in step10] == pytest.approx(by_step[10]["alpha"], abs=1e-12)

    imgs = images(records, run_file)
    assert {"neuromfa/spectra", "neuromfa/evolution", "neuromfa/spectrum_heatmap"} <= set(imgs)
    assert all(m.local_path is None or m.local_path.stat().st_size > 0 for m in imgs["neuromfa/spectra"])
