"""Snapshot records and the JSON-lines history file.

A record is a plain ``dict`` (one per analysed training step) with the scalar keys of
:data:`SCALAR_KEYS` and the mean spectrum ``q``, ``tau``, ``alpha``, ``f_alpha``. The history file
holds one record per line, appended and flushed (``fsync``) as soon as the record is final, so a
crash loses nothing that was computed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neuromfa_callback.functional.emergence import emergence

__all__ = [
    "SCALAR_KEYS",
    "HistoryFile",
    "load_history",
    "make_record",
    "safe_emergence",
]

#: Scalars logged for every snapshot (prefixed ``neuromfa/`` by the callbacks).
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
)

_NAN = float("nan")


def _RENAMES(suffix: str) -> list[tuple[str, str]]:  # noqa: N802
    """(compute() key, record key) pairs; ``suffix`` is "" or "_rms"."""
    return [
        ("alpha0", f"alpha0{suffix}"),
        ("alpha0_std", f"alpha0{suffix}_std"),
        ("width", f"width{suffix}"),
        ("width_std", f"width{suffix}_std"),
        ("weighted_degree", f"weighted_degree{suffix}"),
        ("n_ill_formed", f"n_ill_formed{suffix}"),
    ]


def safe_emergence(alpha0: float, width: float, alpha0_ref: float, width_ref: float) -> float:
    """:func:`~neuromfa_callback.emergence`, or NaN when any input is not positive and finite.

    Example:
        >>> safe_emergence(1.2, 0.7, 1.4, 0.6) > 0, math.isnan(safe_emergence(float("nan"), 0.7, 1.4, 0.6))
        (True, True)
    """
    vals = (alpha0, width, alpha0_ref, width_ref)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals):
        return _NAN
    return float(emergence(*vals))


def _to_float(x: Any) -> float:
    if hasattr(x, "item"):
        x = x.item()
    return float(x)


def make_record(
    step: int,
    raw: Mapping[str, Any] | None,
    rms: Mapping[str, Any] | None = None,
    *,
    baseline: Mapping[str, float] | None = None,
    epoch: int | None = None,
    error: str | None = None,
    wall_time: float | None = None,
) -> dict[str, Any]:
    """Build a JSON-ready record from ``NeuroMFA.compute()`` outputs (raw and scale-controlled).

    ``raw``/``rms`` may be ``None`` (failed or diverged snapshot): the scalars are NaN and
    ``error`` says why. ``baseline`` holds ``alpha0``, ``width`` (and ``alpha0_rms``,
    ``width_rms``) of the first snapshot; without it this record is the baseline (E = 0).

    Example:
        >>> import torch
        >>> out = {"alpha0": torch.tensor(1.4), "alpha0_std": torch.tensor(0.01), "width": torch.tensor(0.6),
        ...        "width_std": torch.tensor(0.02), "weighted_degree": torch.tensor(0.02),
        ...        "n_ill_formed": torch.tensor(0.0), "n_nodes": torch.tensor(900.0),
        ...        "q": torch.tensor([-0.1, 0.0, 0.1]), "tau": torch.tensor([-0.14, 0.0, 0.14]),
        ...        "alpha": torch.tensor([1.4, 1.4]), "f_alpha": torch.tensor([0.0, 0.0])}
        >>> rec = make_record(0, out)
        >>> rec["step"], rec["emergence"], round(rec["alpha0"], 6)
        (0, 0.0, 1.4)
    """
    rec: dict[str, Any] = {"step": int(step)}
    if epoch is not None:
        rec["epoch"] = int(epoch)
    if wall_time is not None:
        rec["time"] = float(wall_time)
    sources = [("", raw)] + ([("_rms", rms)] if rms is not None or raw is None else [])
    for suffix, out in sources:
        for key, name in _RENAMES(suffix):
            rec[name] = _to_float(out[key]) if out is not None else _NAN
    if raw is not None:
        rec["n_nodes"] = _to_float(raw["n_nodes"])
        for key in ("q", "tau", "alpha", "f_alpha"):
            rec[key] = [float(v) for v in np.asarray(raw[key], dtype=np.float64).tolist()]
    base = baseline or {"alpha0": rec.get("alpha0", _NAN), "width": rec.get("width", _NAN)}
    if baseline is None and "alpha0_rms" in rec:
        base = dict(base, alpha0_rms=rec["alpha0_rms"], width_rms=rec["width_rms"])
    rec["emergence"] = safe_emergence(rec["alpha0"], rec["width"], base["alpha0"], base["width"])
    if "alpha0_rms" in rec:
        rec["emergence_rms"] = safe_emergence(
            rec["alpha0_rms"], rec["width_rms"], base.get("alpha0_rms", _NAN), base.get("width_rms", _NAN)
        )
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
