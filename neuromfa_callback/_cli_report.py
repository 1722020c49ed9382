"""Outputs of ``neuromfa analyze``: the terminal table, JSON, CSV, figures and a W&B run.

Every function takes the records of :func:`neuromfa_callback.cli.analyze_checkpoints` (the
training callback's history records plus ``path`` and ``backend``). Nothing here computes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neuromfa_callback.history import SCALAR_KEYS

__all__ = [
    "JSON_VERSION",
    "check_plot_suffix",
    "check_writable",
    "csv_columns",
    "format_table",
    "log_wandb",
    "spectra_path",
    "write_csv",
    "write_json",
    "write_plots",
]

#: ``"version"`` of the ``--json`` document.
JSON_VERSION = 1
_PATH_WIDTH = 32


def check_writable(option: str, path: str | None) -> None:
    """Raise ``ValueError`` (naming ``option``) if ``path`` cannot be created: a missing folder or a folder itself."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {path}: is a directory, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: directory {parent} does not exist")


def check_plot_suffix(path: str) -> None:
    """Raise ``ValueError`` unless ``path`` ends in an image format matplotlib writes (``.png``, ``.pdf``, ...).

    Example:
        >>> check_plot_suffix("emergence.png")
        >>> check_plot_suffix("emergence.txt")
        Traceback (most recent call last):
        ...
        ValueError: expected a file name ending in an image format (.eps, .pdf, .png, .svg, ...), got 'emergence.txt'
    """
    from matplotlib.backend_bases import FigureCanvasBase

    if Path(path).suffix.lower().lstrip(".") not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"expected a file name ending in an image format (.eps, .pdf, .png, .svg, ...), got {path!r}")


def spectra_path(path: str | os.PathLike[str]) -> Path:
    """Where ``--plot FILE`` saves the f(alpha) spectra: ``FILE`` with ``_spectra`` before the suffix.

    Example:
        >>> spectra_path("out/run.png").as_posix()
        'out/run_spectra.png'
    """
    p = Path(path)
    return p.with_name(f"{p.stem}_spectra{p.suffix}")


# ------------------------------------------------------------------------------------ table
def _num(x: Any) -> str:
    """Six significant digits; ``nan`` for a failed value."""
    if x is None:
        return "nan"
    return f"{float(x):.6g}"


def _count(x: Any) -> str:
    return str(int(x)) if x is not None and math.isfinite(x) else "nan"


def _short_paths(paths: Sequence[str]) -> list[str]:
    """File names; ``folder/name`` where names repeat; long ones keep their tail."""
    names = [Path(p).name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [Path(p).parent.name + "/" + Path(p).name for p in paths]
    return [n if len(n) <= _PATH_WIDTH else "..." + n[-(_PATH_WIDTH - 3) :] for n in names]


def _pm() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "±".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "+-"
    return "±"


def format_table(records: Sequence[Mapping[str, Any]], *, scale_control: bool = True) -> str:
    """The records as an aligned text table, values to six significant digits.

    Columns: step, path, ``alpha0 ± std``, ``width ± std``, E, (with ``scale_control``:
    ``alpha0_rms ± std``, ``width_rms ± std``, E_rms), weighted degree, ill-formed sample count
    (and its ``_rms`` twin). A failed checkpoint shows ``nan``.

    Example:
        >>> recs = [{"step": s, "path": f"ckpt/step_{s}", "alpha0": a, "alpha0_std": 0.01, "width": 0.6,
        ...          "width_std": 0.02, "emergence": e, "weighted_degree": 0.0151, "n_ill_formed": 0.0}
        ...         for s, a, e in [(0, 1.4, 0.0), (100, 1.25, 0.113329)]]
        >>> print(format_table(recs, scale_control=False).replace("±", "+-"))
        step  path      alpha0 +- std  width +- std         E  weighted_degree  ill-formed
        ----  --------  -------------  ------------  --------  ---------------  ----------
           0  step_0      1.4 +- 0.01   0.6 +- 0.02         0           0.0151           0
         100  step_100   1.25 +- 0.01   0.6 +- 0.02  0.113329           0.0151           0
    """
    pm = _pm()
    pairs = [("alpha0", "alpha0_std"), ("width", "width_std")]
    rms_pairs = [("alpha0_rms", "alpha0_rms_std"), ("width_rms", "width_rms_std")]
    # a column: (header, key) for one value, or (header, (mean key, std key)) for "mean ± std"
    cols: list[tuple[str, Any]] = [(f"{m} {pm} std", (m, s)) for m, s in pairs] + [("E", "emergence")]
    if scale_control:
        cols += [(f"{m} {pm} std", (m, s)) for m, s in rms_pairs] + [("E_rms", "emergence_rms")]
    cols += [("weighted_degree", "weighted_degree"), ("ill-formed", "n_ill_formed")]
    if scale_control:
        cols.append(("ill-formed_rms", "n_ill_formed_rms"))

    def cell(rec: Mapping[str, Any], key: Any) -> Any:
        if isinstance(key, tuple):
            return (_num(rec.get(key[0])), _num(rec.get(key[1])))
        return _count(rec.get(key)) if key.startswith("n_") else _num(rec.get(key))

    raw = [[cell(rec, key) for _, key in cols] for rec in records]
    for j, (_, key) in enumerate(cols):  # align "mean ± std" on the ±
        if isinstance(key, tuple) and raw:
            mw = max(len(r[j][0]) for r in raw)
            sw = max(len(r[j][1]) for r in raw)
            for r in raw:
                r[j] = f"{r[j][0].rjust(mw)} {pm} {r[j][1].ljust(sw)}"
    head = ["step", "path", *(h for h, _ in cols)]
    shorts = _short_paths([str(rec["path"]) for rec in records])
    rows = [[str(rec["step"]), short, *r] for rec, short, r in zip(records, shorts, raw)]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


# ---------------------------------------------------------------------------------- files
def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> None:
    """Write ``{"version": 1, "options": ..., "checkpoints": [...]}`` (NaN, as in history files, marks a failure)."""
    from neuromfa_callback import __version__

    doc = {"version": JSON_VERSION, "options": dict(options), "checkpoints": list(records), "neuromfa_callback": __version__}
    Path(path).write_text(json.dumps(doc, indent=1, default=_json_default, allow_nan=True) + "\n", encoding="utf-8")


def csv_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """``step``, ``path``, the scalar keys present (callback order), ``backend``, and ``error`` if any failed."""
    present = {k for r in records for k in r}
    cols = ["step", "path", *(k for k in SCALAR_KEYS if k in present), "backend"]
    return cols + (["error"] if "error" in present else [])


def write_csv(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Write one row of scalars per checkpoint (floats at full precision, ``nan`` for failures)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(records), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)


def write_plots(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Save :func:`plot_emergence` to ``path`` and :func:`plot_spectra` to :func:`spectra_path`; returns both paths."""
    from neuromfa_callback.plotting import plot_emergence, plot_spectra

    plot_emergence(records, path=path)
    plot_spectra(records, path=spectra_path(path))
    return [Path(path), spectra_path(path)]


# ------------------------------------------------------------------------------------- W&B
def log_wandb(records: Sequence[Mapping[str, Any]], options: Mapping[str, Any], *, project: str) -> str:
    """Log the series to a new W&B run, as the training callback would; returns the run directory.

    Each record's scalars go under the callback's names (``neuromfa/alpha0``, ...,
    ``neuromfa/emergence``) with ``trainer/global_step`` = its step (the step metric of the
    ``neuromfa/*`` keys, as Lightning's ``WandbLogger`` logs it), then a spectrum table and the
    figures as ``neuromfa/evolution`` and ``neuromfa/spectra`` images. The run is offline unless
    ``WANDB_MODE`` says otherwise; its config holds the options and paths, never the environment.
    """
    import wandb

    from neuromfa_callback.loggers import STEP_KEY, scalar_metrics
    from neuromfa_callback.plotting import plot_emergence, plot_spectra

    from neuromfa_callback._wandb import wandb_init_kwargs

    config = {**options, "paths": [str(r["path"]) for r in records]}
    try:
        run = wandb.init(project=project, job_type="neuromfa-analyze", config=config, **wandb_init_kwargs())
    except wandb.errors.Error as err:
        raise OSError(f"--wandb: cannot start a W&B run: {err}") from err
    exit_code = 1
    try:
        run.define_metric(STEP_KEY)
        run.define_metric("neuromfa/*", step_metric=STEP_KEY)
        for rec in records:
            run.log({**scalar_metrics(rec), STEP_KEY: int(rec["step"])})
        table = wandb.Table(columns=["step", "q", "tau", "alpha", "f_alpha"])
        for rec in records:
            for row in zip(rec.get("q", []), rec.get("tau", []), rec.get("alpha", []), rec.get("f_alpha", [])):
                table.add_data(int(rec["step"]), *row)
        run.log(
            {
                "neuromfa/spectrum_table": table,
                "neuromfa/evolution": wandb.Image(plot_emergence(records)),
                "neuromfa/spectra": wandb.Image(plot_spectra(records)),
                STEP_KEY: int(records[-1]["step"]),
            }
        )
        exit_code = 0
        return str(run.dir)
    finally:
        run.finish(exit_code=exit_code)
