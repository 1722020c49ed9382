"""The depth heatmap of :mod:`neuromfa_callback.plotting`: one row per depth (block), one column per snapshot."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from neuromfa_callback._checks import check_choice

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DEPTH_VALUES", "depth_matrix", "plot_depth_heatmap"]

#: What a depth heatmap can show, with its colour-bar label.
DEPTH_VALUES = {
    "alpha0": "alpha0 (mean over samples)",
    "width": "width (mean over samples)",
    "emergence": "E against the depth's own baseline",
    "alpha0_rms": "alpha0, scale-controlled",
    "emergence_rms": "E, scale-controlled",
}


def depth_matrix(records: list[dict[str, Any]], value: str = "alpha0") -> tuple[list[str], np.ndarray]:
    """``(depth names, values[depth, snapshot])`` of records holding ``by_depth`` (NaN where a record lacks it).

    Example:
        >>> recs = [{"step": 0, "by_depth": [{"name": "l.0", "alpha0": 1.4}, {"name": "l.1", "alpha0": 1.5}]},
        ...         {"step": 5, "error": "diverged"}]
        >>> names, m = depth_matrix(recs)
        >>> names, m.tolist()
        (['l.0', 'l.1'], [[1.4, nan], [1.5, nan]])
    """
    names: list[str] = []
    for r in records:
        for row in r.get("by_depth") or []:
            if row["name"] not in names:
                names.append(row["name"])
    out = np.full((len(names), len(records)), np.nan)
    where = {n: i for i, n in enumerate(names)}
    for j, r in enumerate(records):
        for row in r.get("by_depth") or []:
            v = row.get(value)
            out[where[row["name"]], j] = np.nan if v is None else float(v)
    return names, out


def plot_depth_heatmap(
    history: Any,
    *,
    value: str = "alpha0",
    ax: Axes | None = None,
    cmap: Any = "viridis",
    path: str | os.PathLike | None = None,
) -> Figure:
    """Heatmap of a per-depth value (``alpha0``, ``width``, ``emergence``, or their ``_rms`` twins) with step
    across and depth (block, in forward order) down.

    Depths with too few nodes for a spectrum at a snapshot, and failed snapshots, are blank cells.

    Args:
        history: snapshot records with ``"step"`` and ``"by_depth"`` (as the callbacks and the CLI write them).
        value: one of :data:`DEPTH_VALUES`.
        ax: draw into these Axes (a colorbar is added beside them) instead of a new figure.
        cmap: matplotlib colormap (name or object).
        path: if given, also save the figure there (``dpi=150``).

    Returns:
        The figure drawn on; the heatmap is a ``QuadMesh`` of shape ``(n_depths, n_snapshots)``.

    Raises:
        ValueError: unknown ``value``, empty history, or no record holds ``by_depth``.
        ImportError: matplotlib is not installed.

    Example:
        >>> recs = [{"step": s, "by_depth": [{"name": f"layers.{d}", "alpha0": 1.4 - 0.001 * s * (d + 1)}
        ...                                  for d in range(3)]} for s in (0, 50, 100)]
        >>> fig = plot_depth_heatmap(recs)
        >>> fig.axes[0].collections[0].get_array().shape, fig.axes[0].get_yticklabels()[0].get_text()
        ((3, 3), 'layers.0')
    """
    from neuromfa_callback.plotting import _edges, _figure_and_axes, _finish, _history, _integer_ticks, _matplotlib

    check_choice("value", value, tuple(DEPTH_VALUES))
    records, steps, _ = _history(history, needs="by_depth")
    mpl = _matplotlib()
    names, data = depth_matrix(records, value)
    fig, ax = _figure_and_axes(ax, mpl, figsize=(7.2, 1.6 + 0.28 * max(len(names), 3)))
    mesh = ax.pcolormesh(_edges(steps), np.arange(len(names) + 1) - 0.5, np.ma.masked_invalid(data), cmap=cmap,
                         shading="flat")
    ax.set_yticks(np.arange(len(names)), labels=names, fontsize=8 if len(names) <= 24 else 6)
    ax.invert_yaxis()  # the first block on top
    fig.colorbar(mesh, ax=ax).set_label(DEPTH_VALUES[value])
    ax.set(xlabel="step", ylabel="depth", title=f"{value} by depth over training")
    _integer_ticks(ax.xaxis, steps, mpl)
    return _finish(fig, path)
