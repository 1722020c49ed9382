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
    "TABLE_WIDTH",
    "check_plot_suffix",
    "check_writable",
    "csv_columns",
    "depth_path",
    "depth_rows",
    "format_depth_table",
    "format_table",
    "log_wandb",
    "spectra_path",
    "write_csv",
    "write_depth_csv",
    "write_depth_plots",
    "write_json",
    "write_plots",
]

#: ``"version"`` of the ``--json`` document.
JSON_VERSION = 1
#: Columns the ``neuromfa analyze`` table fits in.
TABLE_WIDTH = 120
_MIN_PATH_WIDTH = 16


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
def _fixed(x: Any) -> str:
    """Four decimals; ``nan`` for a failed value."""
    return "nan" if x is None else f"{float(x):.4f}"


def _sig(x: Any) -> str:
    """Four significant digits; ``nan`` for a failed value."""
    return "nan" if x is None else f"{float(x):.4g}"


def _count(x: Any) -> str:
    return str(int(x)) if x is not None and math.isfinite(x) else "nan"


def _short_paths(paths: Sequence[str]) -> list[str]:
    """File names; ``folder/name`` where names repeat."""
    names = [Path(p).name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [Path(p).parent.name + "/" + Path(p).name for p in paths]
    return names


def _pm() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "±".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "+-"
    return "±"


def format_table(
    records: Sequence[Mapping[str, Any]],
    *,
    scale_control: bool = True,
    width: int = TABLE_WIDTH,
    plus_minus: str | None = None,
) -> str:
    """The records as an aligned text table of at most ``width`` columns (unless the numbers alone are wider).

    Columns: step, ``alpha0 ± std``, ``width ± std``, E, (with ``scale_control``: ``alpha0_rms``,
    ``E_rms``), (with nulls: ``E_null``), ``mean|w|`` (the weighted-degree baseline), ``ill-formed`` (samples with an
    ill-formed spectrum; ``raw/rms`` with ``scale_control``) and the checkpoint's name, last, cut
    to its tail (``...``) where the line would be too long. Values have four decimals (``mean|w|``:
    four significant digits); the JSON and CSV outputs hold every column at full precision. A
    failed checkpoint shows ``nan``. ``plus_minus`` defaults to ``±`` where ``sys.stdout`` can
    encode it, else ``+-``.

    Example:
        >>> recs = [{"step": s, "path": f"ckpt/step_{s}", "alpha0": a, "alpha0_std": 0.01, "width": 0.6,
        ...          "width_std": 0.02, "emergence": e, "weighted_degree": 0.0151, "n_ill_formed": 0.0}
        ...         for s, a, e in [(0, 1.4, 0.0), (100, 1.25, 0.113329)]]
        >>> print(format_table(recs, scale_control=False, plus_minus="+-"))
        step     alpha0 +- std      width +- std       E  mean|w|  ill-formed  path
        ----  ----------------  ----------------  ------  -------  ----------  --------
           0  1.4000 +- 0.0100  0.6000 +- 0.0200  0.0000   0.0151           0  step_0
         100  1.2500 +- 0.0100  0.6000 +- 0.0200  0.1133   0.0151           0  step_100
    """
    pm = _pm() if plus_minus is None else plus_minus

    def mean_std(rec: Mapping[str, Any], mean: str) -> str:
        return f"{_fixed(rec.get(mean))} {pm} {_fixed(rec.get(mean + '_std'))}"

    def ill(rec: Mapping[str, Any]) -> str:
        raw = _count(rec.get("n_ill_formed"))
        return f"{raw}/{_count(rec.get('n_ill_formed_rms'))}" if scale_control else raw

    cols: list[tuple[str, Any]] = [
        ("step", lambda r: str(r["step"])),
        (f"alpha0 {pm} std", lambda r: mean_std(r, "alpha0")),
        (f"width {pm} std", lambda r: mean_std(r, "width")),
        ("E", lambda r: _fixed(r.get("emergence"))),
    ]
    if scale_control:
        cols += [("alpha0_rms", lambda r: _fixed(r.get("alpha0_rms"))), ("E_rms", lambda r: _fixed(r.get("emergence_rms")))]
    if any("emergence_null" in r for r in records):
        cols += [("E_null", lambda r: _fixed(r.get("emergence_null")))]
    cols += [("mean|w|", lambda r: _sig(r.get("weighted_degree"))), ("ill-formed", ill)]
    head = [h for h, _ in cols]
    rows = [[cell(rec) for _, cell in cols] for rec in records]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    room = max(_MIN_PATH_WIDTH, width - sum(widths) - 2 * len(widths))
    names = [n if len(n) <= room else "..." + n[-(room - 3) :] for n in _short_paths([str(r["path"]) for r in records])]
    path_width = max(len(n) for n in ["path", *names])

    def line(cells: Sequence[str]) -> str:
        return "  ".join([*(c.rjust(w) for c, w in zip(cells, widths)), cells[-1].ljust(path_width)]).rstrip()

    return "\n".join([
        line([*head, "path"]),
        line(["-" * w for w in [*widths, path_width]]),
        *(line([*r, n]) for r, n in zip(rows, names)),
    ])


# ------------------------------------------------------------------------------- by depth
DEPTH_COLUMNS = ("alpha0", "alpha0_std", "width", "width_std", "emergence", "alpha0_rms", "alpha0_rms_std",
                 "width_rms", "width_rms_std", "emergence_rms", "n_nodes", "n_ill_formed", "flag")


def depth_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per checkpoint and depth: ``step``, ``path``, ``depth``, ``name`` and the per-depth values.

    Example:
        >>> depth_rows([{"step": 0, "path": "a", "by_depth": [{"depth": 0, "name": "l.0", "alpha0": 1.4}]}])
        [{'step': 0, 'path': 'a', 'depth': 0, 'name': 'l.0', 'alpha0': 1.4}]
    """
    out = []
    for r in records:
        for row in r.get("by_depth") or []:
            out.append({"step": r["step"], "path": r.get("path", ""), "depth": row["depth"], "name": row["name"],
                        **{k: row[k] for k in DEPTH_COLUMNS if k in row}})
    return out


def format_depth_table(records: Sequence[Mapping[str, Any]], *, scale_control: bool = True, width: int = TABLE_WIDTH,
                       plus_minus: str | None = None) -> str:
    """Per checkpoint and depth: alpha0 and width (± std over samples), E against that depth's own baseline
    (the first checkpoint), the scale-controlled alpha0 and E, kept nodes per sample, and a flag where a
    depth had too few nodes for a spectrum. The depth's name is cut to fit ``width`` columns."""
    pm = _pm() if plus_minus is None else plus_minus
    rows = depth_rows(records)
    head = ["step", "depth", f"alpha0 {pm} std", f"width {pm} std", "E"]
    head += ["alpha0_rms", "E_rms"] if scale_control else []
    head += ["nodes"]
    cells = []
    for r in rows:
        c = [str(r["step"]), str(r["depth"]), f"{_fixed(r.get('alpha0'))} {pm} {_fixed(r.get('alpha0_std'))}",
             f"{_fixed(r.get('width'))} {pm} {_fixed(r.get('width_std'))}", _fixed(r.get("emergence"))]
        c += [_fixed(r.get("alpha0_rms")), _fixed(r.get("emergence_rms"))] if scale_control else []
        c += [f"{r.get('n_nodes', math.nan):.0f}"]
        cells.append(c)
    widths = [max(len(x[i]) for x in [head, *cells]) for i in range(len(head))]
    room = max(_MIN_PATH_WIDTH, width - sum(widths) - 2 * len(widths))
    names = [(r["name"] + (f" ({r['flag']})" if r.get("flag") else "")) for r in rows]
    names = [n if len(n) <= room else "..." + n[-(room - 3):] for n in names]
    name_width = max(len(n) for n in ["block", *names])

    def line(parts: Sequence[str], name: str) -> str:
        return "  ".join([*(p.rjust(w) for p, w in zip(parts, widths)), name.ljust(name_width)]).rstrip()

    return "\n".join([line(head, "block"), line(["-" * w for w in widths], "-" * name_width),
                      *(line(c, n) for c, n in zip(cells, names))])


def depth_path(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """``out.csv`` -> ``out_depth.csv``; ``out.png`` with ``suffix="_emergence"`` -> ``out_depth_emergence.png``."""
    p = Path(path)
    return p.with_name(f"{p.stem}_depth{suffix}{p.suffix}")


def write_depth_csv(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> Path:
    """Write :func:`depth_rows` to :func:`depth_path` of ``path``; returns that path."""
    out = depth_path(path)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "path", "depth", "name", *DEPTH_COLUMNS], restval="",
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(depth_rows(records))
    return out


def write_depth_plots(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """The alpha0 and E heatmaps by depth and checkpoint, next to ``path``; returns both paths."""
    from neuromfa_callback.plotting import plot_depth_heatmap

    out = [depth_path(path), depth_path(path, "_emergence")]
    plot_depth_heatmap(records, value="alpha0", path=out[0])
    plot_depth_heatmap(records, value="emergence", path=out[1])
    return out


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
def log_wandb(records: Sequence[Mapping[str, Any]], options: Mapping[str, Any], *, project: str) -> Path:
    """Log the series to a new W&B run, as the training callback would; returns the run's directory.

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
        return Path(run.dir).parent  # run.dir is the run directory's files/ folder
    finally:
        run.finish(exit_code=exit_code)
