"""GPU benchmark: full-network partition sums of Pythia-shaped random bf16 weights (160m, 1b, 2.8b shapes).

Run on a CUDA machine: ``python benchmarks/bench_gpu.py [--out DIR] [--shapes 160m,1b,2.8b]``. For each
shape the analysed matrices of every block (qkv 3F x F, attention dense F x F, h_to_4h 4F x F,
4h_to_h F x 4F) are random bf16 weights (std 0.02) on the GPU, wrapped directly in a ``NeuronNetwork``
(no transformers needed). Each backend's ``NeuronNetwork.partition`` runs in the same process, timed
with CUDA events (median of repeats, after a warm-up that includes the kernel's compilation and
self-check), with its extra GPU memory (``max_memory_allocated`` above the weights). The two backends'
results are compared (identical counts, z to 1e-12). Targets (issue 12): the 2.8b shape (2.5 billion
weights) in <= 5 ms with CuPy, >= 40x the torch backend, <= 64 MiB extra memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table  # noqa: E402
from neuromfa_callback.functional._neuron_network import MatrixBlock, NeuronNetwork  # noqa: E402

SHAPES = {"160m": (768, 12, 3072), "1b": (2048, 16, 8192), "2.8b": (2560, 32, 10240)}
ROLES = ("attention_in", "attention_out", "mlp_in", "mlp_out")


def pythia_network(hidden: int, blocks: int, inter: int, seed: int = 0, device: str = "cuda") -> NeuronNetwork:
    """Full network of a Pythia-shaped GPT-NeoX: random bf16 weights (std 0.02) built on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for layer in range(blocks):
        for role, (rows, cols) in zip(
            ROLES, [(3 * hidden, hidden), (hidden, hidden), (inter, hidden), (hidden, inter)]
        ):
            w = torch.empty(rows, cols, device=device, dtype=torch.bfloat16).normal_(0, 0.02, generator=gen)
            name = f"layers.{layer}.{role}.weight"
            out.append(
                MatrixBlock(
                    name=name,
                    names=(name,),
                    depth=layer,
                    weights=(w,),
                    columns=np.arange(cols),
                    rows=(None,),
                    scales=(1.0,),
                )
            )
    return NeuronNetwork(tuple(out), depth_names=[f"layers.{i}" for i in range(blocks)], family="gpt_neox", full=True)


def time_partition(
    net: NeuronNetwork, backend: str, repeats: int, budget_s: float
) -> tuple[float, float, object, list[float]]:
    """Median CUDA-event milliseconds, extra MiB, the result, and all times (stops early past ``budget_s``)."""
    part = net.partition(backend=backend)  # warm-up: compilation, self-check, caches
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times, t0 = [], time.perf_counter()
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        part = net.partition(backend=backend)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if time.perf_counter() - t0 > budget_s:
            break
    extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), extra, part, times


def agree(a, b) -> str:
    same = (a.n_nodes, a.n_edges) == (b.n_nodes, b.n_edges) and np.array_equal(a.present, b.present)
    rel = float(np.max(np.abs(a.z / b.z - 1))) if same else float("nan")
    return f"{'identical counts' if same else 'COUNTS DIFFER'}, max |z rel diff| {rel:.1e}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("gpu-results"))
    p.add_argument("--backends", default="cupy,torch")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--budget", type=float, default=25.0, help="seconds of timed repeats per backend and shape")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shapes": {}}
    rows, notes = [], []
    for name in a.shapes.split(","):
        net = pythia_network(*SHAPES[name])
        entry = {"weights": int(sum(w.numel() for b in net.blocks for w in b.weights)), "nodes": net.n_nodes}
        parts = {}
        for backend in a.backends.split(","):
            try:
                ms, extra, part, times = time_partition(
                    net, backend, repeats=20 if backend == "cupy" else 5, budget_s=a.budget
                )
                parts[backend] = part
                s = part.spectrum()
                entry[backend] = {
                    "ms": ms,
                    "times_ms": times,
                    "extra_mib": extra,
                    "alpha0": s.alpha0,
                    "width": s.width,
                    "ran": part.backend,
                }
                rows.append(
                    [name, f"{entry['weights']:,}", backend, f"{ms:.2f}", len(times), f"{extra:.1f}", f"{s.alpha0:.6f}"]
                )
            except Exception as err:  # noqa: BLE001 - report and go on to the next backend
                entry[backend] = {"error": repr(err)}
                rows.append([name, f"{entry['weights']:,}", backend, "error", 0, "-", repr(err)[:70]])
        if "cupy" in parts and "torch" in parts:
            entry["agreement"] = agree(parts["cupy"], parts["torch"])
            entry["speedup"] = entry["torch"]["ms"] / entry["cupy"]["ms"]
            notes.append(f"{name}: cupy vs torch {entry['agreement']}; speed-up {entry['speedup']:.1f}x")
        results["shapes"][name] = entry
        (a.out / "bench_gpu.json").write_text(json.dumps(results, indent=2))  # partial results survive a timeout
        del net, parts
        torch.cuda.empty_cache()
    print(f"{results['device']}, torch {results['torch']}")
    print_table(["shape", "weights", "backend", "median ms", "runs", "extra MiB", "alpha0"], rows)
    for line in notes:
        print(line)
    big = results["shapes"].get("2.8b", {})
    if "cupy" in big and "ms" in big["cupy"]:
        ok = [big["cupy"]["ms"] <= 5, big.get("speedup", 0) >= 40, big["cupy"]["extra_mib"] <= 64]
        print(f"targets (2.8b): <= 5 ms {ok[0]}, >= 40x torch {ok[1]}, <= 64 MiB extra {ok[2]}")


if __name__ == "__main__":
    main()
