"""Cost of the per-depth output: one snapshot's analysis with and without the depths, one thread.

Run: ``python benchmarks/bench_by_depth.py``. For a tiny Pythia (hidden 128, 4 blocks) and a
Pythia-70m-shaped GPT-NeoX (hidden 512, 6 blocks) at init, 10 sampled networks (10 x 32 neurons):
"whole": one engine call per network and one fit (what an analysis without depths would do); "by
depth": the per-depth partition sums from one grouped engine pass per network, then every fit
(whole network and each depth), as every snapshot does. Medians of 15. Target (issue 13): <= 10 % more.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table  # noqa: E402
from neuromfa_callback.architectures import resolve  # noqa: E402
from neuromfa_callback.functional.neuromfa import (  # noqa: E402
    NeuroMFAOptions,
    NeuroMFAState,
    _neuromfa_compute,
    _neuromfa_networks,
)
from neuromfa_callback.functional.spectrum import spectrum_from_partition  # noqa: E402


def main() -> None:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    rows = []
    for hidden, layers in ((128, 4), (512, 6)):
        torch.manual_seed(0)
        cfg = GPTNeoXConfig(vocab_size=256, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=4 * hidden)
        layout = resolve(GPTNeoXForCausalLM(cfg))
        o = NeuroMFAOptions(samples=10)
        nets = _neuromfa_networks(layout, o, o.seeds)

        def whole() -> None:
            for n in nets:
                spectrum_from_partition(n.partition(**o.engine))

        def by_depth() -> None:
            state = NeuroMFAState.empty(o, layout.depth_names)
            for n in nets:
                state.add(n.seed, n.partition_by_depth(**o.engine))
            _neuromfa_compute(state)

        times: dict[str, list[float]] = {"whole": [], "depth": []}
        for _ in range(15):  # interleaved
            for name, fn in (("whole", whole), ("depth", by_depth)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        a, b = statistics.median(times["whole"]), statistics.median(times["depth"])
        rows.append([f"hidden {hidden}, {layers} blocks", f"{a * 1e3:.1f}", f"{b * 1e3:.1f}", f"{b / a:.2f}"])
    print("One snapshot's analysis of 10 sampled networks (1 thread, medians of 15 interleaved)")
    print_table(["model", "whole network ms", "by depth ms", "ratio"], rows)


if __name__ == "__main__":
    main()
