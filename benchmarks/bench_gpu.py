"""GPU benchmark: full-network NeuroMFA of Pythia-shaped random bf16 weights (160m, 1b, 2.8b shapes).

Run on a CUDA machine: ``python benchmarks/bench_gpu.py [--out DIR]``. For each shape the analysed
matrices (qkv, attention dense, h_to_4h, 4h_to_h of every block) are random bf16 weights (std 0.02)
on the GPU; each backend's ``NeuronNetwork.partition`` is timed with CUDA events (median of repeats)
and its extra GPU memory measured with ``torch.cuda.max_memory_allocated``. Targets (issue 4): the
2.8b shape (2.5 billion edges) in <= 5 ms and >= 40x faster than the torch backend, <= 64 MiB extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table  # noqa: E402
from neuromfa_callback import build_network  # noqa: E402

SHAPES = {"160m": (768, 12, 3072), "1b": (2048, 16, 8192), "2.8b": (2560, 32, 10240)}


def pythia_shaped(hidden: int, blocks: int, inter: int) -> torch.nn.Module:
    """A GPT-NeoX with Pythia's matrix shapes, built directly on the GPU in bf16 (small vocabulary)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=512, hidden_size=hidden, num_hidden_layers=blocks, num_attention_heads=hidden // 128,
                        intermediate_size=inter, max_position_embeddings=2048)
    with torch.device("cuda"):
        model = GPTNeoXForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.02)
    return model


def time_partition(net, backend: str, repeats: int = 10) -> tuple[float, float, object]:
    part = net.partition(backend=backend)  # warm-up (compilation, caches)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        part = net.partition(backend=backend)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), extra, part


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("gpu-results"))
    p.add_argument("--backends", default="torch,cupy")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows, results = [], {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    for name, (h, blocks, inter) in SHAPES.items():
        model = pythia_shaped(h, blocks, inter)
        net = build_network(model, full=True)
        entry = {"edges": int(sum(w.numel() for b in net.blocks for w in b.weights))}
        for backend in a.backends.split(","):
            try:
                ms, extra, part = time_partition(net, backend, repeats=5 if backend == "torch" else 20)
                entry[backend] = {"ms": ms, "extra_mib": extra, "alpha0": part.spectrum().alpha0}
                rows.append([name, f"{entry['edges']:,}", backend, f"{ms:.2f}", f"{extra:.1f}", f"{part.spectrum().alpha0:.6f}"])
            except Exception as err:  # noqa: BLE001 - report and go on to the next backend
                entry[backend] = {"error": repr(err)}
                rows.append([name, f"{entry['edges']:,}", backend, "error", "-", repr(err)[:60]])
        results["shapes"][name] = entry
        del model, net
        torch.cuda.empty_cache()
    print(f"{results['device']}, torch {results['torch']}")
    print_table(["shape", "weights", "backend", "median ms", "extra MiB", "alpha0"], rows)
    (a.out / "bench_gpu.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
