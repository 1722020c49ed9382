r"""Plain multilayer perceptrons: ``nn.Linear`` layers whose shapes chain (``nn.Sequential`` and alike).

The ``nn.Linear`` modules are taken in registration order (``named_modules``), which must be the
order of the forward pass: layer ``k``'s ``out_features`` equals layer ``k+1``'s ``in_features``.
Layer ``k`` (``<name>.weight``, ``n_{k+1} x n_k``) is one matrix group; with ``S = neurons_per_layer``:

| matrix | input neurons sampled | output neurons sampled |
|---|---|---|
| `<linear k>.weight` (n_{k+1} x n_k) | `s_k` = S of n_k | `s_{k+1}` = S of n_{k+1} (the next layer's inputs) |
| last `<linear>.weight` (n_out x n_last) | `s_last` | a fresh `s_out` = S of n_out |

Draws with ``numpy.random.RandomState(seed).choice(n, S, replace=False)`` in the order
``s_0, s_1, ..., s_out``: the analogue of the reference's chaining, with S in every layer (there is
no transformer intermediate here, so no ``2S``). Every layer, the last one included, is analysed:
a plain MLP has no embedding or unembedding to leave out. Norm layers (``*Norm*``) and biases are
not part of the network; any other weight-bearing module (convolution, embedding ...) makes the
model unsupported as an MLP.
"""

from __future__ import annotations

import numpy as np
import torch

from neuromfa_callback.architectures._layout import Layout, MatrixGroup, Selection

__all__ = ["build_layout", "is_mlp", "linear_layers"]


def linear_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The ``nn.Linear`` modules of ``model`` in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def _foreign_weights(model: torch.nn.Module) -> list[str]:
    """Weight-bearing modules that are neither ``nn.Linear`` nor norms."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or "Norm" in type(mod).__name__:
            continue
        if any(True for _ in mod.parameters(recurse=False)):
            out.append(f"{name or '<root>'} ({type(mod).__name__})")
    return out


def chain_break(model: torch.nn.Module) -> str | None:
    """Why ``model`` is not a chain of ``nn.Linear`` layers, or ``None`` if it is."""
    lins = linear_layers(model)
    if not lins:
        return "no nn.Linear layer"
    foreign = _foreign_weights(model)
    if foreign:
        return f"weight-bearing modules other than nn.Linear and norms: {', '.join(foreign[:5])}"
    for (n0, m0), (n1, m1) in zip(lins, lins[1:]):
        if m0.out_features != m1.in_features:
            return (
                f"the nn.Linear layers do not chain: {n0} ({m0.in_features}->{m0.out_features}) "
                f"then {n1} ({m1.in_features}->{m1.out_features})"
            )
    return None


def is_mlp(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a chain of ``nn.Linear`` layers (plus norms and parameter-free modules).

    Example:
        >>> import torch
        >>> is_mlp(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)))
        True
        >>> is_mlp(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(4, 2)))
        False
    """
    return chain_break(model) is None


def _sampler(sizes: list[int]):
    def sample(neurons_per_layer: int, rng: np.random.RandomState) -> list[Selection]:
        for k, n in enumerate(sizes):
            if neurons_per_layer > n:
                raise ValueError(
                    f"Expected `neurons_per_layer` <= {n} (the width of MLP layer boundary {k}), "
                    f"got {neurons_per_layer}"
                )
        draws = [rng.choice(n, neurons_per_layer, replace=False) for n in sizes]
        return [Selection(draws[k], (draws[k + 1],)) for k in range(len(sizes) - 1)]

    return sample


def build_layout(model: torch.nn.Module, path: str = "") -> Layout:
    """Map a chain of ``nn.Linear`` layers onto one matrix group per layer.

    Raises:
        ValueError: the model is not such a chain (the message says why).
    """
    why = chain_break(model)
    if why is not None:
        raise ValueError(f"mlp: {why}")
    lins = linear_layers(model)
    groups = tuple(
        MatrixGroup(names=(f"{n}.weight" if n else "weight",), layer=k, role="linear", weights=(m.weight.detach(),))
        for k, (n, m) in enumerate(lins)
    )
    sizes = [lins[0][1].in_features] + [m.out_features for _, m in lins]
    return Layout("mlp", path, model, groups, _sampler(sizes))
