"""Grokking modular addition with NeuroMFA attached: does the degree of emergence E see the jump?

Run: ``python examples/grokking.py`` (5-7 minutes on one shared CPU core; no GPU, no account,
no download). A one-block GPT-2 (hidden 128, 4 heads, MLP 512) learns ``(a + b) mod 97`` from 25%
of all pairs with AdamW (lr 1e-3, weight decay 1.0, batches of 512) for 5000 steps. It memorises
the training pairs within ~200 steps, sits on a plateau (validation accuracy ~10%), and only
generalises (validation accuracy > 90%) some 2000 steps later: the classic grokking set-up (Power
et al. 2022; Nanda et al. 2023), sped up for a CPU. See ``examples/GROKKING.md`` for what E does.
:class:`neuromfa_callback.NeuroMFACallback` snapshots the network every ``--every`` steps (raw E and
the scale-controlled E_rms); train and validation accuracy are measured over the whole train and
held-out sets at the same steps. ``--output`` receives:

- ``history.jsonl``: one NeuroMFA snapshot per line (``neuromfa_callback.history.load_history``);
- ``metrics.csv``: every logged metric (Lightning ``CSVLogger``), NeuroMFA's included;
- ``grokking.png``: accuracy, E and E_rms, alpha0, width and the weight scale over training;
- ``spectra.png``: the f(alpha) spectra, coloured by step;
- ``summary.json``: grokking step, E before/after it, Spearman correlations (also printed);
- ``wandb/`` with ``--wandb``: an offline W&B run unless W&B is configured (``wandb sync`` uploads it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from neuromfa_callback import NeuroMFACallback, describe
from neuromfa_callback.plotting import plot_spectra

MEMORISED = 0.99  # train accuracy that counts as "memorised"
GROKKED = 0.9  # validation accuracy that counts as "generalised" (the grokking step)
CLIMB = 0.3  # validation accuracy that marks the start of the climb (well above the plateau)


# ----------------------------------------------------------------------------------- data and model
def modular_addition(p: int, train_frac: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """All pairs ``(a, b)`` as token sequences ``[a, b, =]`` with label ``(a + b) mod p``, split at random.

    Args:
        p: the modulus; tokens ``0..p-1`` are the numbers, token ``p`` is ``=``.
        train_frac: fraction of the ``p * p`` pairs used for training.
        seed: seed of the split.

    Returns:
        The train and validation sets (``TensorDataset(tokens, labels)``).
    """
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    labels = (a + b).flatten() % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = max(1, min(p * p - 1, round(train_frac * p * p)))
    tr, va = perm[:n_train], perm[n_train:]
    return TensorDataset(tokens[tr], labels[tr]), TensorDataset(tokens[va], labels[va])


class ModularAddition(pl.LightningModule):
    """A small GPT-2 (``transformers.GPT2LMHeadModel``) predicting ``(a + b) mod p`` at the ``=`` token.

    Args:
        p: the modulus (the vocabulary is ``p + 1`` tokens).
        d_model: hidden size (the MLP is ``4 * d_model`` wide).
        layers: transformer blocks.
        heads: attention heads.
        lr: AdamW learning rate (constant after a short linear warm-up).
        weight_decay: AdamW (decoupled) weight decay, applied to every parameter.
    """

    def __init__(self, p: int = 97, d_model: int = 128, layers: int = 1, heads: int = 4, lr: float = 1e-3, weight_decay: float = 1.0) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.save_hyperparameters()
        cfg = GPT2Config(
            vocab_size=p + 1,
            n_positions=3,
            n_embd=d_model,
            n_layer=layers,
            n_head=heads,
            n_inner=4 * d_model,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,
            bos_token_id=p,
            eos_token_id=p,
        )
        self.model = GPT2LMHeadModel(cfg)
        self.p = p
        # the matrices of the neuron interaction network (what NeuroMFA reads), for the weight-scale diagnostics
        self.nin_names = [m.name for m in describe(self.model).used]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits over the ``p`` answers at the last (``=``) position."""
        return self.model(input_ids=tokens).logits[:, -1, : self.p]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train/batch_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self(x)
        split = "train" if dataloader_idx == 0 else "val"
        kw = {"add_dataloader_idx": False, "batch_size": len(y), "on_epoch": True, "logger": False}  # EvalHistory logs them
        self.log(f"{split}/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True, **kw)
        self.log(f"{split}/loss", torch.nn.functional.cross_entropy(logits, y), **kw)

    def on_validation_epoch_end(self) -> None:
        w = torch.cat([self.model.get_parameter(n).detach().flatten() for n in self.nin_names])
        every = torch.cat([q.detach().flatten() for q in self.parameters()])
        self.log("weights/rms_nin", w.pow(2).mean().sqrt(), logger=False)  # RMS of the analysed matrices
        self.log("weights/norm_all", every.norm(), logger=False)  # L2 norm of every parameter
        kept = ((w.abs() >= 1 / 150) & (w.abs() < 1)).float().mean()  # weights that are NeuroMFA edges (T=150)
        self.log("weights/frac_kept", kept, logger=False)

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, betas=(0.9, 0.98))
        warmup = 10
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class EvalHistory(Callback):
    """Accuracies and weight diagnostics at every validation run, keyed by optimizer step, and logged.

    They go to every logger at ``trainer.global_step``, the step NeuroMFA's snapshot of the same
    weights carries (Lightning's own ``self.log`` would write them one step earlier).
    """

    KEYS = ("train/acc", "val/acc", "train/loss", "val/loss", "weights/rms_nin", "weights/norm_all", "weights/frac_kept")

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        row = {k: float(m[k]) for k in self.KEYS if k in m}
        self.rows[trainer.global_step] = row
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(row, step=trainer.global_step)


# --------------------------------------------------------------------------------------- analysis
def wandb_mode() -> str:
    """``online`` when the user has configured W&B (WANDB_MODE, WANDB_API_KEY or a netrc login), else ``offline``."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        import netrc

        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        if netrc.netrc().authenticators(host):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties averaged."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation over the pairs where both values are finite (NaN if < 3 pairs or constant).

    Example:
        >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 25]), 3)
        0.8
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    rx, ry = _ranks(x[ok]), _ranks(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _first(steps: np.ndarray, mask: np.ndarray) -> int | None:
    hit = np.flatnonzero(mask)
    return int(steps[hit[0]]) if hit.size else None


def joined(history: list[dict[str, Any]], evals: dict[int, dict[str, float]]) -> dict[str, np.ndarray]:
    """Snapshot records and evaluation rows aligned on their common steps, as columns."""
    steps = sorted({int(r["step"]) for r in history} & set(evals))
    by_step = {int(r["step"]): r for r in history}
    nan = float("nan")
    cols: dict[str, np.ndarray] = {"step": np.array(steps, dtype=np.int64)}
    for key in ("alpha0", "alpha0_std", "width", "width_std", "emergence", "alpha0_rms", "width_rms", "emergence_rms",
                "weighted_degree", "weighted_degree_rms", "n_nodes", "alpha0_null", "emergence_null", "emergence_null_std"):
        cols[key] = np.array([float(by_step[s].get(key, nan)) for s in steps])
    for key in EvalHistory.KEYS:
        cols[key] = np.array([evals[s].get(key, nan) for s in steps])
    return cols


QUANTITIES = {  # summary name -> column
    "E": "emergence",
    "E_rms": "emergence_rms",
    "E_null": "emergence_null",
    "alpha0_null": "alpha0_null",
    "alpha0": "alpha0",
    "alpha0_rms": "alpha0_rms",
    "width": "width",
    "width_rms": "width_rms",
    "weighted_degree": "weighted_degree",
    "weighted_degree_rms": "weighted_degree_rms",
    "weight_rms": "weights/rms_nin",
    "n_nodes": "n_nodes",
}


def partial_spearman(x: Any, y: Any, z: Any) -> float:
    """Spearman correlation of ``x`` and ``y`` with ``z`` (here: the step) partialled out."""
    rxy, rxz, ryz = spearman(x, y), spearman(x, z), spearman(y, z)
    den = math.sqrt(max(0.0, (1 - rxz**2) * (1 - ryz**2)))
    return float((rxy - rxz * ryz) / den) if den > 0 else float("nan")


def summarise(cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """Grokking step, E around it, E's change per training phase, and Spearman correlations.

    Returns:
        A dict with ``step_memorised`` (first step with train accuracy >= 0.99), ``step_climb``
        (first step with validation accuracy > 0.3), ``step_grokked`` (first step with validation
        accuracy > 0.9), the final accuracies; ``at``: E, E_rms, alpha0, width (raw and
        scale-controlled), the weighted degree, the weights' RMS and the node count at
        initialisation, memorisation, the last snapshot before grokking, the grokking step and the
        end; ``phases``: the change of each quantity over memorisation (0 -> memorised), plateau
        (memorised -> climb), climb (climb -> grokked) and after (grokked -> end); the Spearman
        correlation of each quantity with validation accuracy, with the step, with the weights' RMS,
        and with validation accuracy once the step is partialled out (all over the snapshots after
        step 0, where E is 0 by definition).
    """
    steps = cols["step"]
    out: dict[str, Any] = {
        "step_memorised": _first(steps, cols["train/acc"] >= MEMORISED),
        "step_climb": _first(steps, cols["val/acc"] > CLIMB),
        "step_grokked": _first(steps, cols["val/acc"] > GROKKED),
        "final_train_acc": float(cols["train/acc"][-1]),
        "final_val_acc": float(cols["val/acc"][-1]),
    }
    pos = {s: i for i, s in enumerate(steps.tolist())}
    idx = {"init": 0, "end": len(steps) - 1}
    if out["step_memorised"] is not None:
        idx["memorised"] = pos[out["step_memorised"]]
    if out["step_grokked"] is not None:
        idx["before_grok"], idx["grokked"] = max(0, pos[out["step_grokked"]] - 1), pos[out["step_grokked"]]
    out["at"] = {
        where: {"step": int(steps[i]), **{name: float(cols[key][i]) for name, key in QUANTITIES.items()}}
        for where, i in sorted(idx.items(), key=lambda kv: kv[1])
    }
    bounds = [("memorisation", 0, out["step_memorised"]), ("plateau", out["step_memorised"], out["step_climb"]),
              ("climb", out["step_climb"], out["step_grokked"]), ("after", out["step_grokked"], int(steps[-1]))]
    out["phases"] = {}
    for name, a, b in bounds:
        if a is None or b is None or b < a:
            continue
        out["phases"][name] = {"from": int(a), "to": int(b),
                               **{q: float(cols[k][pos[b]] - cols[k][pos[a]]) for q, k in QUANTITIES.items() if q != "n_nodes"}}
    later = steps > 0
    val, st = cols["val/acc"][later], steps[later]
    names = [n for n in QUANTITIES if n != "n_nodes"]
    out["spearman_with_val_acc"] = {n: spearman(cols[QUANTITIES[n]][later], val) for n in names}
    out["spearman_with_step"] = {n: spearman(cols[QUANTITIES[n]][later], st) for n in names}
    out["spearman_with_weight_rms"] = {n: spearman(cols[QUANTITIES[n]][later], cols["weights/rms_nin"][later]) for n in names if n != "weight_rms"}
    out["spearman_with_val_acc_given_step"] = {n: partial_spearman(cols[QUANTITIES[n]][later], val, st) for n in names}
    out["spearman_val_acc_with_step"] = spearman(val, st)
    return out


# ------------------------------------------------------------------------------------------ figure
def plot_grokking(cols: dict[str, np.ndarray], summary: dict[str, Any], path: Path, title: str = "") -> None:
    """Five panels sharing the step axis: accuracy, E and E_rms, alpha0, width, weight scale.

    The memorisation step (train accuracy >= 0.99) and the grokking step (validation accuracy
    > 0.9) are marked in every panel, the plateau (memorised -> validation accuracy > 0.3) shaded
    grey and the climb (-> > 0.9) red; bands are +-1 standard deviation across the sampled networks.
    """
    from matplotlib.figure import Figure

    x = cols["step"]
    fig = Figure(figsize=(8.5, 12.5), layout="constrained")
    axes = fig.subplots(5, 1, sharex=True, height_ratios=[1.1, 1.2, 1, 1, 1])
    raw = {"color": "C0", "lw": 1.8, "marker": "o", "ms": 2.5}
    ctl = {"color": "C1", "lw": 1.6, "ls": "--", "marker": "s", "ms": 2.2}

    ax = axes[0]
    ax.plot(x, cols["train/acc"], color="C2", lw=2, label="train accuracy")
    ax.plot(x, cols["val/acc"], color="C3", lw=2, label="validation accuracy")
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", framealpha=0.9)

    ax = axes[1]
    ax.plot(x, cols["emergence"], label="E (raw)", **raw)
    ax.plot(x, cols["emergence_rms"], label="E_rms (scale-controlled)", **ctl)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("degree of emergence E")
    ax.legend(loc="upper left", framealpha=0.9, fontsize=9)

    for ax, key, label in ((axes[2], "alpha0", "alpha0"), (axes[3], "width", "spectrum width")):
        ax.plot(x, cols[key], label=f"{label} (raw)", **raw)
        if f"{key}_std" in cols:
            ax.fill_between(x, cols[key] - cols[f"{key}_std"], cols[key] + cols[f"{key}_std"], color="C0", alpha=0.15, lw=0)
        ax.plot(x, cols[f"{key}_rms"], label=f"{label} (scale-controlled)", **ctl)
        ax.set_ylabel(label)
        ax.legend(loc="best", frameon=False, fontsize=9)

    ax = axes[4]
    ax.plot(x, cols["weights/rms_nin"], color="k", lw=1.8, label="RMS of the analysed matrices")
    ax.set_ylabel("weight RMS")
    ax2 = ax.twinx()
    ax2.plot(x, cols["weights/frac_kept"], color="C4", lw=1.4, ls=":", label="fraction of weights in [1/150, 1) (kept edges)")
    ax2.set_ylabel("kept fraction", color="C4")
    ax2.tick_params(axis="y", colors="C4")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower right", fontsize=8.5, framealpha=0.9)
    ax.set_xlabel("optimizer step")

    marks = [("memorised", summary.get("step_memorised"), "C2"), ("grokked", summary.get("step_grokked"), "C3")]
    mem, climb, grok = summary.get("step_memorised"), summary.get("step_climb"), summary.get("step_grokked")
    for i, ax in enumerate(axes):
        if mem is not None and climb is not None and climb > mem:
            ax.axvspan(mem, climb, color="0.5", alpha=0.08, lw=0, label="_plateau")
        if climb is not None and grok is not None and grok > climb:
            ax.axvspan(climb, grok, color="C3", alpha=0.10, lw=0, label="_climb")
        for label, step, color in marks:
            if step is not None:
                ax.axvline(step, color=color, lw=1, ls="-.", alpha=0.8)
                if i == 0:
                    ax.annotate(f"{label}\nstep {step}", (step, 0.5), xytext=(4, 0), textcoords="offset points",
                                color=color, fontsize=9, va="center")
        ax.grid(alpha=0.25)
    if mem is not None and climb is not None and climb > mem:
        axes[0].text((mem + climb) / 2, 0.35, "plateau", ha="center", va="center", fontsize=9, color="0.35")
    axes[0].set_title(title, fontsize=10)
    fig.savefig(path, dpi=130)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def report(summary: dict[str, Any]) -> str:
    """The summary as plain text."""
    lines = [f"memorised (train acc >= {MEMORISED}) at step {summary['step_memorised']}; "
             f"val acc > {CLIMB} at step {summary['step_climb']}; grokked (val acc > {GROKKED}) at step {summary['step_grokked']}; "
             f"final train/val acc {summary['final_train_acc']:.3f}/{summary['final_val_acc']:.3f}"]
    names = ["E", "E_rms", "E_null", "alpha0", "alpha0_rms", "alpha0_null", "width", "width_rms", "weighted_degree",
             "weight_rms"]
    lines.append(f"{'value at':<13}{'step':>6}" + "".join(f"{n:>16}" for n in names + ["n_nodes"]))
    for where, row in summary["at"].items():
        lines.append(f"{where:<13}{row['step']:>6}" + "".join(f"{row[n]:>16.4f}" for n in names + ["n_nodes"]))
    lines.append(f"{'change over':<13}{'steps':>6}" + "".join(f"{n:>16}" for n in names))
    for where, row in summary["phases"].items():
        lines.append(f"{where:<13}{row['to'] - row['from']:>6}" + "".join(f"{row[n]:>+16.4f}" for n in names))
    for key in ("spearman_with_val_acc", "spearman_with_step", "spearman_with_weight_rms", "spearman_with_val_acc_given_step"):
        lines.append(f"{key}: " + ", ".join(f"{n} {_fmt(v)}" for n, v in summary[key].items()))
    lines.append(f"spearman(val_acc, step): {_fmt(summary['spearman_val_acc_with_step'])}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=5000, help="optimizer steps (default 5000)")
    ap.add_argument("--every", type=int, default=50, help="NeuroMFA snapshot and evaluation interval in steps (default 50)")
    ap.add_argument("--output", type=Path, default=Path("outputs/grokking"), help="output folder (default outputs/grokking)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the batches")
    ap.add_argument("--wandb", action="store_true", help="also log to W&B (offline unless W&B is configured)")
    ap.add_argument("--p", type=int, default=97, help="the modulus (default 97)")
    ap.add_argument("--train-frac", type=float, default=0.25, help="fraction of the p*p pairs trained on (default 0.25)")
    ap.add_argument("--d-model", type=int, default=128, help="hidden size (default 128; must be >= --neurons)")
    ap.add_argument("--layers", type=int, default=1, help="transformer blocks (default 1)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=512, help="training batch size; 0 = full batch (default 512)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1.0)
    ap.add_argument("--samples", type=int, default=10, help="NeuroMFA sampled networks per snapshot (default 10)")
    ap.add_argument("--neurons", type=int, default=32, help="NeuroMFA neurons sampled per layer (default 32)")
    ap.add_argument("--null", type=int, default=2, help="permutation nulls per sample (default 2; 0: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    if args.max_steps < 1 or args.every < 1:
        ap.error("--max-steps and --every must be >= 1")
    if not 0 < args.train_frac < 1:
        ap.error("--train-frac must be in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, analyse, plot; returns the summary (also written to ``summary.json``)."""
    args = parse_args(argv)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("history.jsonl", "metrics.csv", "hparams.yaml"):
        (out / stale).unlink(missing_ok=True)  # a fresh run starts fresh files
    torch.set_num_threads(max(1, args.threads))
    pl.seed_everything(args.seed, workers=True, verbose=False)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    train_set, val_set = modular_addition(args.p, args.train_frac, args.seed)
    bs = len(train_set) if args.batch_size <= 0 else min(args.batch_size, len(train_set))
    train_loader = DataLoader(train_set, batch_size=bs, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(args.seed))
    eval_loaders = [DataLoader(train_set, batch_size=8192), DataLoader(val_set, batch_size=8192)]

    loggers: list[Any] = [CSVLogger(out, name="", version="")]
    if args.wandb:
        from lightning.pytorch.loggers import WandbLogger

        mode = wandb_mode()
        loggers.append(WandbLogger(project="neuromfa-grokking", save_dir=str(out), offline=mode == "offline", log_model=False))
        print(f"W&B: {mode} run in {out / 'wandb'}", file=sys.stderr)

    neuromfa = NeuroMFACallback(
        every_n_train_steps=args.every,
        samples=args.samples,
        neurons_per_layer=args.neurons,
        scale_control=True,
        null=args.null,
        history_path=out / "history.jsonl",
        module="model",
    )
    evals = EvalHistory()
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        accelerator="cpu",
        devices=1,
        logger=loggers,
        callbacks=[neuromfa, evals, TQDMProgressBar(refresh_rate=10)],
        val_check_interval=args.every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=args.every,
        enable_checkpointing=False,
        enable_model_summary=False,
        deterministic=True,
    )
    module = ModularAddition(args.p, args.d_model, args.layers, args.heads, args.lr, args.weight_decay)
    t0 = time.time()
    with warnings.catch_warnings():  # an epoch is a few batches; the logging interval spans epochs on purpose
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # stale CSV files were removed above
        trainer.validate(module, dataloaders=eval_loaders, verbose=False)  # accuracy at initialisation (step 0)
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=eval_loaders)
    elapsed = time.time() - t0

    cols = joined(neuromfa.history, evals.rows)
    summary = summarise(cols)
    summary["elapsed_s"] = elapsed
    summary["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    title = (f"(a+b) mod {args.p}, train fraction {args.train_frac}, 1-block GPT-2 d={args.d_model}, "
             f"AdamW lr {args.lr:g} wd {args.weight_decay:g}, batch {bs}, seed {args.seed}")
    if args.layers != 1:
        title = title.replace("1-block", f"{args.layers}-block")
    plot_grokking(cols, summary, out / "grokking.png", title=title)
    plot_spectra(neuromfa.history, path=out / "spectra.png")
    for logger in loggers[1:]:  # the W&B run: the figure, the headline numbers, and close it
        logger.log_image(key="grokking", images=[str(out / "grokking.png")])
        keys = ("step_memorised", "step_climb", "step_grokked", "final_val_acc")
        logger.experiment.summary.update({f"grokking/{k}": summary[k] for k in keys if summary[k] is not None})
        logger.experiment.finish()
    print()
    print(report(summary))
    print(f"\n{len(neuromfa.history)} snapshots, {elapsed:.0f} s. Outputs in {out}/: history.jsonl, metrics.csv, "
          "grokking.png, spectra.png, summary.json" + (", wandb/" if args.wandb else ""))
    return summary


if __name__ == "__main__":
    main()
