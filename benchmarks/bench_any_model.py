"""Cost of finding node sets from the data flow, and of analysing a 0.5B-parameter model on a CPU.

Run: ``python benchmarks/bench_any_model.py``. Two tables (issue "any model"):

1. The first training step with the discovery hooks on (``DataflowRecorder``: a forward pre-hook on
   every weight-holding module, recording which tensor it reads) against the same step without them,
   and the step after the hooks are removed: a Pythia-70m-shaped GPT-NeoX (hidden 512, 6 blocks),
   batch 8 x 128 tokens, forward + backward + AdamW step, interleaved rounds, medians. Target: the
   hooks add at most 5 % to the step they observe and nothing after it.
2. ``analyze_model`` (10 samples x 32 neurons, scale control off and on) on a Qwen2-0.5B-shaped model
   at random init (hidden 896, 24 layers, intermediate 4864, 14 heads, 2 key/value heads, vocabulary
   151,936: 494M parameters): seconds, and the extra peak resident memory (``VmHWM`` reset before the
   call, minus the resident size before it). Sampled mode copies only the sampled entries, so the
   extra memory is far below one copy of the model (1.9 GiB).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table, proc_status_kib  # noqa: E402
from neuromfa_callback import analyze_model  # noqa: E402
from neuromfa_callback.architectures import DataflowRecorder, resolve  # noqa: E402



def hooks(rounds: int = 7) -> None:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=512, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                                             intermediate_size=2048, max_position_embeddings=256))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 512, (8, 128))

    def step() -> float:
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    for _ in range(2):
        step()  # warm-up
    plain, observed, after = [], [], []
    for _ in range(rounds):  # interleaved: one machine load for all three
        plain.append(step())
        rec = DataflowRecorder(model, source="training step")
        observed.append(step())
        t0 = time.perf_counter()
        obs = rec.detach()
        layout = resolve(model, observation=obs)  # grouping the observation into node sets (once per fit)
        observed[-1] += time.perf_counter() - t0
        after.append(step())
    med = statistics.median
    base = med(plain)
    print(f"Pythia-70m-shaped GPT-NeoX, batch 8 x 128, forward+backward+AdamW, {rounds} interleaved rounds, medians "
          f"({len(layout.node_sets)} node sets, {len(obs.order)} hooked modules)")
    print_table(["step", "median s", "runs s", "vs plain"], [
        ["plain", f"{base:.3f}", ", ".join(f"{t:.3f}" for t in plain), "1.000"],
        ["observed (hooks + grouping)", f"{med(observed):.3f}", ", ".join(f"{t:.3f}" for t in observed), f"{med(observed) / base:.3f}"],
        ["after the hooks are removed", f"{med(after):.3f}", ", ".join(f"{t:.3f}" for t in after), f"{med(after) / base:.3f}"],
    ])


def qwen05b() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        model = Qwen2ForCausalLM(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\nQwen2-0.5B-shaped model at random init: {n_params / 1e6:.0f}M parameters "
          f"({n_params * 4 / 2**30:.2f} GiB float32), built in {time.perf_counter() - t0:.0f} s")
    rows = []
    for scale in (None, "rms"):
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter
        before = proc_status_kib("VmRSS")
        t0 = time.perf_counter()
        a = analyze_model(model, samples=10, neurons_per_layer=32, scale=scale)
        elapsed = time.perf_counter() - t0
        extra = (proc_status_kib("VmHWM") - before) / 1024
        rows.append([str(scale), f"{elapsed:.2f}", f"{extra:.0f}", f"{len(a.by_depth)}", f"{a.n_nodes:.0f}",
                     f"{a.alpha0_mean:.4f} +- {a.alpha0_std:.4f}", f"{a.width_mean:.4f}"])
    print_table(["scale", "seconds", "extra peak MiB", "depths", "nodes/sample", "alpha0", "width"], rows)


if __name__ == "__main__":
    hooks()
    qwen05b()
