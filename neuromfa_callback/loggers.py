"""Logging snapshot records: scalars to every Lightning logger, extras for W&B and TensorBoard.

Everything goes through public APIs: ``logger.log_metrics(metrics, step=...)`` for every logger
(optionally one scalar per depth); W&B gets incremental ``wandb.Table`` s (the spectrum; a summary row
per snapshot, null values included; a row per snapshot and depth), an f(alpha) chart coloured by step
and images (the f(alpha) curves, the alpha0/width/E trends, the alpha(q)-by-step heatmap, alpha0 and
E by depth and step); TensorBoard gets the same figures through ``add_figure``; CSV gets the scalars.
A logger that raises never stops training: the failure is warned once per logger, and the history
file keeps the record.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from neuromfa_callback.history import SCALAR_KEYS

__all__ = ["RecordLogger", "depth_metrics", "scalar_metrics"]

STEP_KEY = "trainer/global_step"
_SUMMARY_COLUMNS = ("alpha0", "width", "emergence", "alpha0_rms", "width_rms", "emergence_rms", "weighted_degree",
                    "alpha0_null", "width_null", "emergence_null")
_DEPTH_COLUMNS = ("alpha0", "alpha0_std", "width", "width_std", "emergence", "alpha0_rms", "emergence_rms", "n_nodes")


def scalar_metrics(record: Mapping[str, Any], prefix: str = "neuromfa/") -> dict[str, float]:
    """The scalars of a record, prefixed (NaN kept: a diverged snapshot shows as a gap).

    Example:
        >>> scalar_metrics({"step": 5, "alpha0": 1.3, "width": 0.6, "errors": 0, "q": [0.0]})
        {'neuromfa/alpha0': 1.3, 'neuromfa/width': 0.6, 'neuromfa/errors': 0.0}
    """
    keys = (*SCALAR_KEYS, "errors")
    return {f"{prefix}{k}": float(record[k]) for k in keys if k in record and record[k] is not None}


def depth_metrics(record: Mapping[str, Any], prefix: str = "neuromfa/") -> dict[str, float]:
    """One scalar per depth and value: ``neuromfa/depth/<name>/alpha0``, ``.../width``, ``.../emergence`` (and ``_rms``).

    Example:
        >>> depth_metrics({"by_depth": [{"depth": 0, "name": "layers.0", "alpha0": 1.2, "width": 0.5, "emergence": 0.0}]})
        {'neuromfa/depth/layers.0/alpha0': 1.2, 'neuromfa/depth/layers.0/width': 0.5, 'neuromfa/depth/layers.0/emergence': 0.0}
    """
    out = {}
    for row in record.get("by_depth", []):
        for key in ("alpha0", "width", "emergence", "alpha0_rms", "emergence_rms"):
            if key in row:
                out[f"{prefix}depth/{row['name']}/{key}"] = float(row[key])
    return out


def _has_spectrum(rec: Mapping[str, Any]) -> bool:
    return "alpha" in rec and all(math.isfinite(v) for v in rec["alpha"])


class RecordLogger:
    """Sends records to a list of Lightning loggers; keeps the W&B incremental table between calls."""

    def __init__(self, prefix: str = "neuromfa/", log_tables: bool = True, log_per_depth: bool = False) -> None:
        self.prefix = prefix
        self.log_tables = log_tables
        self.log_per_depth = log_per_depth
        self._tables: dict[str, Any] = {}
        self._warned: set[str] = set()

    def _fail(self, logger: Any, what: str, step: int, err: BaseException) -> None:
        name = type(logger).__name__
        if name + what in self._warned:
            return
        self._warned.add(name + what)
        warnings.warn(
            f"NeuroMFA could not log {what} of step {step} to {name}: {err!r}. Training continues; "
            "the history file (if `history_path` is set) still has every snapshot.",
            RuntimeWarning,
            stacklevel=3,
        )

    def log(self, loggers: Iterable[Any], record: Mapping[str, Any]) -> None:
        """Log one record's scalars (and the W&B table) to every logger."""
        step = int(record["step"])
        metrics = scalar_metrics(record, self.prefix)
        if self.log_per_depth:
            metrics.update(depth_metrics(record, self.prefix))
        for logger in loggers:
            try:
                logger.log_metrics(metrics, step=step)
            except Exception as err:  # noqa: BLE001 - a logger must never stop training
                self._fail(logger, "scalars", step, err)
                continue
            if self.log_tables and _is_wandb(logger) and _has_spectrum(record):
                try:
                    self._log_wandb_table(logger, record)
                except Exception as err:  # noqa: BLE001
                    self._fail(logger, "the spectrum table", step, err)

    def _table(self, name: str, columns: list[str]) -> Any:
        import wandb

        if name not in self._tables:
            self._tables[name] = wandb.Table(columns=columns, log_mode="INCREMENTAL")
        return self._tables[name]

    def _log_wandb_table(self, logger: Any, record: Mapping[str, Any]) -> None:
        """The incremental tables: the spectrum (step, q, tau, alpha, f_alpha), the summary (one row per
        snapshot, null values included) and the depths (one row per snapshot and depth)."""
        step = int(record["step"])
        spectrum = self._table("spectrum_table", ["step", "q", "tau", "alpha", "f_alpha"])
        for q, tau, a, f in zip(record["q"], record["tau"], record["alpha"], record["f_alpha"]):
            spectrum.add_data(step, q, tau, a, f)
        summary = self._table("summary_table", ["step", *_SUMMARY_COLUMNS])
        summary.add_data(step, *(float(record.get(k, math.nan)) for k in _SUMMARY_COLUMNS))
        rows = record.get("by_depth") or []
        payload = {f"{self.prefix}spectrum_table": spectrum, f"{self.prefix}summary_table": summary, STEP_KEY: step}
        if rows:
            depth = self._table("depth_table", ["step", "depth", "name", *_DEPTH_COLUMNS])
            for row in rows:
                depth.add_data(step, int(row["depth"]), str(row["name"]), *(float(row.get(k, math.nan)) for k in _DEPTH_COLUMNS))
            payload[f"{self.prefix}depth_table"] = depth
        logger.experiment.log(payload)

    def log_figures(self, loggers: Iterable[Any], history: Sequence[Mapping[str, Any]]) -> None:
        """Figures of the spectra so far: W&B image + f(alpha) chart, TensorBoard ``add_figure``."""
        usable = [r for r in history if _has_spectrum(r)]
        if not usable:
            return
        step = int(usable[-1]["step"])
        for logger in loggers:
            wb, tb = _is_wandb(logger), _is_tensorboard(logger)
            if not (wb or tb):
                continue
            try:
                from neuromfa_callback.plotting import (
                    plot_depth_heatmap,
                    plot_emergence,
                    plot_spectra,
                    plot_spectrum_evolution,
                )

                spectra_fig = plot_spectra(usable)
                trend_fig = plot_emergence(usable)
                heat_fig = plot_spectrum_evolution(usable)
                has_depths = any(r.get("by_depth") for r in usable)
                depth_figs = {v: plot_depth_heatmap(usable, value=v) for v in ("alpha0", "emergence")} if has_depths else {}
                if wb:
                    import wandb

                    rows = [[int(r["step"]), a, f] for r in usable for a, f in zip(r["alpha"], r["f_alpha"])]
                    chart = wandb.plot.line(
                        wandb.Table(columns=["step", "alpha", "f_alpha"], data=rows),
                        "alpha",
                        "f_alpha",
                        stroke="step",
                        title="f(alpha) by training step",
                    )
                    logger.experiment.log(
                        {
                            f"{self.prefix}spectra": wandb.Image(spectra_fig),
                            f"{self.prefix}evolution": wandb.Image(trend_fig),
                            f"{self.prefix}spectrum_heatmap": wandb.Image(heat_fig),
                            f"{self.prefix}f_alpha_chart": chart,
                            **{f"{self.prefix}depth_heatmap_{v}": wandb.Image(f) for v, f in depth_figs.items()},
                            STEP_KEY: step,
                        }
                    )
                if tb:
                    logger.experiment.add_figure(f"{self.prefix}spectra", spectra_fig, global_step=step, close=False)
                    logger.experiment.add_figure(f"{self.prefix}evolution", trend_fig, global_step=step, close=False)
                    logger.experiment.add_figure(f"{self.prefix}spectrum_heatmap", heat_fig, global_step=step, close=False)
                    for v, f in depth_figs.items():
                        logger.experiment.add_figure(f"{self.prefix}depth_heatmap_{v}", f, global_step=step, close=False)
            except Exception as err:  # noqa: BLE001
                self._fail(logger, "figures", step, err)


def _is_wandb(logger: Any) -> bool:
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return False
    return isinstance(logger, WandbLogger)


def _is_tensorboard(logger: Any) -> bool:
    try:
        from lightning.pytorch.loggers import TensorBoardLogger
    except ImportError:  # pragma: no cover
        return False
    return isinstance(logger, TensorBoardLogger)
