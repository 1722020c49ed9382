"""Figures of a NeuroMFA run: spectra, alpha0 / width / E over training, and spectrum heatmaps.

Every function takes a *history*: a sequence of snapshot records (plain dicts, one per analysed
step, as the training callback writes them one JSON line each) with the keys ``"step"``,
``"alpha0"``, ``"alpha0_std"``, ``"width"``, ``"width_std"``, ``"emergence"``, optionally the
scale-controlled ``"*_rms"`` twins, and the mean spectrum ``"q"``, ``"tau"``, ``"alpha"``,
``"f_alpha"``. Non-finite values (a diverged snapshot) and absent spectra (a failed snapshot) are
left out of the drawing, never plotted.

Each function returns a :class:`matplotlib.figure.Figure`. It draws into ``ax`` when given (and
returns ``ax.figure``), else into a new ``Figure`` that no pyplot figure manager knows about; it
never calls ``plt.show()`` and writes a file only when given ``path``. matplotlib is imported on
first call, so importing this module works without it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from neuromfa_callback._checks import check_choice
from neuromfa_callback.functional.spectrum import Spectrum

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_depth_heatmap", "plot_emergence", "plot_spectra", "plot_spectrum_evolution"]

_QUANTITY_LABEL = {"alpha": "alpha(q)", "tau": "tau(q)", "f_alpha": "f(alpha(q))"}
_SPECTRUM_KEYS = ("q", "tau", "alpha", "f_alpha")
_DPI = 150
_STYLE = {  # raw values solid blue, scale-controlled dashed orange, validation loss green
    "raw": {"color": "C0", "ls": "-", "marker": "o", "ms": 3, "lw": 1.6},
    "control": {"color": "C1", "ls": "--", "marker": "s", "ms": 2.5, "lw": 1.4},
    "loss": {"color": "C2", "ls": "-", "marker": "o", "ms": 3, "lw": 1.6},
    "null": {"color": "0.45", "ls": ":", "marker": "^", "ms": 2.5, "lw": 1.3},
}


def _matplotlib() -> Any:
    """Import matplotlib (and the submodules used here) or raise with the install command.

    pyplot too: ``wandb.Image(fig)`` compares its argument with ``matplotlib.pyplot``, which fails
    where nothing imported pyplot (``neuromfa analyze --wandb`` from a shell). No backend is chosen
    here; matplotlib takes Agg without a display, and these figures are saved, never shown.
    """
    try:
        import matplotlib
        import matplotlib.axes
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.pyplot
        import matplotlib.ticker
    except ImportError as err:
        raise ImportError("neuromfa_callback.plotting needs matplotlib: pip install matplotlib") from err
    return matplotlib


def _history(history: Any, *, allow_spectra: bool = False, needs: str = "") -> tuple[list, np.ndarray, bool]:
    """The records sorted by step (stable), their steps, and whether they came as ``Spectrum`` objects.

    ``needs``: a key at least one record must hold (single records may lack their spectrum).
    """
    if allow_spectra and isinstance(history, Spectrum):
        history = [history]
    if isinstance(history, (Mapping, str, bytes)) or not isinstance(history, (Sequence, np.ndarray)):
        allowed = "sequence of snapshot dicts" + (" or of `Spectrum` objects" if allow_spectra else "")
        raise TypeError(f"Expected `history` to be a {allowed}, got {type(history).__name__}")
    records = list(history)
    if not records:
        raise ValueError("Expected `history` to hold at least one snapshot, got 0")
    if allow_spectra and all(isinstance(r, Spectrum) for r in records):
        records = [{"step": i, **{k: getattr(s, k) for k in _SPECTRUM_KEYS}} for i, s in enumerate(records)]
        return records, np.arange(len(records), dtype=np.float64), True
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"Expected record {i} of `history` to be a dict, got {type(record).__name__}")
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, Real) or not math.isfinite(step):
            raise ValueError(f"Expected 'step' of record {i} of `history` to be a finite number, got {step!r}")
    if needs and not any(needs in r for r in records):
        raise _missing(needs, records[0])
    steps = np.array([r["step"] for r in records], dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    return [records[i] for i in order], steps[order], False


def _missing(key: str, record: Mapping) -> ValueError:
    return ValueError(f"Snapshot at step {record['step']} has no {key!r} key")


def _scalar(record: Mapping, key: str, *, required: bool) -> float:
    if required and key not in record:
        raise _missing(key, record)
    value = record.get(key)
    try:
        return np.nan if value is None else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Expected {key!r} at step {record['step']} to be a number, got {value!r}") from None


def _vector(record: Mapping, key: str, size: int | None = None) -> np.ndarray:
    """``record[key]`` as a float vector, checking its length if ``size`` is given.

    A failed snapshot (written with no spectrum at all) or a ``None`` value gives ``size`` NaNs.
    """
    if key not in record and any(k in record for k in _SPECTRUM_KEYS):
        raise _missing(key, record)
    value = record.get(key)
    if value is None:
        return np.full(size or 0, np.nan)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Expected {key!r} at step {record['step']} to be a list of numbers") from None
    if arr.ndim != 1 or (size is not None and arr.size != size):
        want = f"{size} values" if size is not None else "a 1-D list"
        raise ValueError(f"Expected {key!r} at step {record['step']} to hold {want}, got shape {arr.shape}")
    return arr


def _figure_and_axes(ax: Any, mpl: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    if ax is None:
        fig = mpl.figure.Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    if not isinstance(ax, mpl.axes.Axes):
        raise TypeError(f"Expected `ax` to be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def _finish(fig: Any, path: str | os.PathLike | None) -> Any:
    if path is not None:
        fig.figure.savefig(os.fspath(path), dpi=_DPI)  # .figure: the root, also for a SubFigure
    return fig


def _integer_ticks(axis: Any, values: np.ndarray, mpl: Any) -> None:
    if np.all(values == np.round(values)):
        axis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between sorted centres (half a spacing beyond each end; +-0.5 for one)."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def plot_spectra(
    history: Any,
    *,
    ax: Axes | None = None,
    cmap: Any = "viridis",
    path: str | os.PathLike | None = None,
) -> Figure:
    """f(alpha) against alpha, one curve per snapshot, coloured by step (colorbar "step").

    Args:
        history: snapshot records with ``"step"``, ``"alpha"`` and ``"f_alpha"``; or one
            :class:`~neuromfa_callback.Spectrum` or a list of them (coloured by list index).
        ax: draw into these Axes (a colorbar is added beside them) instead of a new figure.
        cmap: matplotlib colormap (name or object) mapping step to colour.
        path: if given, also save the figure there (``dpi=150``).

    Returns:
        The figure drawn on. Snapshots whose spectrum is non-finite or absent (a failed snapshot)
        draw no curve (a note in the corner counts them); non-finite points of the others are left
        out.

    Raises:
        ValueError: empty history, a record holds a partial spectrum (say ``"alpha"`` but not
            ``"f_alpha"``) or mismatched lengths, or no record has ``"alpha"`` (the message names
            the key and step).
        TypeError: ``history`` or ``ax`` has the wrong type.
        ImportError: matplotlib is not installed.

    Example:
        >>> import numpy as np
        >>> q = np.round(np.arange(-30, 31) * 0.1, 1)
        >>> history = []
        >>> for step, a0, w in [(0, 1.45, 0.6), (100, 1.3, 0.7), (200, 1.2, 0.8)]:
        ...     tau = a0 * q - w / 12 * q**2           # alpha(q) = a0 - w q / 6: width w
        ...     alpha = np.diff(tau) / np.diff(q)
        ...     f_alpha = q[:-1] * alpha - tau[:-1]
        ...     history.append({"step": step, "alpha": alpha.tolist(), "f_alpha": f_alpha.tolist()})
        >>> fig = plot_spectra(history)
        >>> ax = fig.axes[0]
        >>> len(ax.lines), ax.get_xlabel(), ax.get_ylabel(), fig.axes[1].get_ylabel()
        (3, 'alpha', 'f(alpha)', 'step')
    """
    records, steps, by_index = _history(history, allow_spectra=True, needs="alpha")
    mpl = _matplotlib()
    colormap = mpl.colormaps.get_cmap(cmap)
    fig, ax = _figure_and_axes(ax, mpl, figsize=(6.4, 4.4))
    lo, hi = float(steps.min()), float(steps.max())
    norm = mpl.colors.Normalize(vmin=lo - 0.5 if lo == hi else lo, vmax=hi + 0.5 if lo == hi else hi)
    skipped = 0
    for i in range(len(records)):  # in step order: later steps drawn on top
        alpha, f_alpha = _vector(records[i], "alpha"), _vector(records[i], "f_alpha")
        if alpha.size and f_alpha.size and alpha.size != f_alpha.size:
            raise ValueError(f"Expected 'alpha' and 'f_alpha' at step {records[i]['step']} to have one "
                             f"length, got {alpha.size} and {f_alpha.size}")
        finite = np.isfinite(alpha) & np.isfinite(f_alpha) if alpha.size == f_alpha.size else alpha[:0] > 0
        if not finite.any():  # all NaN, or null in the record
            skipped += 1
            continue
        ax.plot(alpha[finite], f_alpha[finite], color=colormap(norm(steps[i])), lw=1.4)
    cbar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax)
    cbar.set_label("index" if by_index else "step")
    _integer_ticks(cbar.ax.yaxis, steps, mpl)
    if skipped:
        ax.text(0.02, 0.02, f"{skipped} non-finite snapshot(s) not drawn", transform=ax.transAxes,
                fontsize="small", color="0.35")
    ax.set(xlabel="alpha", ylabel="f(alpha)", title="Multifractal spectrum over training")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _val_loss(val_loss: Any) -> np.ndarray:
    """``val_loss`` as a ``(n, 2)`` array of (step, loss) sorted by step."""
    pairs = list(val_loss.items()) if isinstance(val_loss, Mapping) else val_loss
    try:
        arr = np.asarray(pairs, dtype=np.float64)
        arr = arr.reshape(0, 2) if arr.size == 0 else arr
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"Expected `val_loss` to be (step, loss) pairs or a dict step -> loss, got {val_loss!r}")
    return arr[np.argsort(arr[:, 0], kind="stable")]


def _panels(ax: Any, n: int, mpl: Any) -> tuple[Any, list[Any]]:
    if ax is None:
        fig = mpl.figure.Figure(figsize=(7.5, 1.9 * n + 0.7), layout="constrained")
        axes = list(fig.subplots(n, 1, sharex=True))
        fig.suptitle("NeuroMFA over training")
        return fig, axes
    axes = list(np.ravel(np.asarray(ax, dtype=object))) if not isinstance(ax, mpl.axes.Axes) else [ax]
    if len(axes) != n or not all(isinstance(a, mpl.axes.Axes) for a in axes):
        got = [type(a).__name__ for a in axes]
        raise ValueError(f"Expected `ax` to be a sequence of {n} matplotlib Axes, got {got}")
    return axes[0].figure, axes


def _line(ax: Any, x: np.ndarray, y: np.ndarray, style: str, label: str) -> None:
    """Plot the finite points of ``(x, y)``; nothing when there are none."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        ax.plot(x[ok], y[ok], label=label, **_STYLE[style])


def _panel(ax: Any, x: np.ndarray, cols: dict, key: str, label: str, control_label: str) -> None:
    """Raw value (with a +-std band when ``key_std`` exists), scale-controlled value dashed, legend."""
    y, std = cols[key], cols.get(f"{key}_std", np.full(x.size, np.nan))
    _line(ax, x, y, "raw", label)
    band = np.isfinite(y) & np.isfinite(std)
    if band.any():
        ax.fill_between(x[band], (y - std)[band], (y + std)[band], color=_STYLE["raw"]["color"], alpha=0.2,
                        lw=0, label="± std over samples")
    _line(ax, x, cols[f"{key}_rms"], "control", control_label)
    ax.set_ylabel("E" if key == "emergence" else key)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small", framealpha=0.85)


def plot_emergence(
    history: Any,
    *,
    val_loss: Any = None,
    ax: Sequence[Axes] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Stacked panels over step: alpha0, width, degree of emergence E, and the validation loss.

    Raw values are solid (alpha0 and width: the mean over samples with a +-std band); the
    scale-controlled values (``"alpha0_rms"``, ``"width_rms"``, ``"emergence_rms"``: every matrix
    rescaled to one RMS before ``1/|w|``) are dashed on the same axes, so a raw trend that the
    control lacks shows weight-norm growth. Records are drawn in step order; non-finite values are
    left out.

    Args:
        history: snapshot records with ``"step"``, ``"alpha0"``, ``"width"``, ``"emergence"`` and
            optionally ``"alpha0_std"``, ``"width_std"``, ``"alpha0_rms"``, ``"width_rms"``,
            ``"emergence_rms"``.
        val_loss: validation loss as (step, loss) pairs or a dict step -> loss; adds a fourth panel.
        ax: a sequence of 3 Axes (4 with ``val_loss``) to draw into, top to bottom.
        path: if given, also save the figure there (``dpi=150``).

    Returns:
        The figure drawn on: 3 panels, or 4 with ``val_loss``.

    Raises:
        ValueError: empty history, a record lacks a required key (the message names the key and
            step), malformed ``val_loss``, or ``ax`` holds the wrong number of Axes.
        ImportError: matplotlib is not installed.

    Example:
        >>> from neuromfa_callback import emergence
        >>> history = [
        ...     {"step": s, "alpha0": a, "alpha0_std": 0.02, "width": w, "width_std": 0.01,
        ...      "emergence": emergence(a, w, 1.45, 0.6)}
        ...     for s, a, w in [(0, 1.45, 0.6), (100, 1.3, 0.7), (200, 1.2, 0.8)]
        ... ]
        >>> fig = plot_emergence(history, val_loss={100: 3.1, 200: 2.7})
        >>> [a.get_ylabel() for a in fig.axes], fig.axes[-1].get_xlabel()
        (['alpha0', 'width', 'E', 'val loss'], 'step')
    """
    records, steps, _ = _history(history)
    mpl = _matplotlib()
    loss = None if val_loss is None else _val_loss(val_loss)
    fig, axes = _panels(ax, 3 if loss is None else 4, mpl)
    keys = ("alpha0", "alpha0_std", "alpha0_rms", "width", "width_std", "width_rms", "emergence", "emergence_rms")
    required = ("alpha0", "width", "emergence")
    cols = {k: np.array([_scalar(r, k, required=k in required) for r in records]) for k in keys}
    for panel, key in zip(axes, ("alpha0", "width")):
        _panel(panel, steps, cols, key, f"{key} (mean)", "scale-controlled")
    axes[2].axhline(0.0, color="0.6", lw=0.8)
    _panel(axes[2], steps, cols, "emergence", "E (raw)", "E (scale-controlled)")
    for panel, key, label in ((axes[0], "alpha0_null", "alpha0 of the null"), (axes[2], "emergence_null", "E_null")):
        null = np.array([_scalar(r, key, required=False) for r in records])
        if np.isfinite(null).any():
            _line(panel, steps, null, "null", label)
            panel.legend(fontsize=7, loc="best")
    if loss is not None:
        _line(axes[3], loss[:, 0], loss[:, 1], "loss", "validation loss")
        axes[3].set_ylabel("val loss")
    for a in axes:
        a.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    _integer_ticks(axes[-1].xaxis, steps, mpl)
    return _finish(fig, path)


def plot_spectrum_evolution(
    history: Any,
    *,
    quantity: str = "alpha",
    ax: Axes | None = None,
    cmap: Any = "magma",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Heatmap of ``alpha(q)`` (or ``tau(q)``, ``f(alpha(q))``) with step across and q up.

    ``tau`` is one value per ``q``: its cells are centred on ``q``. ``alpha_j`` and ``f_j`` are
    forward differences over the chord ``[q_j, q_{j+1}]``, so their cells span exactly that chord
    (they are indexed by ``q[:-1]``). Step cells are centred on the steps. Non-finite values and
    failed snapshots (no spectrum) are masked: blank cells.

    Args:
        history: snapshot records with ``"step"``, ``"q"`` and ``quantity``, all on one q grid; or
            one :class:`~neuromfa_callback.Spectrum` or a list of them (x axis: list index).
        quantity: ``"alpha"``, ``"tau"`` or ``"f_alpha"``.
        ax: draw into these Axes (a colorbar is added beside them) instead of a new figure.
        cmap: matplotlib colormap (name or object).
        path: if given, also save the figure there (``dpi=150``).

    Returns:
        The figure drawn on; the heatmap is a ``QuadMesh`` of shape ``(len(q) [- 1], n_snapshots)``.

    Raises:
        ValueError: unknown ``quantity``, empty history, a record lacks ``"q"`` or ``quantity``,
            holds the wrong number of values, or uses another q grid (the message names the step).
        ImportError: matplotlib is not installed.

    Example:
        >>> import numpy as np
        >>> q = np.round(np.arange(-30, 31) * 0.1, 1)
        >>> history = []
        >>> for step, a0, w in [(0, 1.45, 0.6), (100, 1.3, 0.7), (200, 1.2, 0.8)]:
        ...     tau = a0 * q - w / 12 * q**2
        ...     history.append({"step": step, "q": q.tolist(), "alpha": (np.diff(tau) / 0.1).tolist()})
        >>> fig = plot_spectrum_evolution(history, quantity="alpha")
        >>> fig.axes[0].collections[0].get_array().shape, fig.axes[1].get_ylabel()
        ((60, 3), 'alpha(q)')
    """
    check_choice("quantity", quantity, tuple(_QUANTITY_LABEL))
    records, steps, by_index = _history(history, allow_spectra=True, needs=quantity)
    mpl = _matplotlib()
    grids = [_vector(r, "q") for r in records]
    ref = next((i for i, g in enumerate(grids) if np.isfinite(g).any()), 0)  # a diverged record may lack q
    q = grids[ref]
    if q.size < 2 or not np.isfinite(q).all() or not (np.diff(q) > 0).all():
        raise ValueError(f"Expected 'q' at step {records[ref]['step']} to be finite, increasing: {q.tolist()}")
    size = q.size if quantity == "tau" else q.size - 1
    columns = []
    for record, grid in zip(records, grids):
        if not np.isfinite(grid).any():
            columns.append(np.full(size, np.nan))
        elif grid.shape != q.shape or not np.allclose(grid, q, rtol=0, atol=1e-12):
            raise ValueError(f"Expected every snapshot on one q grid: 'q' at step {record['step']} differs "
                             f"from 'q' at step {records[ref]['step']}")
        else:
            columns.append(_vector(record, quantity, size))
    data = np.column_stack(columns)
    fig, ax = _figure_and_axes(ax, mpl, figsize=(7.2, 4.4))
    y_edges = _edges(q) if quantity == "tau" else q
    mesh = ax.pcolormesh(_edges(steps), y_edges, np.ma.masked_invalid(data), cmap=cmap, shading="flat")
    ax.axhline(0.0, color="white", lw=0.6, alpha=0.6)
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label(_QUANTITY_LABEL[quantity])
    ax.set(xlabel="index" if by_index else "step", ylabel="q", title=f"{_QUANTITY_LABEL[quantity]} over training")
    _integer_ticks(ax.xaxis, steps, mpl)
    return _finish(fig, path)


from neuromfa_callback._plot_depth import plot_depth_heatmap  # noqa: E402 - uses this module's helpers
