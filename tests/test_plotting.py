"""Figures of a run history: the right artists, NaN tolerance, no pyplot side effects, clear errors."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neuromfa_callback import emergence, multifractal_spectrum  # noqa: E402
from neuromfa_callback.plotting import plot_emergence, plot_spectra, plot_spectrum_evolution  # noqa: E402

Q = np.round(np.arange(-30, 31) * 0.1, 1)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_history(rng: np.random.Generator, n: int = 20, *, rms: bool = True) -> list[dict]:
    """A run where alpha0 falls 1.45 -> 1.2 and the width grows 0.6 -> 0.8, fast early then plateauing.

    The mean spectrum is ``tau = a0 q - w q^2 / 12 + c q^3`` (alpha decreasing, width ``w``, peak 0).
    """
    progress = 1 - np.exp(-np.arange(n) / (n / 5))
    progress /= progress[-1]
    alpha0 = 1.45 - 0.25 * progress + rng.normal(0, 0.004, n) * (np.arange(n) > 0)
    width = 0.6 + 0.2 * progress + rng.normal(0, 0.004, n) * (np.arange(n) > 0)
    alpha0_rms, width_rms = 1.45 - 0.08 * progress, 0.6 + 0.05 * progress  # control: every matrix at one RMS
    history = []
    for k in range(n):
        tau = alpha0[k] * Q - width[k] / 12 * Q**2 + 0.003 * Q**3
        alpha = np.diff(tau) / np.diff(Q)
        record = {
            "step": 100 * k,
            "alpha0": alpha0[k],
            "alpha0_std": 0.03,
            "width": width[k],
            "width_std": 0.02,
            "emergence": emergence(alpha0[k], width[k], alpha0[0], width[0]),
            "q": Q.tolist(),
            "tau": tau.tolist(),
            "alpha": alpha.tolist(),
            "f_alpha": (Q[:-1] * alpha - tau[:-1]).tolist(),
        }
        if rms:
            record.update(
                alpha0_rms=alpha0_rms[k],
                alpha0_rms_std=0.002,
                width_rms=width_rms[k],
                width_rms_std=0.001,
                emergence_rms=emergence(alpha0_rms[k], width_rms[k], alpha0_rms[0], width_rms[0]),
            )
        history.append(record)
    return history


def diverge(record: dict) -> dict:
    """The same record with every value NaN, as a diverged snapshot is written."""
    return {k: v if k == "step" else [math.nan] * len(v) if isinstance(v, list) else math.nan
            for k, v in record.items()}


@pytest.fixture
def history(rng) -> list[dict]:
    return make_history(rng)


@pytest.fixture(autouse=True)
def no_pyplot_side_effects(monkeypatch):
    """Every test: `plt.show` must never be called and no pyplot figure may be left open."""

    def refuse(*args, **kwargs):
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", refuse)
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def colorbar_axes(fig: Figure) -> list:
    return [a for a in fig.axes if hasattr(a, "_colorbar")]


# --- plot_spectra ---------------------------------------------------------------------------------


def test_plot_spectra_draws_one_curve_per_record_coloured_by_step(history):
    """One Line2D per snapshot, earliest in the colormap's first colour, latest in its last."""
    fig = plot_spectra(history)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) == len(history)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "alpha", "f(alpha)", "Multifractal spectrum over training")
    (cbar_ax,) = colorbar_axes(fig)
    assert cbar_ax.get_ylabel() == "step"
    viridis = matplotlib.colormaps["viridis"]
    np.testing.assert_allclose(matplotlib.colors.to_rgba(ax.lines[0].get_color()), viridis(0.0))
    np.testing.assert_allclose(matplotlib.colors.to_rgba(ax.lines[-1].get_color()), viridis(1.0))
    np.testing.assert_allclose(ax.lines[0].get_xdata(), history[0]["alpha"])


def test_plot_spectra_accepts_spectrum_objects_coloured_by_index(rng):
    """A single Spectrum gives one curve, a list one curve each; the colorbar then reads "index"."""
    spectra = []
    for scale in (0.02, 0.03, 0.04):
        d = 1 / np.abs(rng.normal(0, scale, size=200 * 40))
        spectra.append(multifractal_spectrum(np.arange(0, d.size + 1, 40), d))
    fig = plot_spectra(spectra[0])
    assert len(fig.axes[0].lines) == 1
    fig = plot_spectra(spectra, cmap="plasma")
    assert len(fig.axes[0].lines) == 3
    np.testing.assert_allclose(fig.axes[0].lines[2].get_ydata(), spectra[2].f_alpha)
    assert colorbar_axes(fig)[0].get_ylabel() == "index"


def test_plot_spectra_skips_nan_records_and_points(history):
    """All-NaN snapshots draw no curve; NaN points of the others are left out, never drawn."""
    history[3] = diverge(history[3])
    history[7] = {**history[7], "alpha": None, "f_alpha": None}
    history[5]["f_alpha"] = [math.nan] * 10 + history[5]["f_alpha"][10:]
    fig = plot_spectra(history)
    ax = fig.axes[0]
    assert len(ax.lines) == len(history) - 2
    for line in ax.lines:
        assert np.isfinite(line.get_xydata()).all()
    assert sorted(len(line.get_xdata()) for line in ax.lines)[0] == 50
    assert any("2 non-finite snapshot(s)" in t.get_text() for t in ax.texts)


def test_plot_spectra_single_record_has_a_usable_colorbar(history):
    fig = plot_spectra(history[:1])
    assert len(fig.axes[0].lines) == 1 and len(colorbar_axes(fig)) == 1
    fig.canvas.draw()


# --- plot_emergence -------------------------------------------------------------------------------


def test_plot_emergence_has_three_panels_or_four_with_val_loss(rng):
    """3 panels sharing the step axis; a validation-loss panel is added only when val_loss is given."""
    history = make_history(rng, rms=False)
    fig = plot_emergence(history)
    assert [a.get_ylabel() for a in fig.axes] == ["alpha0", "width", "E"]
    assert fig.axes[2].get_xlabel() == "step"
    assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], fig.axes[2])
    fig = plot_emergence(history, val_loss=[(s, 4.0 - s / 1000) for s in range(0, 2000, 200)])
    assert [a.get_ylabel() for a in fig.axes] == ["alpha0", "width", "E", "val loss"]
    assert fig.axes[3].get_xlabel() == "step" and fig.axes[2].get_xlabel() == ""
    np.testing.assert_allclose(fig.axes[3].lines[0].get_ydata(), [4.0 - s / 1000 for s in range(0, 2000, 200)])


def test_plot_emergence_shows_raw_and_scale_controlled_e_in_a_legend(history):
    """E panel: raw E solid and the unit-RMS control dashed, both named in its legend."""
    fig = plot_emergence(history)
    e_ax = next(a for a in fig.axes if a.get_ylabel() == "E")
    assert [t.get_text() for t in e_ax.get_legend().get_texts()] == ["E (raw)", "E (scale-controlled)"]
    raw, rms = (line for line in e_ax.lines if not line.get_label().startswith("_"))
    assert (raw.get_linestyle(), rms.get_linestyle()) == ("-", "--")
    np.testing.assert_allclose(raw.get_ydata(), [r["emergence"] for r in history])
    np.testing.assert_allclose(rms.get_ydata(), [r["emergence_rms"] for r in history])
    assert raw.get_ydata()[0] == 0 and raw.get_ydata()[-1] > 0.1


def test_plot_emergence_draws_std_band_and_dashed_control_on_one_axis(history):
    """alpha0 and width: mean with a +-std band, and the rms control dashed on the same axes."""
    fig = plot_emergence(history)
    assert len(fig.axes) == 3
    for ax, key, std in ((fig.axes[0], "alpha0", 0.03), (fig.axes[1], "width", 0.02)):
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(min(r[key] for r in history) - std)
        assert ys.max() == pytest.approx(max(r[key] for r in history) + std)
        mean, control = ax.lines
        assert (mean.get_linestyle(), control.get_linestyle()) == ("-", "--")
        np.testing.assert_allclose(control.get_ydata(), [r[f"{key}_rms"] for r in history])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            f"{key} (mean)", "± std over samples", "scale-controlled"]


def test_plot_emergence_without_std_or_controls_draws_plain_lines(history):
    history = [{k: r[k] for k in ("step", "alpha0", "width", "emergence")} for r in history]
    fig = plot_emergence(history)
    assert all(len(a.collections) == 0 for a in fig.axes)
    assert [len(a.lines) for a in fig.axes] == [1, 1, 2]  # E panel: the curve and the zero line
    assert [t.get_text() for t in fig.axes[2].get_legend().get_texts()] == ["E (raw)"]


def test_plot_emergence_leaves_out_nan_values_and_sorts_by_step(history):
    history[4] = diverge(history[4])
    history[9]["emergence_rms"] = math.nan
    history = history[::-1]
    fig = plot_emergence(history, val_loss={300: 2.0, 100: math.nan, 0: 3.0})
    for a in fig.axes:
        for line in a.lines:
            assert np.isfinite(line.get_xydata()).all()
    alpha_line = fig.axes[0].lines[0]
    assert 400 not in alpha_line.get_xdata() and len(alpha_line.get_xdata()) == len(history) - 1
    assert (np.diff(alpha_line.get_xdata()) > 0).all()
    np.testing.assert_array_equal(fig.axes[3].lines[0].get_xdata(), [0, 300])


# --- plot_spectrum_evolution ----------------------------------------------------------------------


@pytest.mark.parametrize(("quantity", "rows", "label"), [
    ("alpha", 60, "alpha(q)"), ("f_alpha", 60, "f(alpha(q))"), ("tau", 61, "tau(q)")])
def test_plot_spectrum_evolution_heatmap_has_one_column_per_record(history, quantity, rows, label):
    """A QuadMesh of shape (q rows, snapshots) holding the records' values, with a labelled colorbar."""
    fig = plot_spectrum_evolution(history, quantity=quantity)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    data = mesh.get_array()
    assert data.shape == (rows, len(history))
    np.testing.assert_allclose(data[:, 7], history[7][quantity])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "q")
    assert colorbar_axes(fig)[0].get_ylabel() == label
    assert ax.get_ylim() == pytest.approx((-3.0, 3.0) if rows == 60 else (-3.05, 3.05))


def test_plot_spectrum_evolution_masks_nan_records(history):
    history[2] = diverge(history[2])
    history[6] = {**history[6], "alpha": None}
    data = plot_spectrum_evolution(history).axes[0].collections[0].get_array()
    assert data.mask[:, 2].all() and data.mask[:, 6].all()
    assert not data.mask[:, [0, 1, 3, 4, 5, 7]].any()


def test_failed_snapshots_without_spectrum_are_skipped(history):
    """A failed snapshot is written with NaN scalars and no spectrum keys: skipped, not an error."""
    history[4] = {k: (v if k == "step" else math.nan) for k, v in history[4].items() if not isinstance(v, list)}
    history[4]["error"] = "diverged"
    assert len(plot_spectra(history).axes[0].lines) == len(history) - 1
    assert plot_spectrum_evolution(history).axes[0].collections[0].get_array().mask[:, 4].all()
    assert len(plot_emergence(history).axes[0].lines[0].get_xdata()) == len(history) - 1
    with pytest.raises(ValueError, match="step 0 has no 'alpha' key"):
        plot_spectra([history[4] | {"step": 0}, history[4]])


def test_plot_spectrum_evolution_rejects_mixed_q_grids(history):
    history[5]["q"] = (Q * 2).tolist()
    with pytest.raises(ValueError, match="'q' at step 500 differs"):
        plot_spectrum_evolution(history)


# --- shared behaviour -----------------------------------------------------------------------------


def test_ax_argument_draws_into_the_given_axes(history):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plot_spectra(history, ax=ax1) is fig and len(ax1.lines) == len(history)
    assert plot_spectrum_evolution(history, ax=ax2) is fig and len(ax2.collections) == 1
    fig = Figure()
    axes = fig.subplots(4, 1)
    assert plot_emergence(history, val_loss={0: 1.0}, ax=axes) is fig
    assert [a.get_ylabel() for a in axes] == ["alpha0", "width", "E", "val loss"]
    with pytest.raises(ValueError, match="sequence of 3 matplotlib Axes"):
        plot_emergence(history, ax=axes)


@pytest.mark.parametrize("plot", [plot_spectra, plot_emergence, plot_spectrum_evolution])
def test_path_writes_a_png_and_still_returns_the_figure(history, tmp_path, plot):
    path = tmp_path / "figure.png"
    assert isinstance(plot(history, path=path), Figure)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.parametrize("plot", [plot_spectra, plot_emergence, plot_spectrum_evolution])
def test_empty_history_is_rejected(plot):
    with pytest.raises(ValueError, match="^Expected `history` to hold at least one snapshot, got 0$"):
        plot([])


@pytest.mark.parametrize(("plot", "key"), [
    (plot_spectra, "f_alpha"), (plot_emergence, "emergence"), (plot_spectrum_evolution, "alpha"),
    (plot_spectrum_evolution, "q")])
def test_missing_key_is_named_with_its_step(history, plot, key):
    del history[3][key]
    with pytest.raises(ValueError, match=f"step 300 has no '{key}' key"):
        plot(history)


def test_bad_arguments_are_rejected_with_the_offending_value(history):
    with pytest.raises(ValueError, match="Expected `quantity` to be one of .*got 'width'"):
        plot_spectrum_evolution(history, quantity="width")
    with pytest.raises(TypeError, match="sequence of snapshot dicts.*got dict"):
        plot_emergence(history[0])
    with pytest.raises(ValueError, match="'step' of record 1 of `history` to be a finite number, got None"):
        plot_spectra([history[0], {"alpha": [1.0]}])
    with pytest.raises(ValueError, match="Expected `val_loss` to be \\(step, loss\\) pairs or a dict"):
        plot_emergence(history, val_loss=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="Expected `ax` to be a matplotlib Axes"):
        plot_spectra(history, ax=[Figure().add_subplot()])


def test_missing_matplotlib_raises_with_install_hint(history, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_spectra(history)


def test_module_imports_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import neuromfa_callback.plotting as p\n"
        "assert p.__all__ == ['plot_depth_heatmap', 'plot_emergence', 'plot_spectra', 'plot_spectrum_evolution']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
