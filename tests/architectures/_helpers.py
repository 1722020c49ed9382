"""Tiny models of every family and independent oracles for the networks built from them."""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback.functional.spectrum import partition_sums

SPECTRUM = {"threshold": 1000.0, "min_neighbours": 3}  # tiny random models: keep many nodes


def quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def tiny_gpt_neox(seed: int = 0, hidden: int = 64, layers: int = 2):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=64,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=32,
    )
    return GPTNeoXForCausalLM(cfg)


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    quiet_transformers()
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_embd=48, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0)
    )


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(cfg)


def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    quiet_transformers()
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=32,
    )
    return BertModel(cfg)


def tiny_mlp(seed: int = 0, sizes: tuple[int, ...] = (24, 40, 32, 16)) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.GELU()]
    return torch.nn.Sequential(*layers[:-1])


def view(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The parameter as ``out x in``, from the model itself (GPT-2 Conv1D transposed)."""
    w = model.get_parameter(name).detach()
    owner = model.get_submodule(name.rsplit(".", 1)[0])
    return w.t() if type(owner).__name__ == "Conv1D" else w


def oracle_node_lists(model: torch.nn.Module, net) -> list[np.ndarray]:
    """Per node, the distances 1/|w| read straight from the model's parameters (zeros dropped)."""
    out = []
    for block in net.blocks:
        mats = [view(model, n).double() * s for n, s in zip(block.names, block.scales)]
        for col in block.columns:
            ws = [m[:, col] if r is None else m[torch.as_tensor(r), col] for m, r in zip(mats, block.rows)]
            w = torch.cat(ws).abs().numpy()
            out.append(1.0 / w[w != 0])
    return out


def assert_csr_matches_oracle(model: torch.nn.Module, net) -> None:
    lists = oracle_node_lists(model, net)
    assert net.indptr.tolist() == np.cumsum([0] + [len(x) for x in lists]).tolist()
    np.testing.assert_array_equal(net.distances, np.concatenate(lists))


def assert_partition_matches_csr(net, **kwargs) -> None:
    kwargs = {**SPECTRUM, **kwargs}
    streamed = net.partition(**kwargs)
    whole = partition_sums(net.indptr, net.distances, **kwargs)
    assert streamed.n_nodes == whole.n_nodes > 0
    assert streamed.n_edges == whole.n_edges
    np.testing.assert_array_equal(streamed.present, whole.present)
    np.testing.assert_allclose(streamed.z, whole.z, rtol=1e-12, atol=0)
    np.testing.assert_allclose(streamed.weight_sum, whole.weight_sum, rtol=1e-12)
    np.testing.assert_allclose(streamed.spectrum().tau, whole.spectrum().tau, rtol=0, atol=1e-12)


def zero_some(model: torch.nn.Module, names: list[str], count: int = 7, seed: int = 0) -> int:
    """Set ``count`` entries of each named parameter to exactly 0; returns how many were nonzero."""
    g = torch.Generator().manual_seed(seed)
    zeroed = 0
    with torch.no_grad():
        for n in names:
            p = model.get_parameter(n)
            idx = torch.randperm(p.numel(), generator=g)[:count]
            zeroed += int(torch.count_nonzero(p.view(-1)[idx]))
            p.view(-1)[idx] = 0.0
    return zeroed


def check_full_mode(model: torch.nn.Module, expected_names: list[str]) -> None:
    """Full mode: the used matrices, n_edges (exact zeros excluded), CSR and partition."""
    from neuromfa_callback import build_network

    zero_some(model, expected_names)
    net = build_network(model, full=True)
    assert [n for b in net.blocks for n in b.names] == expected_names
    total = sum(view(model, n).numel() for n in expected_names)
    zeros = sum(int((view(model, n) == 0).sum()) for n in expected_names)
    assert zeros >= 7 * len(expected_names)
    assert net.n_edges == total - zeros == net.distances.size
    assert net.n_nodes == sum(b.n_nodes for b in net.blocks) == net.indptr.size - 1
    assert_csr_matches_oracle(model, net)
    assert_partition_matches_csr(net)


# ------------------------------------------------------------------------------------------------
# More tiny models (hidden 32-64, 2 layers, vocab 64), built from configs or by hand.


def tiny_mixtral(seed: int = 0, hidden: int = 64, intermediate: int = 48, layers: int = 2, experts: int = 4):
    """transformers' Mixtral: experts stored as 3-D ``gate_up_proj`` (E x 2I x H), ``down_proj`` (E x H x I)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    cfg = MixtralConfig(
        vocab_size=64,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=experts,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    return MixtralForCausalLM(cfg)


def tiny_t5(seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    quiet_transformers()
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
    return T5ForConditionalGeneration(cfg)


def lightning_transformer(seed: int = 0):
    """Lightning's demo ``nn.Transformer`` language model (encoder-decoder of ``nn.MultiheadAttention``)."""
    from lightning.pytorch.demos import Transformer

    torch.manual_seed(seed)
    return Transformer(vocab_size=64, ninp=32, nhead=2, nhid=48, nlayers=2)


class BasicBlock(torch.nn.Module):
    """A ResNet basic block (two 3x3 convs, optional 1x1 downsample)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(torch.nn.Module):
    """torchvision's ResNet layout in miniature: stem ``conv1``, ``layer1``/``layer2`` of two blocks, ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.layer1 = torch.nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = torch.nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


def tiny_resnet(seed: int = 0) -> TinyResNet:
    torch.manual_seed(seed)
    return TinyResNet()


class GluExperts(torch.nn.Module):
    """Hand-written MoE experts stored as 3-D parameters (no nn.Linear inside).

    ``x_at_w=False``: ``gate_up`` is ``E x 2I x H`` and ``down`` ``E x H x I``, applied with ``F.linear``
    (Mixtral). ``x_at_w=True``: ``gate_up`` is ``E x H x 2I`` and ``down`` ``E x I x H``, applied as
    ``x @ W`` (GPT-OSS, Llama 4).
    """

    def __init__(self, experts: int, hidden: int, inter: int, x_at_w: bool) -> None:
        super().__init__()
        self.x_at_w = x_at_w
        shapes = ((hidden, 2 * inter), (inter, hidden)) if x_at_w else ((2 * inter, hidden), (hidden, inter))
        self.gate_up = torch.nn.Parameter(torch.randn(experts, *shapes[0]) * 0.05)
        self.down = torch.nn.Parameter(torch.randn(experts, *shapes[1]) * 0.05)

    def _apply(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w if self.x_at_w else torch.nn.functional.linear(x, w)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for e in range(self.gate_up.shape[0]):
            gate, up = self._apply(x, self.gate_up[e]).chunk(2, dim=-1)
            out = out + weights[..., e : e + 1] * self._apply(torch.nn.functional.silu(gate) * up, self.down[e])
        return out


class MoeBlock(torch.nn.Module):
    """A router (nn.Linear) and :class:`GluExperts` reading the same normalised hidden state."""

    def __init__(self, hidden: int = 16, inter: int = 24, experts: int = 3, x_at_w: bool = False) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)
        self.router = torch.nn.Linear(hidden, experts, bias=False)
        self.experts = GluExperts(experts, hidden, inter, x_at_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.experts(h, torch.softmax(self.router(h), dim=-1))


class MoeStack(torch.nn.Module):
    """``layers.N``: attention-free blocks of one ``nn.Linear`` mixer and one :class:`MoeBlock` each."""

    def __init__(
        self, layers: int = 2, hidden: int = 16, inter: int = 24, experts: int = 3, x_at_w: bool = False
    ) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {"mix": torch.nn.Linear(hidden, hidden), "moe": MoeBlock(hidden, inter, experts, x_at_w)}
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer["moe"](x + layer["mix"](x))
        return x


class NanoGPT(torch.nn.Module):
    """nanoGPT's weight tying: ``self.lm_head.weight = self.wte.weight`` (no Hugging Face config)."""

    def __init__(self, vocab: int = 64, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, hidden)
        self.wpe = torch.nn.Embedding(16, hidden)
        self.h = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, 2 * hidden), torch.nn.GELU(),
                                torch.nn.Linear(2 * hidden, hidden))
            for _ in range(layers)
        )
        self.ln_f = torch.nn.LayerNorm(hidden)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[-1]))
        for block in self.h:
            x = x + block(x)
        return self.lm_head(self.ln_f(x))


def tiny_nanogpt(seed: int = 0) -> NanoGPT:
    torch.manual_seed(seed)
    return NanoGPT()


# ------------------------------------------------------------------------------------------------
# Independent oracles, read straight from the parameters.


def conv_oracle(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The documented convolution rule, element by element: ``(C_out/g * taps) x C_in``.

    Column ``j`` (input channel ``j``, in group ``g = j // (C_in/g)``) holds, at row
    ``o * taps + t``, the weight from ``j`` to output channel ``g * C_out/g + o`` at kernel tap ``t``
    (taps in row-major order over the kernel).
    """
    w = weight.detach()
    c_out, in_g = int(w.shape[0]), int(w.shape[1])
    out_g, taps = c_out // groups, int(np.prod(w.shape[2:]))
    out = torch.empty(out_g * taps, in_g * groups, dtype=w.dtype)
    for j in range(in_g * groups):
        g, local = divmod(j, in_g)
        for o in range(out_g):
            kernel = w[g * out_g + o, local].flatten()
            for t in range(taps):
                out[o * taps + t, j] = kernel[t]
    return out


def conv_transpose_oracle(weight: torch.Tensor) -> torch.Tensor:
    """``nn.ConvTranspose*`` (weight ``C_in x C_out/g x k...``): column ``j`` is ``W[j]`` flattened."""
    w = weight.detach()
    return torch.stack([w[j].flatten() for j in range(w.shape[0])], dim=1)


def randomize_lora(model: torch.nn.Module, seed: int = 1, std: float = 0.05) -> None:
    """Give every LoRA A/B (and DoRA magnitude) a seeded random value, so the adapters change the weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                noise = torch.randn(p.shape, generator=g) * std
                p.copy_(p + noise if "magnitude" in name else noise)


def node_set_names(layout) -> list[list[str]]:
    """The operator names of every node set, in order."""
    return [list(ns.names) for ns in layout.node_sets]
