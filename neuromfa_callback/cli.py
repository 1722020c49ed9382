r"""The ``neuromfa`` console script: NeuroMFA of saved checkpoints, without a training loop.

``neuromfa analyze PATH [PATH ...]`` analyses a series of checkpoints in the given order, the first
being the baseline of the degree of emergence E (NEUROMFA.md section 3), and prints a table; the
same records the training callback writes can go to ``--json``, ``--csv``, ``--plot`` and
``--wandb``. ``neuromfa describe PATH`` lists which weight matrices the analysis would use and why
the others are skipped.

Every checkpoint is read without running code from it (safetensors, or
``torch.load(weights_only=True)``; see :mod:`neuromfa_callback.checkpoints`).

Exit codes: 0 success; 1 an input error (missing or unreadable path, unsafe pickle, unsupported
architecture, analysis of the baseline failing); 2 a usage error (bad option); 130 interrupted.
Errors are one line on stderr, ``neuromfa: error: ...``, never a traceback.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    neuromfa ...
    0
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from neuromfa_callback import __version__
from neuromfa_callback._checks import check_int, check_real
from neuromfa_callback.functional.spectrum import BACKENDS

__all__ = ["InputError", "UsageError", "analyze_checkpoints", "build_parser", "default_steps", "main", "step_from_path"]

PROG = "neuromfa"
_STEP_RE = re.compile(r"(?:step[=_-]?|checkpoint-)(\d+)", re.IGNORECASE)


class UsageError(Exception):
    """A bad command line (exit code 2)."""


class InputError(Exception):
    """An input that cannot be analysed: path, file, architecture (exit code 1)."""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are raised (and printed by :func:`main` as one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ----------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neuromfa`` command (subcommands ``analyze`` and ``describe``)."""
    parser = _Parser(
        prog=PROG,
        description="Neuron-based multifractal analysis (NeuroMFA) of saved model checkpoints.",
        epilog="Checkpoints are read safely (safetensors or torch.load(weights_only=True)); nothing in them runs.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    loading = _Parser(add_help=False)
    grp = loading.add_argument_group("loading")
    grp.add_argument("--model-class", metavar="MODULE:CLASS",
                     help="LightningModule (or nn.Module) class for .ckpt files, e.g. mypkg.models:LitLM; "
                          "built as Class(**hyper_parameters) from the checkpoint")
    grp.add_argument("--config", metavar="PATH",
                     help="config.json (or its folder) for bare .safetensors files; default: the file's folder")
    grp.add_argument("--architecture", choices=("auto", "generic", "gpt_neox"), default="auto",
                     help="auto (default): the reference's exact sampling for GPT-NeoX, the general one otherwise")
    grp.add_argument("--module", metavar="PATH", help="analyse only this submodule (a dotted attribute path, e.g. encoder)")

    an = sub.add_parser(
        "analyze",
        parents=[loading],
        help="analyse a series of checkpoints (the first is the baseline of E)",
        description="Analyse checkpoints in the given order; the first is the baseline (E = 0). "
                    "PATH: a Hugging Face model folder, a .safetensors file, or a Lightning .ckpt.",
        epilog="--plot out.png writes the alpha0/width/E panels to out.png and the f(alpha) spectra to "
               "out_spectra.png. --wandb logs to project --wandb-project, offline unless W&B is configured "
               "(WANDB_MODE, WANDB_API_KEY or `wandb login`); the run goes under WANDB_DIR. JSON NaN marks a failed checkpoint. "
               "Every file written is listed on stderr at the end (not with --quiet).",
    )
    an.add_argument("paths", nargs="+", metavar="PATH", help="checkpoints, oldest first")
    opts = an.add_argument_group("analysis (as NeuroMFACallback)")
    opts.add_argument("--samples", type=int, default=10, metavar="N",
                      help="sampled networks per checkpoint (default: 10)")
    opts.add_argument("--neurons-per-layer", type=int, default=32, metavar="N",
                      help="neurons sampled per layer (default: 32)")
    opts.add_argument("--full", action="store_true", help="analyse every neuron (no sampling)")
    opts.add_argument("--backend", choices=BACKENDS, default="auto", help="partition-sum backend (default: auto)")
    opts.add_argument("--threshold", type=float, default=150.0, metavar="T",
                      help="keep distances 1 < 1/|w| <= T (default: 150)")
    opts.add_argument("--decimals", type=int, default=0, metavar="D",
                      help="round distances to this many decimals (default: 0)")
    opts.add_argument("--min-neighbours", type=int, default=10, metavar="K",
                      help="a node needs more than K kept distances (default: 10)")
    opts.add_argument("--null", type=int, default=0, metavar="N",
                      help="N permutation nulls per sample (E_null: structure beyond the weight distribution; default 0)")
    opts.add_argument("--no-scale-control", dest="scale_control", action="store_false",
                      help="skip the scale-controlled analysis (each matrix rescaled to RMS 0.02)")
    opts.add_argument("--steps", metavar="S0,S1,...",
                      help="step labels, one per PATH; default: step=N, step_N or checkpoint-N in each path name "
                           "(if every path has one), else 0, 1, 2, ...")
    out = an.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help='write {"version": 1, "options": ..., "checkpoints": [...]}')
    out.add_argument("--csv", metavar="FILE", help="write the scalar columns")
    out.add_argument("--plot", metavar="FILE", help="save the alpha0/width/E figure (and FILE_spectra for f(alpha))")
    out.add_argument("--by-depth", action="store_true",
                     help="also print one row per depth (block) and write FILE_depth.csv / FILE_depth*.png next to "
                          "--csv / --plot (the JSON holds the depths always)")
    out.add_argument("--wandb", action="store_true", help="log the series to a W&B run")
    out.add_argument("--wandb-project", default="neuromfa", metavar="NAME", help="W&B project (default: neuromfa)")
    out.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar, no notes on stderr (errors and warnings remain)")

    sub.add_parser(
        "describe",
        parents=[loading],
        help="list the weight matrices the analysis uses, and why others are skipped",
        description="Load one checkpoint and list every parameter: network matrix or not, and why.",
    ).add_argument("path", metavar="PATH", help="a model folder, .safetensors file or .ckpt")
    return parser


def _validate(args: argparse.Namespace) -> None:
    """Check option values (messages name the option); raises :class:`UsageError`."""
    checks = [
        ("--samples", lambda: check_int("samples", args.samples, minimum=1)),
        ("--neurons-per-layer", lambda: check_int("neurons_per_layer", args.neurons_per_layer, minimum=1)),
        ("--threshold", lambda: check_real("threshold", args.threshold, greater_than=1)),
        ("--decimals", lambda: check_int("decimals", args.decimals, minimum=0)),
        ("--min-neighbours", lambda: check_int("min_neighbours", args.min_neighbours, minimum=0)),
        ("--null", lambda: check_int("null", args.null, minimum=0)),
    ]
    for option, check in checks:
        try:
            check()
        except (TypeError, ValueError) as err:
            raise UsageError(f"{option}: {err}") from err
    if args.steps is not None:
        args.steps = _parse_steps(args.steps, len(args.paths))
    if args.plot is not None:
        from neuromfa_callback._cli_report import check_plot_suffix

        try:
            check_plot_suffix(args.plot)
        except ValueError as err:
            raise UsageError(f"--plot: {err}") from err


def _parse_steps(text: str, n_paths: int) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",")]
    except ValueError as err:
        raise UsageError(f"--steps: expected comma-separated integers, got {text!r}") from err
    if len(steps) != n_paths:
        raise UsageError(f"--steps: expected {n_paths} labels (one per PATH), got {len(steps)} in {text!r}")
    return steps


def step_from_path(path: str | Path) -> int | None:
    """The training step named in a checkpoint path (its name, else its folder's name), or ``None``.

    Recognises ``step=N`` (Lightning), ``step_N``, ``stepN`` (Pythia revisions) and ``checkpoint-N``
    (Hugging Face ``Trainer``); the last match in the name wins.

    Example:
        >>> step_from_path("logs/epoch=0-step=300.ckpt"), step_from_path("out/checkpoint-1500")
        (300, 1500)
        >>> step_from_path("pythia/step_2000/model.safetensors"), step_from_path("final.safetensors")
        (2000, None)
    """
    p = Path(path)
    for part in (p.name, p.parent.name):
        found = _STEP_RE.findall(part)
        if found:
            return int(found[-1])
    return None


def default_steps(paths: Sequence[str]) -> list[int]:
    """Steps parsed from every path, or ``0..n-1`` when any path names none (never a mixture).

    Example:
        >>> default_steps(["a/checkpoint-10", "a/checkpoint-20"]), default_steps(["a/checkpoint-10", "b/final"])
        ([10, 20], [0, 1])
    """
    parsed = [step_from_path(p) for p in paths]
    return parsed if all(s is not None for s in parsed) else list(range(len(paths)))


# --------------------------------------------------------------------------------- analysis
def _load(path: str, model_class: str | None, config: str | None, options: dict[str, Any] | None = None) -> Any:
    """Load one checkpoint and find its node sets; every failure becomes an :class:`InputError` naming ``path``.

    Returns the :class:`~neuromfa_callback.architectures.Layout` (its ``model`` is the loaded model).
    """
    from neuromfa_callback.architectures import resolve
    from neuromfa_callback.checkpoints import CheckpointError, load_model

    options = options or {}
    try:
        model = load_model(path, model_class=model_class, config=config)
    except CheckpointError as err:
        msg = str(err)
        raise InputError(msg if path in msg else f"{path}: {msg}") from err
    try:
        return resolve(model, options.get("architecture", "auto"), module=options.get("module"))
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: {err}") from err


def analyze_checkpoints(
    paths: Sequence[str],
    steps: Sequence[int],
    *,
    options: dict[str, Any],
    model_class: str | None = None,
    config: str | None = None,
    scale_control: bool = True,
    progress: bool = False,
    warn: Any = None,
) -> list[dict[str, Any]]:
    """Analyse checkpoints in order; one record per path, with E relative to the first.

    Records have the keys of the training callback's history records (``step``, ``alpha0``, ...,
    ``emergence``, the ``*_rms`` twins when ``scale_control``, ``n_nodes``, ``q``, ``tau``,
    ``alpha``, ``f_alpha``) plus ``path`` and ``backend``. A later checkpoint whose analysis fails
    with a ``ValueError`` (non-finite weights, no node qualifies) gets NaN scalars and an
    ``"error"``; E uses :func:`~neuromfa_callback.history.safe_emergence`.

    Args:
        paths: checkpoint paths, oldest first.
        steps: one step label per path.
        options: keyword arguments of :func:`~neuromfa_callback.analyze_model` (without ``scale``).
        model_class: for ``.ckpt``, ``"module:Class"``.
        config: for bare ``.safetensors``, a ``config.json`` (or folder).
        scale_control: also analyse with ``scale="rms"``.
        progress: show a tqdm bar on stderr.
        warn: callable taking one line, told about each failed (NaN) checkpoint.

    Raises:
        InputError: a path cannot be loaded, its architecture is unsupported, or the baseline's
            analysis fails.
    """
    from tqdm import tqdm

    from neuromfa_callback.analysis import analyze_model
    from neuromfa_callback.history import baseline_of, make_record

    records: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    bar = tqdm(total=len(paths), desc=PROG, unit="ckpt", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for path, step in zip(paths, steps):
            bar.set_postfix_str(Path(path).name, refresh=True)
            layout = _load(path, model_class, config, options)
            try:
                raw = analyze_model(layout, **options)
            except ValueError as err:
                if baseline is None:
                    raise InputError(f"{path}: analysis of the baseline (first checkpoint) failed: {err}") from err
                if warn is not None:
                    warn(f"{path}: analysis failed, its values are NaN: {err}")
                raw = None
                rec = make_record(step, None, scale_control=scale_control, baseline=baseline, error=str(err))
            else:
                rms = None
                if scale_control:
                    try:
                        rms = analyze_model(layout, **{**options, "scale": "rms", "null": 0})
                    except ValueError as err:  # the same rule as the callbacks: raw values kept, *_rms NaN
                        if warn is not None:
                            warn(f"{path}: scale-controlled analysis failed, its *_rms values are NaN: {err}")
                rec = make_record(step, raw, rms, scale_control=scale_control, baseline=baseline)
            backend = raw.params["backend"] if raw is not None else None
            if baseline is None:
                baseline = baseline_of(rec)
            records.append({"step": rec.pop("step"), "path": str(path), **rec, "backend": backend})
            del layout
            bar.update(1)
    finally:
        bar.close()
    return records


# ------------------------------------------------------------------------------------- main
def _warn(line: str) -> None:
    print(f"{PROG}: warning: {line}", file=sys.stderr)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from neuromfa_callback import _cli_report as report

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or directory")
    for option in ("json", "csv", "plot"):
        report.check_writable(f"--{option}", getattr(args, option))
    if args.backend == "cupy":  # fail before loading anything, with the install hint
        from neuromfa_callback.backends.cupy_backend import require_cupy

        try:
            require_cupy()
        except (ImportError, RuntimeError) as err:
            raise InputError(f"--backend cupy: {err}") from err
    steps = args.steps if args.steps is not None else default_steps(args.paths)
    options = {
        "samples": args.samples,
        "neurons_per_layer": args.neurons_per_layer,
        "full": args.full,
        "backend": args.backend,
        "threshold": args.threshold,
        "decimals": args.decimals,
        "min_neighbours": args.min_neighbours,
        "null": args.null,
        "architecture": args.architecture,
        "module": args.module,
    }
    progress = not args.quiet and sys.stderr.isatty()
    records = analyze_checkpoints(
        args.paths, steps, options=options, model_class=args.model_class, config=args.config,
        scale_control=args.scale_control, progress=progress, warn=_warn,
    )
    meta = {**options, "scale_control": args.scale_control, "scale_rms": 0.02,
            "model_class": args.model_class, "config": args.config}
    print(report.format_table(records, scale_control=args.scale_control))
    written: list[str] = []  # listed on stderr at the end, one line each
    if args.json:
        report.write_json(args.json, records, meta)
        written.append(args.json)
    if args.csv:
        report.write_csv(args.csv, records)
        written.append(args.csv)
    if args.plot:
        written += map(str, report.write_plots(args.plot, records))
    if args.by_depth:
        print()
        print(report.format_depth_table(records, scale_control=args.scale_control))
        if args.csv:
            written.append(str(report.write_depth_csv(args.csv, records)))
        if args.plot:
            written += map(str, report.write_depth_plots(args.plot, records))
    if args.wandb:
        from neuromfa_callback._wandb import wandb_mode

        run_dir = report.log_wandb(records, meta, project=args.wandb_project)
        offline = f"; offline: upload it with `wandb sync {run_dir}`" if wandb_mode() == "offline" else ""
        written.append(f"{run_dir} (the W&B run{offline})")
    if not args.quiet:
        for item in written:
            print(f"{PROG}: wrote {item}", file=sys.stderr)
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from neuromfa_callback.describe import describe

    if not Path(args.path).exists():
        raise InputError(f"{args.path}: no such file or directory")
    print(describe(_load(args.path, args.model_class, args.config, {"architecture": args.architecture, "module": args.module})))
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``neuromfa`` command; returns the exit code (never raises, but for bugs).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on an input error, 2 on a usage error, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "analyze":
            _validate(args)
            return _cmd_analyze(args)
        return _cmd_describe(args)
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `neuromfa analyze ... | head`: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (InputError, ValueError, TypeError, OSError, ImportError) as err:  # CheckpointError is a ValueError
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
