"""The ``neuromfa`` console script: in-process through ``main([...])``, and as a new process from a plain shell.

Checkpoints are tiny models built from configs in temporary folders (no download). Analyses use
``--samples 2 --neurons-per-layer 16`` to stay fast; the options are passed identically to the
direct :func:`analyze_model` reference.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neuromfa_callback
from neuromfa_callback import __version__
from neuromfa_callback.analysis import analyze_model
from neuromfa_callback.checkpoints import load_model
from neuromfa_callback.cli import main

FAST = ["--samples", "2", "--neurons-per-layer", "16"]
ANALYSIS = {"samples": 2, "neurons_per_layer": 16}
RECORD_KEYS = {
    "step": int,
    "path": str,
    "alpha0": float,
    "alpha0_std": float,
    "width": float,
    "width_std": float,
    "emergence": float,
    "alpha0_rms": float,
    "alpha0_rms_std": float,
    "width_rms": float,
    "width_rms_std": float,
    "emergence_rms": float,
    "weighted_degree": float,
    "weighted_degree_rms": float,
    "n_ill_formed": float,
    "n_ill_formed_rms": float,
    "n_nodes": float,
    "q": list,
    "tau": list,
    "alpha": list,
    "f_alpha": list,
}


def run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("neuromfa: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def _perturb(model: torch.nn.Module, scale: float, noise: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(scale).add_(noise * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def hf_series(tmp_path_factory) -> list[Path]:
    """Three Hugging Face folders ``checkpoint-{0,100,200}``: an init, then two perturbations of it."""
    from tests._models import tiny_gpt_neox

    root = tmp_path_factory.mktemp("hf")
    model = tiny_gpt_neox(seed=0)
    paths = []
    for step, (scale, noise) in zip((0, 100, 200), ((1.0, 0.0), (1.4, 0.01), (1.3, 0.01))):
        _perturb(model, scale, noise, seed=step)
        model.save_pretrained(root / f"checkpoint-{step}")
        paths.append(root / f"checkpoint-{step}")
    return paths


@pytest.fixture(scope="module")
def analyzed(hf_series, tmp_path_factory) -> dict:
    """One full ``analyze`` run over ``hf_series`` with --json, --csv and --plot."""
    out = tmp_path_factory.mktemp("out")
    files = {"json": out / "series.json", "csv": out / "series.csv", "plot": out / "series.png"}
    code, stdout, stderr = run(["analyze", *hf_series, *FAST, "--quiet", *(f"--{k}={v}" for k, v in files.items())])
    return {"code": code, "stdout": stdout, "stderr": stderr, "files": files,
            "doc": json.loads(files["json"].read_text()) if files["json"].exists() else None}


def test_analyze_json_schema(analyzed, hf_series):
    """The JSON document holds one record per path with the callback's keys and types."""
    assert analyzed["code"] == 0, analyzed["stderr"]
    doc = analyzed["doc"]
    assert doc["version"] == 1
    assert doc["options"] | ANALYSIS == doc["options"]
    assert doc["options"]["scale_control"] is True
    recs = doc["checkpoints"]
    assert [r["step"] for r in recs] == [0, 100, 200]
    assert [r["path"] for r in recs] == [str(p) for p in hf_series]
    for rec in recs:
        for key, typ in RECORD_KEYS.items():
            assert isinstance(rec[key], typ), (key, rec[key])
        assert len(rec["q"]) == len(rec["tau"]) == 61
        assert len(rec["alpha"]) == len(rec["f_alpha"]) == 60
        assert "error" not in rec
    assert recs[0]["emergence"] == 0.0 and recs[0]["emergence_rms"] == 0.0


def test_analyze_emergence_equals_direct_analysis(analyzed, hf_series):
    """E and E_rms in the JSON equal ModelAnalysis.emergence with the same options, to 1e-12."""
    recs = analyzed["doc"]["checkpoints"]
    for scale, suffix in ((None, ""), ("rms", "_rms")):
        direct = [analyze_model(load_model(p), scale=scale, **ANALYSIS) for p in hf_series]
        for rec, a in zip(recs, direct):
            assert rec[f"alpha0{suffix}"] == pytest.approx(a.alpha0_mean, abs=1e-12)
            assert rec[f"width{suffix}"] == pytest.approx(a.width_mean, abs=1e-12)
            assert rec[f"emergence{suffix}"] == pytest.approx(a.emergence(direct[0]), abs=1e-12)
    assert recs[1]["emergence"] > 0.0  # the perturbations moved the spectrum (the test is not vacuous)


def test_analyze_table_and_csv(analyzed):
    """The table prints every step, the values to four decimals and the path last; the CSV has the scalar columns."""
    lines = analyzed["stdout"].replace("+-", "±").strip().splitlines()  # "+-" where stdout cannot encode "±"
    assert lines[0].split() == ["step", "alpha0", "±", "std", "width", "±", "std", "E", "alpha0_rms", "E_rms",
                                "mean|w|", "ill-formed", "path"]
    rows = lines[2:]
    recs = analyzed["doc"]["checkpoints"]
    assert [int(r.split()[0]) for r in rows] == [0, 100, 200]
    for row, rec in zip(rows, recs):
        cells = row.split()
        assert cells[-1] == Path(rec["path"]).name
        assert cells[1:4] == [f"{rec['alpha0']:.4f}", "±", f"{rec['alpha0_std']:.4f}"]
        assert cells[4:7] == [f"{rec['width']:.4f}", "±", f"{rec['width_std']:.4f}"]
        assert cells[7:10] == [f"{rec['emergence']:.4f}", f"{rec['alpha0_rms']:.4f}", f"{rec['emergence_rms']:.4f}"]
        assert cells[10:12] == [f"{rec['weighted_degree']:.4g}", f"{rec['n_ill_formed']:.0f}/{rec['n_ill_formed_rms']:.0f}"]
    with open(analyzed["files"]["csv"], newline="") as fh:
        reader = csv.DictReader(fh)
        table = list(reader)
    assert reader.fieldnames[:2] == ["step", "path"]
    scalars = {"alpha0", "width", "emergence", "emergence_rms", "weighted_degree", "n_ill_formed", "n_nodes"}
    assert scalars <= set(reader.fieldnames)
    assert "q" not in reader.fieldnames
    assert [float(r["emergence"]) for r in table] == [r["emergence"] for r in recs]


def test_analyze_plot_writes_pngs(analyzed):
    """--plot FILE writes FILE (alpha0/width/E) and FILE_spectra (f(alpha)) as non-empty PNGs."""
    for path in (analyzed["files"]["plot"], analyzed["files"]["plot"].with_name("series_spectra.png")):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_safetensors_with_config_steps_and_no_scale_control(tmp_path, hf_series):
    """Bare .safetensors + --config; names without a step fall back to indices; --steps overrides."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_bytes((hf_series[0] / "config.json").read_bytes())
    files = []
    for name, src in (("init", hf_series[0]), ("final", hf_series[2])):
        (tmp_path / f"{name}.safetensors").write_bytes((src / "model.safetensors").read_bytes())
        files.append(tmp_path / f"{name}.safetensors")
    out = tmp_path / "o.json"
    code, stdout, err = run(["analyze", *files, "--config", cfg, *FAST, "--no-scale-control", "--json", out])
    assert code == 0, err
    recs = json.loads(out.read_text())["checkpoints"]
    assert [r["step"] for r in recs] == [0, 1]
    assert not any("_rms" in k for k in recs[0])
    assert "E_rms" not in stdout
    code, _, err = run(["analyze", *files, "--config", cfg, *FAST, "--no-scale-control", "--steps", "10,20", "--json", out])
    assert code == 0, err
    assert [r["step"] for r in json.loads(out.read_text())["checkpoints"]] == [10, 20]


def test_lightning_ckpt(tmp_path):
    """A real Lightning checkpoint loads with --model-class; its step comes from the file name."""
    import lightning.pytorch as pl

    from tests._models import TinyLM

    lm = TinyLM(n_batches=1)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(lm)
    ckpt = tmp_path / "epoch=0-step=1.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "o.json"
    code, stdout, err = run(["analyze", ckpt, "--model-class", "tests._models:TinyLM", *FAST, "--json", out])
    assert code == 0, err
    (rec,) = json.loads(out.read_text())["checkpoints"]
    assert rec["step"] == 1 and rec["emergence"] == 0.0
    assert rec["alpha0"] == pytest.approx(analyze_model(lm.model, **ANALYSIS).alpha0_mean, abs=1e-12)


def test_describe_lists_node_sets_and_skipped(hf_series, capsys):
    """describe prints the node sets (with depths and sizes), the coverage, and the skipped parameters with reasons."""
    assert main(["describe", str(hf_series[0])]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.startswith("GPTNeoXForCausalLM: 8 node sets in 2 depths (gpt_neox sampling")
    assert out.splitlines()[1].startswith("the network uses 100.0% of")
    qkv = next(line for line in out.splitlines() if "gpt_neox.layers.0.attention.query_key_value.weight" in line)
    assert qkv.split()[:2] == ["0", "gpt_neox.layers.0"] and qkv.split()[-2:] == ["64", "192"]
    skipped = {line.split()[0]: line for line in out.split("skipped parameters")[1].splitlines()[2:]}
    assert skipped["gpt_neox.embed_in.weight"].endswith("embedding")
    assert skipped["gpt_neox.layers.0.attention.dense.bias"].endswith("bias")
    assert skipped["lm_head.weight"].endswith("unembedding (output embedding)")
    assert max(len(line) for line in out.splitlines()) <= 120


def test_bad_path_is_one_line(tmp_path, hf_series, capsys):
    """A missing path: exit 1, one line naming it, nothing analysed."""
    missing = tmp_path / "no_such_checkpoint"
    assert main(["analyze", str(hf_series[0]), str(missing)]) == 1
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, str(missing), "no such file")
    assert captured.out == ""
    assert main(["describe", str(missing)]) == 1
    assert_one_error_line(capsys.readouterr().err, str(missing))


@pytest.fixture
def conv_ckpt(tmp_path) -> tuple[Path, list[str]]:
    conv = torch.nn.Conv2d(16, 32, 3)
    path = tmp_path / "conv.ckpt"
    hparams = {"in_channels": 16, "out_channels": 32, "kernel_size": 3}
    torch.save({"state_dict": conv.state_dict(), "hyper_parameters": hparams}, path)
    return path, ["--model-class", "torch.nn:Conv2d", "--threshold", "1000"]


@pytest.fixture
def t5_folder(tmp_path) -> tuple[Path, list[str]]:
    import transformers

    cfg = transformers.T5Config(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=32)
    transformers.T5Model(cfg).save_pretrained(tmp_path / "t5")
    return tmp_path / "t5", []


@pytest.fixture
def embedding_ckpt(tmp_path) -> tuple[Path, list[str]]:
    emb = torch.nn.Embedding(10, 4)
    path = tmp_path / "emb.ckpt"
    torch.save({"state_dict": emb.state_dict(), "hyper_parameters": {"num_embeddings": 10, "embedding_dim": 4}}, path)
    return path, ["--model-class", "torch.nn:Embedding"]


@pytest.mark.parametrize("case", ["conv_ckpt", "t5_folder"])
def test_models_beyond_the_old_families_are_analysed(case, request, capsys):
    """A bare convolution and an encoder-decoder (both refused before the general path): exit 0, finite values."""
    path, extra = request.getfixturevalue(case)
    capsys.readouterr()
    assert main(["analyze", str(path), *extra, "--samples", "2", "--quiet"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[0] == "0" and math.isfinite(float(row[1]))
    assert main(["describe", str(path), *extra[:2]]) == 0
    assert "node sets" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("command", ["analyze", "describe"])
def test_model_without_weight_operator(embedding_ckpt, command, capsys):
    """Nothing to analyse (an embedding alone): exit 1 and one line saying so, with the remedy."""
    path, extra = embedding_ckpt
    assert main([command, str(path), *extra]) == 1
    assert_one_error_line(capsys.readouterr().err, str(path), "has no weight operator", "module=")


class _Payload:
    """Unpickling this would create ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("command", ["analyze", "describe"])
def test_malicious_pickle_refused(tmp_path, capsys, command):
    """A .ckpt whose pickle would run code is refused (exit 1, one line) and nothing in it runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": _Payload(marker)}, path)
    assert not marker.exists()
    assert main([command, str(path), "--model-class", "tests._models:TinyLM"]) == 1
    assert_one_error_line(capsys.readouterr().err, str(path), "refused")
    assert not marker.exists()


def test_diverged_checkpoint_gives_nan(tmp_path, hf_series, capsys):
    """A later checkpoint with NaN weights: NaN values and E, an error in its record, a warning; a NaN baseline: exit 1."""
    from tests._models import tiny_gpt_neox

    bad = tiny_gpt_neox()
    with torch.no_grad():
        bad.gpt_neox.layers[0].mlp.dense_h_to_4h.weight[3, 5] = float("nan")
    bad.save_pretrained(tmp_path / "checkpoint-300")
    capsys.readouterr()
    out = tmp_path / "o.json"
    assert main(["analyze", str(hf_series[0]), str(tmp_path / "checkpoint-300"), *FAST, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "neuromfa: warning:" in captured.err and "checkpoint-300" in captured.err
    rec = json.loads(out.read_text())["checkpoints"][1]
    assert rec["step"] == 300 and "finite" in rec["error"]
    assert math.isnan(rec["alpha0"]) and math.isnan(rec["emergence"]) and math.isnan(rec["emergence_rms"])
    assert "nan" in captured.out.splitlines()[-1]
    assert main(["analyze", str(tmp_path / "checkpoint-300"), str(hf_series[0]), *FAST]) == 1
    assert_one_error_line(capsys.readouterr().err, "baseline")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["analyze", "X", "--samples", "0"], "--samples"),
        (["analyze", "X", "--threshold", "0.5"], "--threshold"),
        (["analyze", "X", "--neurons-per-layer", "many"], "--neurons-per-layer"),
        (["analyze", "X", "--backend", "fortran"], "--backend"),
        (["analyze", "X", "Y", "--steps", "0"], "--steps"),
        (["analyze", "X", "--steps", "a"], "--steps"),
        (["analyze", "X", "--plot", "out.txt"], "--plot"),
        (["analyze", "X", "--bogus"], "--bogus"),
        (["analyze"], "PATH"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2(argv, needle, capsys):
    """Bad options: exit 2 and one line naming the option (before any file is read)."""
    assert main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, needle)


def test_unwritable_output_is_input_error(hf_series, tmp_path, capsys):
    """--json into a missing folder fails before the analysis starts."""
    target = tmp_path / "missing" / "o.json"
    assert main(["analyze", str(hf_series[0]), "--json", str(target)]) == 1
    assert_one_error_line(capsys.readouterr().err, "--json", "does not exist")


def test_version_help_and_interrupt(monkeypatch, capsys):
    """--version and --help exit 0; Ctrl-C exits 130 without a traceback."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"neuromfa {__version__}"
    assert main(["analyze", "--help"]) == 0
    assert "--no-scale-control" in capsys.readouterr().out

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("neuromfa_callback.cli._cmd_describe", interrupted)
    assert main(["describe", "anything"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_wandb_offline(hf_series, tmp_path, monkeypatch, capsys):
    """--wandb logs E at each checkpoint's step (trainer/global_step) and the figures to an offline run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "o.json"
    assert main(["analyze", *map(str, hf_series[:2]), *FAST, "--wandb", "--json", str(out)]) == 0, capsys.readouterr().err
    recs = json.loads(out.read_text())["checkpoints"]
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    try:
        from tests.helpers.wandb_reader import images, read_records, scalars, wait_for_run_file
    except ImportError:  # the reader lands separately; the run directory is checked above
        return
    records = read_records(wait_for_run_file(tmp_path))  # wandb 0.31 finishes writing after finish() returns
    for key in ("emergence", "emergence_rms", "alpha0", "width"):
        logged = scalars(records, f"neuromfa/{key}", step_key="trainer/global_step")
        assert logged == [(r["step"], pytest.approx(r[key], abs=1e-12)) for r in recs]
    assert {"neuromfa/evolution", "neuromfa/spectra"} <= set(images(records))


def test_console_script_help():
    """The installed ``neuromfa`` script (or ``python -m neuromfa_callback``) runs and prints the usage."""
    script = Path(sys.executable).with_name("neuromfa")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "neuromfa_callback"]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: neuromfa") and "analyze" in proc.stdout and "describe" in proc.stdout


# ------------------------------------------------------------------ the command in a fresh process
PACKAGE_ROOT = Path(neuromfa_callback.__file__).resolve().parents[1]


def run_cli(args: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m neuromfa_callback.cli ARGS`` in a new process with a plain shell's environment.

    Only PATH, HOME and the locale are inherited (no DISPLAY, no MPLBACKEND, no WANDB_* of the
    caller) and nothing pytest imported leaks in; PYTHONPATH points at the package under test.
    """
    plain = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}
    plain.update(PYTHONPATH=str(PACKAGE_ROOT), HF_HUB_OFFLINE="1", **env)
    cmd = [sys.executable, "-m", "neuromfa_callback.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=plain, capture_output=True, text=True, timeout=600)


LONG_STEPS = [0, 100, 200, 5_000, 20_000, 143_000, 1_000_000, 1_234_567, 2_000_000, 9_999_999, 10_000_000, 12_345_678]


@pytest.fixture(scope="module")
def shell_run(hf_series, tmp_path_factory) -> dict:
    """One ``neuromfa analyze`` of 12 checkpoints with long paths and every output, from a plain shell.

    The 12 are links to the three ``hf_series`` folders, under a 70-character folder name and
    60-character names with up to eight-digit steps, the worst case for the table's width.
    """
    root = tmp_path_factory.mktemp("shell")
    deep = root / ("experiments_" + "long_descriptive_folder_name_" * 2) / "pythia_tiny_lr3e-4_warmup100_seed0"
    deep.mkdir(parents=True)
    paths = []
    for i, step in enumerate(LONG_STEPS):
        link = deep / f"run_with_a_rather_long_and_descriptive_name_checkpoint-{step}"
        link.symlink_to(hf_series[i % 3], target_is_directory=True)
        paths.append(link)
    out = root / "out"
    out.mkdir()
    files = {"json": out / "series.json", "csv": out / "series.csv", "plot": out / "series.png"}
    proc = run_cli(["analyze", *paths, *FAST, *(f"--{k}={v}" for k, v in files.items()), "--wandb"], cwd=root,
                   WANDB_MODE="offline", WANDB_DIR=str(root), WANDB_SILENT="true")
    doc = json.loads(files["json"].read_text()) if files["json"].exists() else None
    return {"proc": proc, "paths": paths, "files": files, "root": root, "doc": doc}


def test_shell_wandb_run(shell_run):
    """--wandb from a plain shell (no pyplot imported beforehand): exit 0, and the run holds E at every step."""
    proc = shell_run["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "pyplot" not in proc.stderr
    (run_dir,) = (shell_run["root"] / "wandb").glob("offline-run-*")
    from tests.helpers.wandb_reader import images, read_records, scalars, wait_for_run_file

    records = read_records(wait_for_run_file(shell_run["root"]))
    recs = shell_run["doc"]["checkpoints"]
    assert scalars(records, "neuromfa/emergence", step_key="trainer/global_step") == [
        (r["step"], pytest.approx(r["emergence"], abs=1e-12)) for r in recs
    ]
    assert {"neuromfa/evolution", "neuromfa/spectra"} <= set(images(records))


def test_shell_lists_every_file_written(shell_run):
    """The last lines on stderr name every file written: JSON, CSV, both figures and the W&B run directory."""
    proc = shell_run["proc"]
    assert proc.returncode == 0, proc.stderr
    files = shell_run["files"]
    (run_dir,) = (shell_run["root"] / "wandb").glob("offline-run-*")
    expected = [files["json"], files["csv"], files["plot"], files["plot"].with_name("series_spectra.png"), run_dir]
    tail = proc.stderr.strip().splitlines()[-len(expected):]
    assert [line.split(" ", 2)[:2] for line in tail] == [["neuromfa:", "wrote"]] * len(expected), proc.stderr
    listed = [Path(line.split(" ", 2)[2].split(" (")[0]) for line in tail]
    assert [p.resolve() for p in listed] == [p.resolve() for p in expected]
    assert all(p.exists() for p in listed)
    assert "wandb sync" in tail[-1]  # how to upload the offline run
    assert "neuromfa: wrote" not in proc.stdout  # stdout holds the table only


def test_shell_table_fits_120_columns(shell_run):
    """12 checkpoints, long paths, 8-digit steps: every line of the table fits 120 columns and the values are right."""
    proc = shell_run["proc"]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.rstrip("\n").splitlines()
    assert len(lines) == 2 + len(LONG_STEPS)
    assert max(len(line) for line in lines) <= 120, "\n" + proc.stdout
    recs = shell_run["doc"]["checkpoints"]
    for line, rec, path in zip(lines[2:], recs, shell_run["paths"]):
        cells = line.split()
        assert int(cells[0]) == rec["step"]
        assert cells[1] == f"{rec['alpha0']:.4f}" and cells[7] == f"{rec['emergence']:.4f}"
        assert cells[-1].startswith("...") and path.name.endswith(cells[-1][3:])  # the tail, with the step


def test_format_table_width_worst_case():
    """Negative E, NaN (a failed checkpoint), large values and 200-character paths still fit 120 columns."""
    from neuromfa_callback._cli_report import format_table

    long = "/data/" + "x" * 150 + "/checkpoint-{}"
    recs = [{"step": s, "path": long.format(s), "alpha0": a, "alpha0_std": 0.0123, "width": 0.6543,
             "width_std": 0.0456, "emergence": e, "alpha0_rms": 1.4162, "alpha0_rms_std": 0.01, "width_rms": 0.7,
             "width_rms_std": 0.02, "emergence_rms": -0.0195, "weighted_degree": 0.03515, "weighted_degree_rms": 0.02,
             "n_ill_formed": n, "n_ill_formed_rms": 0.0}
            for s, a, e, n in [(0, 1.4407, 0.0, 0.0), (99_999_999, 12.25, -10.5, 10.0), (100_000_000, None, None, None)]]
    for scale_control in (True, False):
        text = format_table(recs, scale_control=scale_control)
        assert max(map(len, text.splitlines())) <= 120, "\n" + text
        last = text.splitlines()[-1].split()
        assert last[0] == "100000000" and last[1] == "nan" and last[-1].endswith("checkpoint-100000000")
    assert "-10.5000" in text


def test_by_depth_prints_writes_and_plots(hf_series, tmp_path):
    """--by-depth: a row per checkpoint and depth (E against the depth's own first value), FILE_depth.csv with
    the same values as the JSON's by_depth, and the two depth heatmaps; every file listed."""
    out = {"json": tmp_path / "s.json", "csv": tmp_path / "s.csv", "plot": tmp_path / "s.png"}
    code, stdout, stderr = run(["analyze", *hf_series, *FAST, "--by-depth", *(f"--{k}={v}" for k, v in out.items())])
    assert code == 0, stderr
    depth_table = stdout.split("\n\n")[1].splitlines()
    assert depth_table[0].split()[:2] == ["step", "depth"] and len(depth_table) == 2 + 3 * 2  # 3 checkpoints x 2 blocks
    assert depth_table[2].split()[-1] == "gpt_neox.layers.0" and depth_table[2].split()[8] == "0.0000"  # E at the baseline
    doc = json.loads(out["json"].read_text())
    rows = list(csv.DictReader(open(tmp_path / "s_depth.csv")))
    assert [(int(r["step"]), r["name"]) for r in rows] == [(s, f"gpt_neox.layers.{d}") for s in (0, 100, 200) for d in (0, 1)]
    for r in rows:
        rec = next(c for c in doc["checkpoints"] if c["step"] == int(r["step"]))
        row = next(d for d in rec["by_depth"] if d["name"] == r["name"])
        assert float(r["alpha0"]) == row["alpha0"] and float(r["emergence"]) == row["emergence"]
    for name in ("s_depth.csv", "s_depth.png", "s_depth_emergence.png"):
        assert (tmp_path / name).stat().st_size > 0 and f"wrote {tmp_path / name}" in stderr
