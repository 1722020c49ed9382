"""Snapshot records and the JSON-lines history file.

A record is a plain ``dict`` (one per analysed training step) built by :func:`make_record` from the
:class:`~neuromfa_callback.ModelAnalysis` of the raw and the scale-controlled analysis: the scalar
keys of :data:`SCALAR_KEYS`, the mean spectrum ``q``, ``tau``, ``alpha``, ``f_alpha``, and ``by_depth``
(one dict per depth: ``depth``, ``name``, ``alpha0``, ``width`` (and ``_std``), ``n_nodes``,
``n_ill_formed``, ``flag``, ``emergence`` against that depth's own baseline, and the ``_rms`` twins).
The history file holds one record per line, appended and flushed (``fsync``) as soon as the record is
final, so a crash loses nothing that was computed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neuromfa_callback.functional.summary import ModelAnalysis, safe_emergence

__all__ = [
    "SCALAR_KEYS",
    "HistoryFile",
    "baseline_of",
    "load_history",
    "make_record",
    "safe_emergence",
]

#: Scalars logged for every snapshot (prefixed ``neuromfa/`` by the callbacks); the ``*_null`` keys only
#: with ``null > 0``.
SCALAR_KEYS = (
    "alpha0",
    "alpha0_std",
    "width",
    "width_std",
    "emergence",
    "alpha0_rms",
    "alpha0_rms_std",
    "width_rms",
    "width_rms_std",
    "emergence_rms",
    "weighted_degree",
    "weighted_degree_rms",
    "n_ill_formed",
    "n_ill_formed_rms",
    "n_nodes",
    "alpha0_null",
    "alpha0_null_std",
    "width_null",
    "width_null_std",
    "emergence_null",
    "emergence_null_std",
)

_NAN = float("nan")
_SUMMARY = ("alpha0", "alpha0_std", "width", "width_std", "weighted_degree", "n_ill_formed")
_NULL = ("alpha0_null", "alpha0_null_std", "width_null", "width_null_std", "emergence_null", "emergence_null_std")


def _suffixed(key: str, suffix: str) -> str:
    """``alpha0_std`` + ``_rms`` -> ``alpha0_rms_std`` (the suffix goes before ``_std``)."""
    return f"{key[:-4]}{suffix}_std" if key.endswith("_std") else f"{key}{suffix}"


def _depth_rows(raw: ModelAnalysis | None, rms: ModelAnalysis | None) -> list[dict[str, Any]]:
    rows = [d.to_dict() for d in raw.by_depth] if raw is not None else []
    if rms is not None and len(rms.by_depth) == len(rows):
        for row, d in zip(rows, rms.by_depth):
            row.update(alpha0_rms=d.alpha0_mean, alpha0_rms_std=d.alpha0_std, width_rms=d.width_mean, width_rms_std=d.width_std)
    return rows


def baseline_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``record`` that later records' E are measured against (whole network and per depth)."""
    keys = ("alpha0", "width", "alpha0_rms", "width_rms")
    base: dict[str, Any] = {k: record[k] for k in keys if k in record}
    if record.get("by_depth"):
        base["by_depth"] = [{k: d[k] for k in keys if k in d} for d in record["by_depth"]]
    return base


def make_record(
    step: int,
    raw: ModelAnalysis | None,
    rms: ModelAnalysis | None = None,
    *,
    scale_control: bool | None = None,
    baseline: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    error: str | None = None,
    wall_time: float | None = None,
) -> dict[str, Any]:
    """Build a JSON-ready record from the raw and the scale-controlled analysis of one snapshot.

    ``raw`` may be ``None`` (failed or diverged snapshot): the scalars are NaN and ``error`` says why.
    ``rms`` ``None`` with ``scale_control`` true (the default when ``raw`` is ``None``) gives NaN
    ``*_rms`` values (the scale-controlled analysis failed alone). ``baseline``: :func:`baseline_of`
    the first snapshot; without it this record is the baseline (E = 0).

    Example:
        >>> import torch
        >>> from neuromfa_callback import analyze_model
        >>> _ = torch.manual_seed(0)
        >>> a = analyze_model(torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)), samples=2)
        >>> rec = make_record(0, a)
        >>> rec["step"], rec["emergence"], rec["alpha0"] == a.alpha0_mean, [d["emergence"] for d in rec["by_depth"]]
        (0, 0.0, True, [0.0, 0.0])
    """
    rec: dict[str, Any] = {"step": int(step)}
    if epoch is not None:
        rec["epoch"] = int(epoch)
    if wall_time is not None:
        rec["time"] = float(wall_time)
    scale_control = (rms is not None or raw is None) if scale_control is None else scale_control
    raw_vals = raw.scalars() if raw is not None else {}
    for key in _SUMMARY:
        rec[key] = float(raw_vals.get(key, _NAN))
    if scale_control:
        rms_vals = rms.scalars() if rms is not None else {}
        for key in _SUMMARY:
            rec[_suffixed(key, "_rms")] = float(rms_vals.get(key, _NAN))
    for key in _NULL:
        if key in raw_vals:
            rec[key] = float(raw_vals[key])
    if raw is not None:
        rec["n_nodes"] = raw.n_nodes
        rec["q"], rec["tau"] = raw.q.tolist(), raw.tau_mean.tolist()
        rec["alpha"], rec["f_alpha"] = raw.alpha_mean.tolist(), raw.f_alpha_mean.tolist()
        rec["by_depth"] = _depth_rows(raw, rms if scale_control else None)
    base = dict(baseline) if baseline else baseline_of(rec)
    rec["emergence"] = safe_emergence(rec["alpha0"], rec["width"], base.get("alpha0", _NAN), base.get("width", _NAN))
    if scale_control:
        rec["emergence_rms"] = safe_emergence(rec["alpha0_rms"], rec["width_rms"], base.get("alpha0_rms", _NAN), base.get("width_rms", _NAN))
    base_depths = base.get("by_depth") or []
    for i, row in enumerate(rec.get("by_depth", [])):
        b = base_depths[i] if i < len(base_depths) else {}
        row["emergence"] = safe_emergence(row["alpha0"], row["width"], b.get("alpha0", _NAN), b.get("width", _NAN))
        if "alpha0_rms" in row:
            row["emergence_rms"] = safe_emergence(row["alpha0_rms"], row["width_rms"], b.get("alpha0_rms", _NAN), b.get("width_rms", _NAN))
    if error is not None:
        rec["error"] = str(error)
    return rec


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


class HistoryFile:
    """Append-only JSON-lines history; each record is flushed and fsynced when written.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "h.jsonl")
        >>> h = HistoryFile(path)
        >>> h.append({"step": 0, "alpha0": 1.4})
        >>> h.append({"step": 10, "alpha0": float("nan")})
        >>> h.close()
        >>> [r["step"] for r in load_history(path)]
        [0, 10]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = None

    def _open(self):
        if self._fh is None or self._fh.closed:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return self._fh

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as one line and make it durable."""
        fh = self._open()
        fh.write(json.dumps(record, default=_json_default, allow_nan=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

    def rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Atomically replace the file's content (used when a resumed run truncates the future)."""
        self.close()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, default=_json_default, allow_nan=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Close the file handle (appending again reopens it)."""
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        self._fh = None


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history file; a torn last line (a crash mid-write) is skipped, other bad lines raise.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line other than the last is not valid JSON (names the line number).
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not a JSON record: {err}") from err
    return out
