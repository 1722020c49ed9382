"""Callback overhead on a GPU: a Pythia-160m-shaped bf16 training step against a full NeuroMFA analysis.

Run on a CUDA machine: ``python benchmarks/bench_gpu_overhead.py [--out DIR] [--every 50]``. Needs
transformers (the model); Lightning is optional.

1. ``step``: median time of a training step of a GPT-NeoX with Pythia-160m's shapes (hidden 768, 12
   blocks, vocabulary 50304), bf16 weights, AdamW, batch ``--batch`` x ``--seq`` random tokens.
2. ``snapshot``: median time of what the callback does on the training thread in full mode: build the
   full network (raw and ``scale="rms"``, the default scale control) and compute both partition sums
   with ``backend="auto"`` (the CuPy kernel once it passed its self-check), synchronised.
3. Overhead = snapshot / (every x step). Target (issue 12): <= 0.5 % with a full analysis every 50 steps.
4. With Lightning installed, also the end-to-end ratio: the same number of steps with and without
   ``NeuroMFACallback(full=True, every_n_train_steps=every)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuromfa_callback import build_network  # noqa: E402


def pythia_160m() -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        vocab_size=50304,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=2048,
    )
    with torch.device("cuda"):
        return GPTNeoXForCausalLM(cfg).to(torch.bfloat16)


def cuda_median(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def lightning_ratio(every: int, steps: int, batch: int, seq: int, out: Path) -> dict:
    import lightning.pytorch as pl

    from neuromfa_callback import NeuroMFACallback

    class LM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = pythia_160m()

        def training_step(self, batch, _):
            return self.model(input_ids=batch, labels=batch).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-4)

    data = torch.randint(0, 50304, (steps * batch, seq))
    times = {}
    for label, with_cb in (("without", False), ("with", True), ("without_2", False), ("with_2", True)):
        cbs = (
            [NeuroMFACallback(every_n_train_steps=every, full=True, history_path=out / f"history_{label}.jsonl")]
            if with_cb
            else []
        )
        trainer = pl.Trainer(
            max_steps=steps,
            accelerator="gpu",
            devices=1,
            logger=False,
            callbacks=cbs,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        loader = torch.utils.data.DataLoader(data, batch_size=batch)
        t0 = time.perf_counter()
        trainer.fit(LM(), train_dataloaders=loader)
        torch.cuda.synchronize()
        times[label] = time.perf_counter() - t0
    base = min(times["without"], times["without_2"])
    return {"seconds": times, "overhead": min(times["with"], times["with_2"]) / base - 1}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("gpu-results"))
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument(
        "--lightning-steps", type=int, default=0, help="end-to-end Lightning runs of this many steps (0: skip)"
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"device": torch.cuda.get_device_name(), "every": a.every, "batch": a.batch, "seq": a.seq}
    model = pythia_160m()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 50304, (a.batch, a.seq), device="cuda")

    def step():
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    res["step_s"] = cuda_median(step, repeats=20)

    def snapshot():
        for scale in (None, "rms"):
            build_network(model, full=True, scale=scale).partition(backend="auto")

    parts = [build_network(model, full=True, scale=s).partition(backend="auto") for s in (None, "rms")]
    res["backend"] = parts[0].backend
    res["snapshot_s"] = cuda_median(snapshot, repeats=10)
    res["overhead"] = res["snapshot_s"] / (a.every * res["step_s"])
    print(
        f"{res['device']}: Pythia-160m-shaped bf16 step {1e3 * res['step_s']:.1f} ms (batch {a.batch} x {a.seq}); "
        f"full snapshot raw + rms ({res['backend']}) {1e3 * res['snapshot_s']:.2f} ms; "
        f"overhead every {a.every} steps {100 * res['overhead']:.3f} % (target <= 0.5 %)"
    )
    if a.lightning_steps:
        try:
            res["lightning"] = lightning_ratio(a.every, a.lightning_steps, a.batch, a.seq, a.out)
            print(f"Lightning end to end, {a.lightning_steps} steps: {res['lightning']}")
        except Exception as err:  # noqa: BLE001 - optional part
            res["lightning"] = {"error": repr(err)}
            print(f"Lightning end to end: not run ({err!r})")
    (a.out / "bench_gpu_overhead.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
