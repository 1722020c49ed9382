"""Nothing the package logs or writes contains credentials (issue 7).

Sentinel credentials are put in the environment (``WANDB_API_KEY`` as 40 random hex characters,
``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY`` and a made-up ``MY_SECRET``), then a short training run
logs to a real ``WandbLogger(offline=True)``, a ``CSVLogger`` and a history file, and the
``neuromfa analyze`` CLI writes ``--json``, ``--csv`` and a ``--wandb`` run of two saved
checkpoints. Every file under ``tmp_path`` is then read as bytes and searched for every sentinel
(whole, and either half of it); so are the captured stdout/stderr and log records.

W&B's own files are scanned too, with no exclusion: with wandb 0.31 in offline mode the run's
system metadata (``wandb-metadata.json`` content: host, program, arguments, ...) is a record inside
``run-*.wandb``, which is scanned, and it holds no environment values. wandb's cache, config and
data folders are pointed into ``tmp_path`` so that whatever it writes there is scanned as well.

``WANDB_MODE=offline`` is set because the CLI goes online when ``WANDB_API_KEY`` is set (its
documented behaviour); nothing here may reach the network.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from pathlib import Path

import lightning.pytorch as pl
import torch

from neuromfa_callback import NeuroMFACallback
from neuromfa_callback.cli import main
from neuromfa_callback.history import SCALAR_KEYS, load_history
from tests._models import TinyLM, tiny_gpt_neox

#: The documented record keys (neuromfa_callback.history): the scalars of SCALAR_KEYS ...
NULL_SCALARS = {
    "alpha0_null", "alpha0_null_std", "width_null", "width_null_std", "emergence_null", "emergence_null_std",
}  # fmt: skip
DOCUMENTED_SCALARS = {
    "alpha0", "alpha0_std", "width", "width_std", "emergence",
    "alpha0_rms", "alpha0_rms_std", "width_rms", "width_rms_std", "emergence_rms",
    "weighted_degree", "weighted_degree_rms", "n_ill_formed", "n_ill_formed_rms", "n_nodes",
} | NULL_SCALARS  # fmt: skip  (the *_null keys only with null > 0: this test runs with null=1)
#: ... the mean spectrum ...
SPECTRUM_KEYS = {"q", "tau", "alpha", "f_alpha"}
#: ... and one row per depth (history.make_record: DepthSummary.to_dict, E against that depth's baseline, _rms twins).
DEPTH_ROW_KEYS = {
    "depth", "name", "alpha0", "alpha0_std", "width", "width_std", "n_nodes", "n_ill_formed", "flag", "emergence",
    "alpha0_rms", "alpha0_rms_std", "width_rms", "width_rms_std", "emergence_rms",
}  # fmt: skip
#: A history record: step, epoch, wall time, the callback's error count, scalars, spectrum, by_depth
#: ("error" only on failure).
HISTORY_KEYS = {"step", "epoch", "time", "errors", "by_depth"} | DOCUMENTED_SCALARS | SPECTRUM_KEYS
#: A CLI ``--json`` checkpoint record: the history record's keys without epoch/time/errors, plus path and backend.
CLI_RECORD_KEYS = {"step", "path", "backend", "by_depth"} | DOCUMENTED_SCALARS | SPECTRUM_KEYS
#: ``--json`` options (the analysis options of ``neuromfa analyze``).
CLI_OPTION_KEYS = {
    "samples", "neurons_per_layer", "full", "backend", "threshold", "decimals", "min_neighbours",
    "scale_control", "scale_rms", "model_class", "config", "null", "architecture", "module",
}  # fmt: skip
#: The depth names of the tiny GPT-NeoX (from the training run: relative to the LightningModule).
TRAIN_DEPTHS = ["gpt_neox.layers.0", "gpt_neox.layers.1"]
CLI_DEPTHS = ["gpt_neox.layers.0", "gpt_neox.layers.1"]
#: ``--json`` document: ``{"version": 1, "options": ..., "checkpoints": [...]}`` plus the package version
#: under "neuromfa_callback" (written by ``_cli_report.write_json``; not named in the ``--json`` help text).
CLI_DOC_KEYS = {"version", "options", "checkpoints", "neuromfa_callback"}


def _sentinels() -> dict[str, str]:
    return {
        "WANDB_API_KEY": secrets.token_hex(20),  # 40 hex characters, the shape of a W&B key
        "HF_TOKEN": "hf_" + secrets.token_urlsafe(24),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "MY_SECRET": "my-secret-" + secrets.token_hex(16),
    }


def _needles(values: dict[str, str]) -> dict[str, bytes]:
    """Each sentinel whole and in halves (a truncated or partly masked copy is still a leak)."""
    out = {}
    for name, value in values.items():
        half = len(value) // 2
        out[name] = value.encode()
        out[f"{name}[:half]"] = value[:half].encode()
        out[f"{name}[half:]"] = value[half:].encode()
    return out


def _leaks_in_files(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{name} in {path.relative_to(root)}" for name, needle in needles.items() if needle in data]
    return found


def _leaks_in_text(where: str, text: str, needles: dict[str, bytes]) -> list[str]:
    return [f"{name} in {where}" for name, needle in needles.items() if needle.decode() in text]


def _save_checkpoints(root: Path) -> list[Path]:
    paths = []
    for step, seed in ((0, 0), (10, 1)):
        model = tiny_gpt_neox(seed=seed)
        model.save_pretrained(root / f"checkpoint-{step}")
        paths.append(root / f"checkpoint-{step}")
    return paths


def test_nothing_logged_or_written_contains_credentials(tmp_path, monkeypatch, capfd, caplog):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from tests.helpers.wandb_reader import wait_for_run_file

    values = _sentinels()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "cli"))
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_ARTIFACT_DIR", "artifacts")):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / sub))
    caplog.set_level(logging.DEBUG)

    # --- a short training run: W&B (offline) + CSV + history file
    train_dir = tmp_path / "train"
    hist = train_dir / "history.jsonl"
    wandb_logger = WandbLogger(project="neuromfa-secrets", save_dir=str(train_dir), offline=True)
    csv_logger = CSVLogger(save_dir=str(train_dir), name="csv")
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=16, history_path=hist,
                          figure_every_n_snapshots=2, null=1, log_per_depth=True)
    trainer = pl.Trainer(default_root_dir=train_dir, accelerator="cpu", devices=1, max_steps=4,
                         logger=[wandb_logger, csv_logger], callbacks=[cb], enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(TinyLM())
    wandb_logger.experiment.finish()
    train_run = wait_for_run_file(train_dir)

    # --- the CLI on two saved checkpoints, with --json, --csv and --wandb
    ckpts = _save_checkpoints(tmp_path / "ckpt")
    out_json, out_csv = tmp_path / "out" / "series.json", tmp_path / "out" / "series.csv"
    out_json.parent.mkdir()
    code = main(["analyze", *map(str, ckpts), "--samples", "1", "--neurons-per-layer", "16", "--null", "1",
                 "--json", str(out_json), "--csv", str(out_csv), "--wandb", "--quiet"])
    assert code == 0, capfd.readouterr().err
    cli_run = wait_for_run_file(tmp_path / "cli")

    # --- the scan is not vacuous: everything that should have been written was
    written = {hist, out_json, out_csv, train_run, cli_run, *train_dir.glob("csv/version_*/metrics.csv")}
    assert all(p.is_file() and p.stat().st_size > 0 for p in written), written
    assert len(written) == 6
    n_files = sum(1 for p in tmp_path.rglob("*") if p.is_file())
    assert n_files >= 20  # checkpoints, W&B run folders (logs, media), CSV, JSON, history

    # --- no sentinel anywhere: files, stdout/stderr, log records
    needles = _needles(values)
    captured = capfd.readouterr()
    leaks = _leaks_in_files(tmp_path, needles)
    leaks += _leaks_in_text("stdout", captured.out, needles) + _leaks_in_text("stderr", captured.err, needles)
    leaks += _leaks_in_text("log records", "\n".join(r.getMessage() for r in caplog.records), needles)
    assert leaks == []

    # --- the history file holds only the documented keys
    assert set(SCALAR_KEYS) == DOCUMENTED_SCALARS
    records = load_history(hist)
    assert [r["step"] for r in records] == [0, 2, 4]
    for rec in records:
        assert set(rec) == HISTORY_KEYS, set(rec) ^ HISTORY_KEYS
        assert math.isfinite(rec["alpha0"]) and math.isfinite(rec["alpha0_null"])
        assert [d["name"] for d in rec["by_depth"]] == TRAIN_DEPTHS
        for row in rec["by_depth"]:
            assert set(row) == DEPTH_ROW_KEYS, set(row) ^ DEPTH_ROW_KEYS

    # --- the CLI JSON holds only the documented keys, and the CSV only the documented columns
    doc = json.loads(out_json.read_text())
    assert set(doc) == CLI_DOC_KEYS and doc["version"] == 1
    assert set(doc["options"]) == CLI_OPTION_KEYS
    assert [r["step"] for r in doc["checkpoints"]] == [0, 10]
    for rec in doc["checkpoints"]:
        assert set(rec) == CLI_RECORD_KEYS, set(rec) ^ CLI_RECORD_KEYS
        assert [d["name"] for d in rec["by_depth"]] == CLI_DEPTHS
        for row in rec["by_depth"]:
            assert set(row) == DEPTH_ROW_KEYS, set(row) ^ DEPTH_ROW_KEYS
    header = out_csv.read_text().splitlines()[0].split(",")
    assert header == ["step", "path", *SCALAR_KEYS, "backend"]


def test_the_scan_finds_a_planted_sentinel(tmp_path):
    """The scanner itself: a sentinel (or half of one) inside a binary file is found."""
    values = _sentinels()
    needles = _needles(values)
    blob = bytes(range(256)) + values["MY_SECRET"][3:].encode() + torch.randn(64).numpy().tobytes()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "blob.bin").write_bytes(blob)
    assert _leaks_in_files(tmp_path, needles) == ["MY_SECRET[half:] in a/b/blob.bin"]
    assert _leaks_in_text("x", f"key={values['WANDB_API_KEY']}", needles) == [
        "WANDB_API_KEY in x", "WANDB_API_KEY[:half] in x", "WANDB_API_KEY[half:] in x"
    ]

