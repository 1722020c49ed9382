"""The torchmetrics Metric: values equal the offline analysis, states reduce by sum/max, plot() as in torchmetrics."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from neuromfa_callback import NeuroMFA, analyze_model, build_network
from tests._models import tiny_gpt_neox

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def model():
    return tiny_gpt_neox(seed=3)


def test_compute_equals_analyze_model(model):
    metric = NeuroMFA(samples=4, neurons_per_layer=16)
    metric.update(model)
    out = metric.compute()
    ref = analyze_model(model, samples=4, neurons_per_layer=16)
    assert float(out["alpha0"]) == ref.alpha0_mean and float(out["width_std"]) == ref.width_std
    assert float(out["weighted_degree"]) == pytest.approx(ref.weighted_degree, rel=1e-15)
    np.testing.assert_allclose(out["tau"].numpy(), ref.tau_mean, atol=1e-15)
    assert int(out["n_samples"]) == 4 and out["alpha"].shape == (60,) and out["q"].shape == (61,)


def test_states_from_split_samples_merge_by_sum_and_max(model):
    """Two 'ranks' with seeds {0, 2} and {1, 3} merge (torchmetrics' own reductions) into the whole."""
    whole = NeuroMFA(samples=4, neurons_per_layer=16)
    whole.update(model)
    a, b = NeuroMFA(samples=4, neurons_per_layer=16), NeuroMFA(samples=4, neurons_per_layer=16)
    a.update([build_network(model, neurons_per_layer=16, seed=s) for s in (0, 2)])
    b.update([build_network(model, neurons_per_layer=16, seed=s) for s in (1, 3)])
    a.merge_state(b)
    got, ref = a.compute(), whole.compute()
    for key in ("alpha0", "alpha0_std", "width", "width_std", "weighted_degree", "tau"):
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-14)


def test_update_with_a_network_uses_its_seed_slot(model):
    metric = NeuroMFA(samples=3, neurons_per_layer=16)
    metric.update(build_network(model, neurons_per_layer=16, seed=2))
    assert metric.updated.tolist() == [0.0, 0.0, 1.0]
    assert int(metric.compute()["n_samples"]) == 1


def test_compute_before_update_and_bad_update_raise():
    metric = NeuroMFA(samples=2)
    with pytest.raises(ValueError, match=r"before any update"), pytest.warns(UserWarning):
        metric.compute()
    with pytest.raises(TypeError, match=r"Expected `source` to be an nn.Module, a Layout, a NeuronNetwork or a sequence of them, got str"):
        metric.update(["not a network"])
    assert not metric.updated.any()  # a refused update leaves the state untouched


@pytest.mark.parametrize("bad", [None, 3])
def test_update_with_a_non_iterable_names_the_argument(bad):
    metric = NeuroMFA(samples=2)
    with pytest.raises(TypeError, match=r"Expected `source` to be an nn.Module, a Layout, a NeuronNetwork or a sequence of them, got"):
        metric.update(bad)


def test_plot_returns_figure_and_axes(model):
    metric = NeuroMFA(samples=2, neurons_per_layer=16)
    metric.update(model)
    fig, ax = metric.plot()
    assert ax in fig.axes and len(ax.get_lines()) == 1 and ax.get_xlabel() == "alpha"
    vals = [metric.compute(), metric.compute()]
    fig2, ax2 = metric.plot(vals)
    assert len(ax2.get_lines()) == 2
