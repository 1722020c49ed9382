"""Every model of transformers' auto-model mappings that builds on this CPU is analysed.

Iterates over the causal-LM, masked-LM, seq2seq and image-classification mappings (``tests._zoo``: a tiny
config per model type), and for each model, as a user would call it (no ``example_input``: the model's
own ``dummy_inputs`` or inputs built from its config drive the one observation forward pass):
finite ``alpha0`` and ``width`` from ``analyze_model`` (2 samples x 32 neurons), and ``describe()`` using at
least 60 % of the weight elements of its matrices (embeddings and unembeddings aside).

The exceptions are listed here, each with its reason, and asserted exactly (a case that starts working
or stops working fails the test, so the README's count stays true).
"""

from __future__ import annotations

import math

import pytest
import torch

from neuromfa_callback import analyze_model, describe
from neuromfa_callback.architectures import resolve
from tests._zoo import ZooSkip, build, cases

#: Model types that cannot be built or run here at all (the builder's ZooSkip), with why.
NOT_BUILDABLE = {
    "gemma3n": "its vision tower needs the timm package (timm needs torchvision, which does not load with this CPU torch)",
    "timm_wrapper": "needs the timm package",
    "dinat": "needs the natten package",
    "gemma4_assistant": "a drafter: its forward needs the target model's shared key/value states",
    "gemma4_unified_assistant": "a drafter: its forward needs the target model's shared key/value states",
}
#: Model types analysed, but with less than 60 % of their weight elements, with why.
LOW_COVERAGE = {
    "dbrx": "its experts are 2-D tensors stacking every expert (E*I x H) inside one custom module",
    "xlnet": "its attention weights are raw 3-D parameters (hidden x heads x head_dim) used through einsum",
}
#: Model types whose own dummy inputs do not run (the node sets then come from structure alone): analysed
#: with an explicit ``example_input``, as a user of such a model would pass it.
NEEDS_EXAMPLE_INPUT = {
    "musicgen": "its input_ids hold batch x num_codebooks rows",
    "musicgen_melody": "its input_ids hold batch x num_codebooks rows",
}
CASES = cases()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up costs more than it saves (and 2 cores are shared)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mapping, model_type, class_name", CASES, ids=[f"{m}-{t}" for m, t, _ in CASES])
def test_every_buildable_model_is_analysed(mapping, model_type, class_name):
    try:
        model, example = build(model_type, class_name, seed=0)
    except ZooSkip as err:
        assert model_type in NOT_BUILDABLE, f"{model_type} no longer builds: {err}"
        pytest.skip(f"{model_type}: {NOT_BUILDABLE[model_type]}")
    assert model_type not in NOT_BUILDABLE, f"{model_type} builds now: remove it from NOT_BUILDABLE and the README"
    layout = resolve(model)  # one observation forward pass on the model's own dummy inputs
    if model_type in NEEDS_EXAMPLE_INPUT:
        assert layout.source.startswith("structure"), f"{model_type} runs on its dummy inputs now: {layout.source}"
        layout = resolve(model, example_input=example)
        assert layout.source == "example_input"
    assert not layout.source.startswith("structure"), layout.source
    a = analyze_model(layout, samples=2)
    assert math.isfinite(a.alpha0_mean) and math.isfinite(a.width_mean) and a.width_mean > 0
    coverage = describe(layout).coverage
    if model_type in LOW_COVERAGE:
        assert coverage < 0.6, f"{model_type} reaches {coverage:.0%} now: remove it from LOW_COVERAGE and the README"
    else:
        assert coverage >= 0.6, f"{model_type}: the network uses {coverage:.0%} of the weight elements"


def test_the_zoo_is_the_whole_mapping_and_the_exceptions_are_few():
    """The cases are every entry of the four mappings; at most 2 % of them are exceptions."""
    from tests._zoo import MAPPINGS

    assert len(CASES) == sum(len(m) for m in MAPPINGS.values()) >= 300
    assert len(NOT_BUILDABLE) + len(LOW_COVERAGE) + len(NEEDS_EXAMPLE_INPUT) <= 0.03 * len(CASES)
