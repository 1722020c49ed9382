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
