"""Bounded memory at scale: full-network NeuroMFA of a Pythia-410m-shaped model on CPU.

Run: ``python benchmarks/bench_memory.py``. Builds a GPT-NeoX with Pythia-410m's shapes (hidden
1024, 24 blocks, intermediate 4096; a 512-token vocabulary keeps the embedding small, and embeddings
are not analysed anyway), then measures the extra peak resident memory of ``NeuronNetwork.partition``
in full mode: the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) after the model is
built, and the peak after the analysis minus the resident size before it is the extra memory.
Target (issue 7): below twice the largest single weight matrix (2 x 4096 x 1024 x 4 B = 32 MiB).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import print_table, proc_status_kib  # noqa: E402
from neuromfa_callback import build_network  # noqa: E402



def main() -> None:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=512, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096, max_position_embeddings=2048)
    with torch.no_grad():
        model = GPTNeoXForCausalLM(cfg).eval()
    largest = max(p.numel() * p.element_size() for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2 and "embed" not in n)
    net = build_network(model, full=True)
    # Warm-up on a tiny model: imports and BLAS buffers are one-time costs, not per-analysis memory.
    small = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=64, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                             intermediate_size=256, max_position_embeddings=64)).eval()
    for backend in ("numpy", "torch"):
        build_network(small, full=True).partition(backend=backend)
    del small
    gc.collect()
    rows = []
    libc = ctypes.CDLL("libc.so.6")
    for backend in ("numpy", "torch"):
        gc.collect()
        libc.malloc_trim(0)  # hand freed heap back to the OS so reused pages cannot hide new allocations
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        before = proc_status_kib("VmRSS")
        t0 = time.perf_counter()
        part = net.partition(backend=backend)
        elapsed = time.perf_counter() - t0
        peak = proc_status_kib("VmHWM")
        extra = (peak - before) * 1024
        s = part.spectrum()
        rows.append([backend, f"{net.n_nodes:,}", f"{part.n_edges:,}", f"{elapsed:.1f}", f"{extra / 2**20:.1f}",
                     f"{2 * largest / 2**20:.1f}", f"{extra / largest:.2f}", f"{s.alpha0:.4f}", f"{s.width:.4f}"])
    print(f"Pythia-410m-shaped GPT-NeoX, full network, CPU (1 thread); largest matrix {largest / 2**20:.0f} MiB")
    print_table(["backend", "nodes", "kept edges", "seconds", "extra peak MiB", "limit MiB", "extra/largest", "alpha0", "width"], rows)


if __name__ == "__main__":
    main()
