"""TensorBoardLogger: scalars at the snapshot steps and the figures (add_figure), read back from the event file."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from neuromfa_callback import NeuroMFACallback
from tests._models import TinyLM

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_tensorboard_and_csv_receive_scalars_and_figures(tmp_path):
    tb = TensorBoardLogger(tmp_path, name="tb", version=0)
    csv = CSVLogger(tmp_path, name="csv", version=0)
    cb = NeuroMFACallback(every_n_train_steps=4, samples=2, neurons_per_layer=16, figure_every_n_snapshots=1, null=1,
                          log_per_depth=True)
    pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_steps=8, logger=[tb, csv], callbacks=[cb],
               enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False).fit(TinyLM())
    tb.experiment.flush()
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0})
    acc.Reload()
    by_step = {r["step"]: r for r in cb.history}
    for key in ("alpha0", "emergence", "emergence_rms", "alpha0_null", "emergence_null"):
        events = acc.Scalars(f"neuromfa/{key}")
        assert [e.step for e in events] == [0, 4, 8]
        assert [e.value for e in events] == pytest.approx([by_step[s][key] for s in (0, 4, 8)], rel=1e-6, abs=1e-7)
    for depth in (0, 1):  # log_per_depth: one scalar per depth and value
        for key in ("alpha0", "width", "emergence"):
            events = acc.Scalars(f"neuromfa/depth/gpt_neox.layers.{depth}/{key}")
            assert [e.step for e in events] == [0, 4, 8]
            expected = [by_step[s]["by_depth"][depth][key] for s in (0, 4, 8)]
            assert [e.value for e in events] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    tags = acc.Tags()["images"]
    assert {"neuromfa/spectra", "neuromfa/evolution", "neuromfa/spectrum_heatmap"} <= set(tags)
    assert acc.Images("neuromfa/spectra")[-1].step == 8
    text = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "neuromfa/alpha0" in text.splitlines()[0] and "neuromfa/emergence_rms" in text.splitlines()[0]
