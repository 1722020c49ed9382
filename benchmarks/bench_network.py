"""Model -> spectra: `analyze_model` against Python-loop extraction + the loop spectrum, one CPU thread.

Run: ``python benchmarks/bench_network.py [--repeats N]``. Model: a Pythia-70m-shaped GPT-NeoX at
initialisation (hidden 512, 6 layers, 8 heads, intermediate 2048; vocabulary 512 to keep the init
fast). Sampled: 10 samples x 32 neurons per layer, seeds 0..9 (960 nodes, 49,152 edges each).
Target (issue 3): ``analyze_model`` >= 40x faster than ``loop_spectrum`` on the same ten networks.
Full mode: every neuron (21,504 nodes, ~18.9M edges), time and peak extra memory.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import median_time, print_table, proc_status_kib  # noqa: E402
from benchmarks.reference_loop import loop_spectrum  # noqa: E402
from neuromfa_callback import analyze_model, build_network  # noqa: E402

SAMPLES, NEURONS = 10, 32


def pythia70m_shaped() -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(
        vocab_size=512,
        hidden_size=512,
        num_hidden_layers=6,
        num_attention_heads=8,
        intermediate_size=2048,
        max_position_embeddings=2048,
    )
    return GPTNeoXForCausalLM(cfg).eval()


def loop_extract(model: torch.nn.Module, seed: int, s: int = NEURONS) -> tuple[np.ndarray, np.ndarray]:
    """The reference's extraction: global-RNG draws, then a Python loop over every sampled edge."""
    layers = model.gpt_neox.layers
    f = layers[0].attention.dense.weight.shape[0]
    inter = layers[0].mlp.dense_h_to_4h.weight.shape[0]
    np.random.seed(seed)
    draws = []
    for _ in layers:
        draws.append([np.random.choice(f, s, replace=False), np.random.choice(f, s, replace=False)])
        draws[-1] += [np.random.choice(f, s, replace=False), np.random.choice(inter, 2 * s, replace=False)]
    last = np.random.choice(f, s, replace=False)
    node_lists = []
    for i, layer in enumerate(layers):
        a, t, b, c = draws[i]
        nxt = draws[i + 1][0] if i + 1 < len(layers) else last
        mats = [
            (layer.attention.query_key_value.weight, a, np.concatenate([t, t + f, t + 2 * f])),
            (layer.attention.dense.weight, t, b),
            (layer.mlp.dense_h_to_4h.weight, b, c),
            (layer.mlp.dense_4h_to_h.weight, c, nxt),
        ]
        for weight, cols, rows in mats:
            w = weight.detach().numpy()
            for col in cols:
                dists = []
                for row in rows:
                    value = float(w[row, col])
                    if value != 0.0:
                        dists.append(1.0 / abs(value))
                node_lists.append(dists)
    indptr = np.cumsum([0] + [len(x) for x in node_lists])
    return indptr, np.array([d for x in node_lists for d in x])


def peak_extra(fn) -> tuple[float, float, float]:
    """(seconds, peak extra RSS MiB, peak traced NumPy/Python MiB) of one call of ``fn``."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark (Linux)
    rss0 = proc_status_kib("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, (proc_status_kib("VmHWM") - rss0) / 1024, traced / 2**20



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the fast paths (median)")
    parser.add_argument("--loop-repeats", type=int, default=3, help="repeats of the loop baseline (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = pythia70m_shaped()

    nets = [build_network(model, neurons_per_layer=NEURONS, seed=k) for k in range(SAMPLES)]
    csrs = [(n.indptr, n.distances) for n in nets]
    loops = [loop_extract(model, k) for k in range(SAMPLES)]
    for (ip, d), (lip, ld) in zip(csrs, loops):  # same networks, node for node
        assert np.array_equal(ip, lip) and np.array_equal(d, ld)
    analysis = analyze_model(model, samples=SAMPLES, neurons_per_layer=NEURONS)
    tau_err = max(float(np.abs(s.tau - loop_spectrum(ip, d)[0]).max()) for s, (ip, d) in zip(analysis.spectra, csrs))

    def ours():
        analyze_model(model, samples=SAMPLES, neurons_per_layer=NEURONS)

    def loop():
        for ip, d in csrs:
            loop_spectrum(ip, d)

    # Interleaved rounds: each loop run is bracketed by runs of ours, so both see the same machine load.
    ratios, t_ours_all, t_ls_all = [], [], []
    for _ in range(args.loop_repeats):
        before, _ = median_time(ours, repeats=args.repeats)
        t_loop, _ = median_time(loop, repeats=1, warmup=0)
        after, _ = median_time(ours, repeats=args.repeats)
        ratios.append(t_loop / statistics.median([before, after]))
        t_ours_all += [before, after]
        t_ls_all.append(t_loop)
    t_ours, t_ls = statistics.median(t_ours_all), statistics.median(t_ls_all)
    t_build, _ = median_time(
        lambda: [build_network(model, neurons_per_layer=NEURONS, seed=k) for k in range(SAMPLES)], repeats=args.repeats
    )
    t_part, _ = median_time(lambda: [n.spectrum() for n in nets], repeats=args.repeats)
    t_lx, _ = median_time(lambda: [loop_extract(model, k) for k in range(SAMPLES)], repeats=args.loop_repeats, warmup=0)

    print(
        f"Pythia-70m-shaped GPT-NeoX at init, {SAMPLES} samples x {NEURONS} neurons/layer "
        f"({nets[0].n_nodes} nodes, {nets[0].n_edges} edges each), 1 thread, medians; "
        f"max |tau - loop tau| = {tau_err:.1e}"
    )
    rows = [
        [
            "analyze_model (build + spectra)",
            f"{t_ours * 1e3:.1f}",
            "1.0x",
            f"{t_ls / t_ours:.0f}x",
            f"{(t_lx + t_ls) / t_ours:.0f}x",
        ],
        ["  build_network x10 (each resolves the model anew)", f"{t_build * 1e3:.1f}", f"{t_build / t_ours:.2f}x", "", ""],
        ["  of which NeuronNetwork.spectrum x10", f"{t_part * 1e3:.1f}", f"{t_part / t_ours:.2f}x", "", ""],
        ["loop extraction x10 (Python loop over edges)", f"{t_lx * 1e3:.1f}", f"{t_lx / t_ours:.0f}x", "", ""],
        ["loop_spectrum x10 (on the same CSRs)", f"{t_ls * 1e3:.1f}", f"{t_ls / t_ours:.0f}x", "", ""],
        ["loop extraction + loop_spectrum", f"{(t_lx + t_ls) * 1e3:.1f}", f"{(t_lx + t_ls) / t_ours:.0f}x", "", ""],
    ]
    print_table(["sampled mode", "ms", "vs ours", "loop_spectrum/ours", "loop total/ours"], rows)
    print(
        f"loop_spectrum / analyze_model per interleaved round: {', '.join(f'{r:.0f}x' for r in ratios)} "
        f"(median {statistics.median(ratios):.0f}x; target >= 40x)"
    )

    weights_mib = (
        sum(
            p.numel() * p.element_size()
            for n, p in model.named_parameters()
            if "layers" in n and n.endswith("weight") and p.ndim == 2
        )
        / 2**20
    )
    full = build_network(model, full=True)
    t_full, rss, traced = peak_extra(lambda: full.spectrum())
    t_fa, rss_a, traced_a = peak_extra(lambda: analyze_model(model, full=True))
    print(
        f"\nFull mode: {full.n_nodes} nodes, {full.n_edges} edges; analysed matrices hold {weights_mib:.0f} MiB "
        f"(float32), {2 * weights_mib:.0f} MiB as float64"
    )
    print_table(
        ["full mode", "s", "peak extra RSS MiB", "peak traced MiB"],
        [
            ["NeuronNetwork.spectrum()", f"{t_full:.2f}", f"{rss:.0f}", f"{traced:.0f}"],
            ["analyze_model(full=True)", f"{t_fa:.2f}", f"{rss_a:.0f}", f"{traced_a:.0f}"],
        ],
    )


if __name__ == "__main__":
    main()
