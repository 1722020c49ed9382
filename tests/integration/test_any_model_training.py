"""Real 20-step fits of models the old family detection refused: every snapshot finite, at default settings.

Issue "any model": a Qwen2, a nanoGPT-style module, a LoRA-wrapped Llama whose adapters train (the
analysed effective weights move while the base is frozen) and a small CNN, through Lightning with
``NeuroMFACallback(every_n_train_steps=5)``; the same LoRA model through the Hugging Face ``Trainer``.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from neuromfa_callback import NeuroMFACallback, NeuroMFATrainerCallback
from tests._models import RecordingLogger

STEPS = [0, 5, 10, 15, 20]


# ----------------------------------------------------------------------------------- models
class NanoGPT(nn.Module):
    """Karpathy's nanoGPT layout: plain nn.Linear in a ModuleDict, fused c_attn, lm_head tied to wte."""

    def __init__(self, vocab: int = 64, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, block: int = 32) -> None:
        super().__init__()
        self.n_head = n_head
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, n_embd),
                "wpe": nn.Embedding(block, n_embd),
                "h": nn.ModuleList(
                    nn.ModuleDict(
                        {
                            "ln_1": nn.LayerNorm(n_embd),
                            "c_attn": nn.Linear(n_embd, 3 * n_embd),
                            "attn_proj": nn.Linear(n_embd, n_embd),
                            "ln_2": nn.LayerNorm(n_embd),
                            "c_fc": nn.Linear(n_embd, 4 * n_embd),
                            "mlp_proj": nn.Linear(4 * n_embd, n_embd),
                        }
                    )
                    for _ in range(n_layer)
                ),
                "ln_f": nn.LayerNorm(n_embd),
            }
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer["wte"].weight = self.lm_head.weight  # weight tying, as nanoGPT does
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        x = self.transformer["wte"](idx) + self.transformer["wpe"](torch.arange(t, device=idx.device))
        for blk in self.transformer["h"]:
            q, k, v = blk["c_attn"](blk["ln_1"](x)).split(x.shape[-1], dim=2)
            q, k, v = (z.view(b, t, self.n_head, -1).transpose(1, 2) for z in (q, k, v))
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + blk["attn_proj"](y.transpose(1, 2).reshape(b, t, -1))
            x = x + blk["mlp_proj"](nn.functional.gelu(blk["c_fc"](blk["ln_2"](x))))
        return self.lm_head(self.transformer["ln_f"](x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None if stride == 1 and c_in == c_out else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    """A ResNet-style CNN (torchvision does not install with this CPU torch): stem, two stages, classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, stride=2), BasicBlock(32, 32))
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def lora_llama():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(base, cfg)


class Lit(pl.LightningModule):
    """Any of the models above on random data: next-token loss for language models, labels for the CNN."""

    def __init__(self, model: nn.Module, kind: str, lr: float = 3e-3) -> None:
        super().__init__()
        self.model, self.kind, self.lr = model, kind, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.kind == "hf":
            return self.model(input_ids=x, labels=x).loss
        out = self.model(x)
        if self.kind == "lm":
            return nn.functional.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]), x[:, 1:].reshape(-1))
        return nn.functional.cross_entropy(out, y)

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        if self.kind == "cnn":
            x, y = torch.randn(160, 3, 16, 16, generator=g), torch.randint(0, 10, (160,), generator=g)
        else:
            x = torch.randint(0, 64, (160, 16), generator=g)
            y = torch.zeros(160, dtype=torch.long)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _fit(tmp_path, module: Lit) -> tuple[NeuroMFACallback, RecordingLogger]:
    cb = NeuroMFACallback(every_n_train_steps=5)  # default settings: 10 samples x 32 neurons, scale control on
    logger = RecordingLogger()
    pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=logger, callbacks=[cb], max_steps=20,
               enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
               num_sanity_val_steps=0).fit(module)
    return cb, logger


@pytest.mark.parametrize(
    "name, build, kind",
    [("qwen2", tiny_qwen2, "hf"), ("nanogpt", NanoGPT, "lm"), ("lora_llama", lora_llama, "hf"), ("cnn", SmallResNet, "cnn")],
)
def test_twenty_step_fit_logs_finite_values_at_every_snapshot(tmp_path, name, build, kind):
    """Every snapshot (0, 5, ..., 20) is logged with finite alpha0, width, E and E_rms, at default settings."""
    torch.manual_seed(0)
    cb, logger = _fit(tmp_path, Lit(build(), kind))
    assert logger.neuromfa_steps() == STEPS
    for key in ("neuromfa/alpha0", "neuromfa/width", "neuromfa/emergence", "neuromfa/emergence_rms"):
        values = logger.values(key)
        assert sorted(values) == STEPS and all(math.isfinite(v) for v in values.values()), (key, values)
    assert logger.values("neuromfa/emergence")[0] == 0.0
    assert all(r["by_depth"] for r in cb.history)
    if name == "lora_llama":
        a0 = logger.values("neuromfa/alpha0")
        assert a0[20] != a0[0]  # the adapters train: the analysed effective weights moved
        frozen = [p for n, p in cb.monitor.layout.model.named_parameters() if "base_layer" in n]
        assert frozen and not any(p.requires_grad for p in frozen)  # ... while the base stayed frozen
    if name == "nanogpt":
        skipped = dict(cb.monitor.layout.skipped)
        assert skipped["lm_head.weight"].startswith("unembedding (tied to")


def test_lora_llama_through_the_hugging_face_trainer(tmp_path):
    """The LoRA run through `Trainer(callbacks=[NeuroMFATrainerCallback(...)])`: finite values at 0..20, moving."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = lora_llama()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": x, "labels": x} for x in torch.randint(0, 64, (160, 16), generator=g)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=8, logging_steps=100,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=3e-3)
    cb = NeuroMFATrainerCallback(every_n_steps=5)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    trainer.train()
    logged = {e["step"]: e for e in trainer.state.log_history if "neuromfa/alpha0" in e}
    assert sorted(logged) == STEPS
    assert all(math.isfinite(e["neuromfa/alpha0"]) and math.isfinite(e["neuromfa/emergence"]) for e in logged.values())
    assert logged[20]["neuromfa/alpha0"] != logged[0]["neuromfa/alpha0"]
