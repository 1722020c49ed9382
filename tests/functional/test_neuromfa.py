"""One path for the numbers: ``neuromfa()`` == ``analyze_model()`` == the ``NeuroMFA`` Metric, per-depth
partition sums that add up to the whole network's, options validated once, and the Metric's additive state
(reset, split across "ranks")."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from neuromfa_callback import NeuroMFA, NeuroMFACallback, analyze_model, build_network, multifractal_spectrum, neuromfa
from neuromfa_callback.functional.neuromfa import NeuroMFAOptions, NeuroMFAState, _neuromfa_update
from neuromfa_callback.functional.spectrum import spectrum_from_partition
from neuromfa_callback.monitor import SnapshotMonitor
from tests.architectures._helpers import tiny_gpt_neox, tiny_llama
from tests.conftest import GOLDEN_DIR, load_golden

SPECTRUM = {"threshold": 1000.0, "min_neighbours": 3}  # tiny random models: keep many nodes
OPTIONS = {"samples": 3, "neurons_per_layer": 16, "null": 2, **SPECTRUM}


@pytest.fixture(scope="module")
def model():
    return tiny_gpt_neox(seed=11)


@pytest.fixture(scope="module")
def golden_model():
    """The authors' golden tiny GPT-NeoX (seed 0 draws the reference's sample), and its metadata."""
    from safetensors.torch import load_file
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    _, meta = load_golden("gptneox_tiny_init")
    m = GPTNeoXForCausalLM(GPTNeoXConfig(**meta["model_config"]))
    m.load_state_dict(load_file(GOLDEN_DIR / "gptneox_tiny_init.safetensors"))
    return m, meta


def _as_json(x) -> str:
    return json.dumps(x, sort_keys=True, default=lambda v: v.tolist())


def _values(a) -> dict[str, object]:
    """Every number of a ModelAnalysis: per sample, per depth, per null permutation, and the summaries."""
    out = {
        "alpha0s": a.alpha0s.tolist(),
        "widths": a.widths.tolist(),
        "taus": [s.tau.tolist() for s in a.spectra],
        "weighted_degrees": list(a.weighted_degrees),
        "scalars": a.scalars(),
        "by_depth": [(d.name, d.alpha0s.tolist(), d.widths.tolist(), list(d.n_nodes), d.to_dict()) for d in a.by_depth],
    }
    if a.null is not None:
        out["null"] = (a.null.alpha0s.tolist(), a.null.widths.tolist(), a.null.emergence(), a.null.emergences.tolist())
    return out


# ------------------------------------------------------------------- neuromfa == analyze_model == Metric
def test_functional_analyze_model_and_metric_agree_key_for_key(model):
    """The three entry points run the same update/compute: every value is bit for bit the same."""
    a = neuromfa(model, **OPTIONS)
    b = analyze_model(model, **OPTIONS)
    metric = NeuroMFA(**OPTIONS)
    metric.update(model)
    c = metric.compute_analysis()
    out = metric.compute()

    assert a.null is not None and a.null.alpha0s.shape == (3, 2) and np.isfinite(a.null.alpha0s).all()
    assert [d.name for d in a.by_depth] == ["gpt_neox.layers.0", "gpt_neox.layers.1"]
    assert _as_json(_values(a)) == _as_json(_values(b)) == _as_json(_values(c))
    assert _as_json(a.to_dict()) == _as_json(b.to_dict()) == _as_json(c.to_dict())

    # compute(): the documented keys, each equal to the analysis' value
    scalars = a.scalars()
    assert set(out) == set(scalars) | {"n_samples", "q", "tau", "alpha", "f_alpha", "depth_alpha0", "depth_alpha0_std",
                                       "depth_width", "depth_width_std"}
    assert {"alpha0_null", "alpha0_null_std", "width_null", "width_null_std", "emergence_null", "emergence_null_std"} <= set(out)
    for key, value in scalars.items():
        assert out[key].dtype == torch.float64
        assert float(out[key]) == value or (math.isnan(value) and math.isnan(float(out[key]))), key
    assert int(out["n_samples"]) == 3
    np.testing.assert_array_equal(out["tau"].numpy(), a.tau_mean)
    np.testing.assert_array_equal(out["alpha"].numpy(), a.alpha_mean)
    np.testing.assert_array_equal(out["f_alpha"].numpy(), a.f_alpha_mean)
    for key, attr in (("depth_alpha0", "alpha0_mean"), ("depth_alpha0_std", "alpha0_std"),
                      ("depth_width", "width_mean"), ("depth_width_std", "width_std")):
        assert out[key].tolist() == [getattr(d, attr) for d in a.by_depth], key


def test_without_null_there_are_no_null_values(model):
    a = neuromfa(model, samples=2, neurons_per_layer=16, **SPECTRUM)
    metric = NeuroMFA(samples=2, neurons_per_layer=16, **SPECTRUM)
    metric.update(model)
    assert a.null is None and not any(k.endswith(("_null", "_null_std")) for k in metric.compute())
    assert not any("null" in k for k in a.scalars())


def test_layout_and_networks_as_sources_give_the_same_numbers(model):
    """``update(layout)`` and ``update(networks)`` are the same path as ``update(model)``."""
    from neuromfa_callback.architectures import resolve

    ref = neuromfa(model, **OPTIONS)
    layout = resolve(model)
    assert _as_json(_values(neuromfa(layout, **OPTIONS))) == _as_json(_values(ref))
    m_layout, m_nets = NeuroMFA(**OPTIONS), NeuroMFA(**OPTIONS)
    m_layout.update(layout)
    m_nets.update([build_network(model, neurons_per_layer=16, seed=s) for s in range(3)])
    assert _as_json(_values(m_layout.compute_analysis())) == _as_json(_values(ref))
    assert _as_json(_values(m_nets.compute_analysis())) == _as_json(_values(ref))


# ------------------------------------------------------------------- depths add up to the whole network
@pytest.mark.parametrize("which", ["golden_gpt_neox", "random_llama", "random_llama_full"])
def test_sum_over_depths_of_partition_sums_is_the_whole_network(which, golden_model):
    """Partition sums are sums over nodes, so the per-depth sums add up to the whole network's: z to
    1e-12 relative, tau to 1e-12; counts, radii present and the kept-weight sum exactly (or to 1e-12)."""
    if which == "golden_gpt_neox":
        m, meta = golden_model
        net = build_network(m, neurons_per_layer=meta["layer_sample"], seed=0)
        kwargs = {"threshold": float(meta["threshold"]), "decimals": int(meta["fdigi"])}
        assert net.family == "gpt_neox"
    else:
        net = build_network(tiny_llama(seed=5), full=which.endswith("full"), neurons_per_layer=16, seed=2)
        kwargs = dict(SPECTRUM)
        assert net.family == "generic"
    assert net.n_depths == 2 and sorted(set(net.node_depth.tolist())) == [0, 1]
    parts = net.partition_by_depth(**kwargs)
    whole = net.partition(**kwargs)
    assert len(parts) == net.n_depths
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    assert all(p.n_nodes > 0 for p in parts)
    assert (total.n_nodes, total.n_edges) == (whole.n_nodes, whole.n_edges)
    np.testing.assert_array_equal(total.present, whole.present)
    np.testing.assert_allclose(total.z, whole.z, rtol=1e-12, atol=0)
    assert total.weight_sum == pytest.approx(whole.weight_sum, rel=1e-12)
    np.testing.assert_allclose(total.spectrum().tau, whole.spectrum().tau, rtol=0, atol=1e-12)
    if which == "golden_gpt_neox":  # and the whole is still the reference's spectrum
        np.testing.assert_allclose(whole.spectrum().tau, meta["tau"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(total.spectrum().tau, meta["tau"], rtol=0, atol=1e-9)


def _depth_csr(net, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR of one depth's nodes alone, cut from the whole network's CSR with ``node_depth``."""
    nodes = np.flatnonzero(net.node_depth == depth)
    lens = net.indptr[nodes + 1] - net.indptr[nodes]
    ip = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    dist = np.concatenate([net.distances[net.indptr[k] : net.indptr[k + 1]] for k in nodes])
    return ip, dist


@pytest.mark.parametrize("which", ["golden_gpt_neox", "random_llama"])
def test_each_depth_spectrum_is_the_spectrum_of_that_depths_nodes_alone(which, golden_model):
    """``DepthSummary`` spectra are ``multifractal_spectrum`` on the depth's own nodes, sample by sample."""
    if which == "golden_gpt_neox":
        m, meta = golden_model
        npl, kwargs = meta["layer_sample"], {"threshold": float(meta["threshold"])}
    else:
        m, npl, kwargs = tiny_llama(seed=5), 16, dict(SPECTRUM)
    a = neuromfa(m, samples=2, neurons_per_layer=npl, **kwargs)
    for seed in (0, 1):
        net = build_network(m, neurons_per_layer=npl, seed=seed)
        parts = net.partition_by_depth(**kwargs)
        for d in range(net.n_depths):
            blocks = [b for b in net.blocks if b.depth == d]
            ip, dist = _depth_csr(net, d)
            assert ip.size - 1 == sum(b.n_nodes for b in blocks)
            ref = multifractal_spectrum(ip, dist, **kwargs)
            got = spectrum_from_partition(parts[d])
            np.testing.assert_allclose(got.tau, ref.tau, rtol=0, atol=1e-12)
            assert (got.n_nodes, got.n_edges) == (ref.n_nodes, ref.n_edges)
            summary = a.by_depth[d].spectra[seed]
            np.testing.assert_allclose(summary.tau, ref.tau, rtol=0, atol=1e-12)
            assert a.by_depth[d].n_nodes[seed] == ref.n_nodes
            assert summary.alpha0 == pytest.approx(ref.alpha0, abs=1e-12)
            assert summary.width == pytest.approx(ref.width, abs=1e-12)
    for d in a.by_depth:
        assert d.alpha0_mean == pytest.approx(np.mean(d.alpha0s), rel=1e-15) and d.n_missing == 0 and d.flag == ""


def test_a_depth_with_too_few_nodes_is_reported_not_dropped():
    """An MLP whose last layer is too narrow for ``min_neighbours``: that depth has ``None`` spectra and a flag,
    the others and the whole network are analysed."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 4))
    a = neuromfa(mlp, samples=2, neurons_per_layer=32, threshold=1000.0)
    assert [d.name for d in a.by_depth] == ["0", "2", "4"]
    last = a.by_depth[2]
    assert last.spectra == (None, None) and last.n_missing == 2 and last.flag == "too few nodes in 2 of 2 samples"
    assert math.isnan(last.alpha0_mean) and last.n_nodes == (0, 0)
    assert all(d.n_missing == 0 for d in a.by_depth[:2]) and math.isfinite(a.alpha0_mean)


# ------------------------------------------------------------------------------------ options, once
def test_unknown_option_names_raise_type_error_naming_them(model):
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['foo', 'treshold'\]; options are \('samples'"):
        neuromfa(model, treshold=100.0, foo=1, samples=2)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['treshold'\]; options are"):
        analyze_model(model, treshold=100.0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'treshold'"):
        NeuroMFAOptions(treshold=100.0)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['treshold'\]; analysis options are"):
        SnapshotMonitor(treshold=100.0)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['treshold'\]; analysis options are"):
        NeuroMFACallback(treshold=100.0)


def test_unknown_option_name_of_the_metric_is_a_type_error():
    with pytest.raises(TypeError, match=r"treshold"):
        NeuroMFA(treshold=100.0)


BAD_OPTIONS = [
    ({"samples": 0}, ValueError, r"Expected `samples` >= 1, got 0"),
    ({"samples": 1.5}, TypeError, r"Expected `samples` to be an int, got 1.5"),
    ({"samples": True}, TypeError, r"Expected `samples` to be an int, got True"),
    ({"neurons_per_layer": 0}, ValueError, r"Expected `neurons_per_layer` >= 1, got 0"),
    ({"full": 1}, TypeError, r"Expected `full` to be a bool, got 1"),
    ({"scale": "std"}, ValueError, r"Expected `scale` to be one of \(None, 'rms'\), got 'std'"),
    ({"scale_rms": -1.0}, ValueError, r"Expected `scale_rms` > 0, got -1"),
    ({"null": -1}, ValueError, r"Expected `null` >= 0, got -1"),
    ({"null": 1.5}, TypeError, r"Expected `null` to be an int, got 1.5"),
    ({"architecture": "bert"}, ValueError, r"Expected `architecture` to be one of \('auto', 'generic', 'gpt_neox'\), got 'bert'"),
    ({"module": 3}, TypeError, r"Expected `module` to be an attribute path or a callable, got 3"),
    ({"q": [0.0, 1.0]}, ValueError, r"Expected `q` to be a 1-D grid of at least 3 values, got shape \(2,\)"),
    ({"threshold": 1.0}, ValueError, r"Expected `threshold` > 1, got 1"),
    ({"threshold": float("inf")}, ValueError, r"Expected `threshold` to be finite, got inf"),
    ({"decimals": -1}, ValueError, r"Expected `decimals` >= 0, got -1"),
    ({"min_neighbours": -1}, ValueError, r"Expected `min_neighbours` >= 0, got -1"),
    ({"backend": "tpu"}, ValueError, r"Expected `backend` to be one of \('auto', 'numpy', 'torch', 'cupy'\), got 'tpu'"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_OPTIONS, ids=[next(iter(k)) + "=" + repr(next(iter(k.values()))) for k, _, _ in BAD_OPTIONS])
def test_options_are_validated_once_naming_argument_and_value(model, kwargs, error, match):
    """The same message from every entry point (NeuroMFAOptions validates for all of them), before any work."""
    entry_points = {
        "NeuroMFAOptions": lambda: NeuroMFAOptions(**kwargs),
        "neuromfa": lambda: neuromfa(model, **kwargs),
        "analyze_model": lambda: analyze_model(model, **kwargs),
        "NeuroMFA": lambda: NeuroMFA(**kwargs),
        "SnapshotMonitor": lambda: SnapshotMonitor(**kwargs),
        "NeuroMFACallback": lambda: NeuroMFACallback(**kwargs),
    }
    for name, call in entry_points.items():
        with pytest.raises(error, match=match):
            call()
        try:
            call()
        except error as err:
            assert len(str(err)) < 300, name


def test_options_are_normalised_once():
    o = NeuroMFAOptions(samples=4, full=False, null=2, threshold=200)
    assert o.seeds == (0, 1, 2, 3) and o.threshold == 200.0 and isinstance(o.threshold, float)
    assert NeuroMFAOptions(full=True, samples=7).samples == 1  # full mode is one sample
    assert o.engine == {"q": o.q, "threshold": 200.0, "decimals": 0, "min_neighbours": 10, "backend": "auto"}
    assert set(NeuroMFAOptions.names()) == {"samples", "neurons_per_layer", "full", "scale", "scale_rms", "null",
                                            "architecture", "module", "example_input", "q", "threshold", "decimals",
                                            "min_neighbours", "backend"}
    assert NeuroMFAOptions.split({"samples": 2, "prefix": "x/"}) == ({"samples": 2}, {"prefix": "x/"})
    with pytest.raises(ValueError, match=r"Expected `null` >= 0, got -1"):
        o.replace(null=-1)  # replace() validates again
    metric = NeuroMFA(samples=4, null=2)
    assert (metric.samples, metric.null, metric.neurons_per_layer) == (4, 2, 32)  # options read as attributes


# ------------------------------------------------------------------------------ the Metric's state
def test_reset_then_update_gives_the_same_result(model):
    metric = NeuroMFA(**OPTIONS)
    metric.update(model)
    first = metric.compute_analysis()
    metric.reset()
    assert not metric.updated.any() and float(metric.z.abs().sum()) == 0.0
    with pytest.raises(ValueError, match=r"before any update"), pytest.warns(UserWarning):
        metric.compute()
    metric.update(model)
    assert _as_json(_values(metric.compute_analysis())) == _as_json(_values(first))
    # after a reset the metric takes a model with other depths, as a fresh metric would
    metric.reset()
    other = tiny_llama(seed=5)
    metric.update(other)
    fresh = NeuroMFA(**OPTIONS)
    fresh.update(other)
    assert _as_json(_values(metric.compute_analysis())) == _as_json(_values(fresh.compute_analysis()))


def test_repeated_updates_without_reset_add_nodes_not_samples(model):
    """A slot updated twice holds the union of the nodes: the same network twice doubles z, not n_samples."""
    metric = NeuroMFA(samples=2, neurons_per_layer=16, **SPECTRUM)
    metric.update(model)
    once = metric.z.clone()
    metric.update(model)
    nodes_once = metric.n_nodes.clone() / 2
    torch.testing.assert_close(metric.z, 2 * once, rtol=0, atol=0)
    assert int(metric.compute()["n_samples"]) == 2
    single = NeuroMFA(samples=2, neurons_per_layer=16, **SPECTRUM)
    single.update(model)
    torch.testing.assert_close(nodes_once, single.n_nodes, rtol=0, atol=0)
    # the union of a network with itself has the same spectrum (every z doubles: log z shifts, tau does not)
    np.testing.assert_allclose(metric.compute()["tau"].numpy(), single.compute()["tau"].numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("null", [0, 1])
def test_two_ranks_with_split_seeds_sum_to_one_metric_with_all_seeds(model, monkeypatch, null):
    """DDP without a process group: each "rank" analyses its share of the seeds (``split_samples``); the
    states, reduced with the Metric's own sum/max, equal one Metric that analysed every seed."""
    import neuromfa_callback.metric as metric_mod

    opts = {"samples": 5, "neurons_per_layer": 16, "null": null, **SPECTRUM}
    whole = NeuroMFA(split_samples=False, **opts)
    whole.update(model)
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr(metric_mod, "rank_and_world", lambda rank=rank: (rank, 2))
        m = NeuroMFA(**opts)
        assert m.local_seeds() == [[0, 2, 4], [1, 3]][rank]
        m.update(model)
        assert m.updated.tolist() == [float(s % 2 == rank) for s in range(5)]
        ranks.append(m)
    monkeypatch.setattr(metric_mod, "rank_and_world", lambda: (0, 1))
    # the reduction by hand (what the all-reduce does): sum, or max for present/updated
    reduced = NeuroMFA(split_samples=False, **opts)
    reduced.depth_names, reduced.family = ranks[0].depth_names, ranks[0].family
    fxs = {name: fx.__name__ for name, fx in reduced._reductions.items()}
    assert fxs == {name: ("dim_zero_max" if name.startswith(("present", "updated")) else "dim_zero_sum") for name in fxs}
    for name, fx in reduced._reductions.items():
        setattr(reduced, name, fx(torch.stack([getattr(r, name) for r in ranks])))
    # and torchmetrics' own merge
    ranks[0].merge_state(ranks[1])
    ref = _as_json(_values(whole.compute_analysis()))
    assert _as_json(_values(reduced.compute_analysis())) == ref
    assert _as_json(_values(ranks[0].compute_analysis())) == ref
    if null:
        assert whole.compute_analysis().null.alpha0s.shape == (5, 1)


def test_state_add_checks_its_shapes(model):
    o = NeuroMFAOptions(samples=2, neurons_per_layer=16, null=1, **SPECTRUM)
    net = build_network(model, neurons_per_layer=16, seed=0)
    state = NeuroMFAState.empty(o, net.depth_names)
    with pytest.raises(ValueError, match=r"Expected partition sums for 2 depths, got 1"):
        state.add(0, net.partition_by_depth(**o.engine)[:1], [net.null(0).partition(**o.engine)])
    with pytest.raises(ValueError, match=r"Expected 1 null partition sums, got 0"):
        state.add(0, net.partition_by_depth(**o.engine), [])
    _neuromfa_update(state, [net])
    assert state.updated.tolist() == [True, False]
    whole = state.partition(0)
    direct = net.partition(**o.engine)
    np.testing.assert_allclose(whole.z, direct.z, rtol=1e-12)
    np.testing.assert_allclose(state.partition(0, null=0).z, net.null(0).partition(**o.engine).z, rtol=0, atol=0)


def test_full_mode_with_null_is_one_sample_on_every_path(model):
    """``full=True`` (one sample, every neuron) with a permutation null: the functional and the Metric agree,
    the per-depth sums still add up, and the null keeps every operator's multiset of weights."""
    opts = {"full": True, "null": 1, **SPECTRUM}
    a = neuromfa(model, **opts)
    metric = NeuroMFA(**opts)
    metric.update(model)
    assert a.seeds == (None,) and len(a.spectra) == 1 and a.null.alpha0s.shape == (1, 1)
    assert _as_json(_values(a)) == _as_json(_values(metric.compute_analysis()))
    net = build_network(model, full=True)
    np.testing.assert_allclose(a.spectra[0].tau, net.spectrum(**SPECTRUM).tau, rtol=0, atol=1e-12)
    null = net.null(0)
    assert null.permutation == 0 and null.n_nodes == net.n_nodes and null.n_edges == net.n_edges
    np.testing.assert_array_equal(np.sort(null.distances), np.sort(net.distances))
    assert a.null.alpha0s[0, 0] == spectrum_from_partition(null.partition(**SPECTRUM)).alpha0


def test_a_metric_refuses_networks_of_other_depths(model):
    """Slots add nodes of the same depths only: a network with other depths is refused, naming both."""
    metric = NeuroMFA(samples=2, neurons_per_layer=16, **SPECTRUM)
    metric.update(model)
    with pytest.raises(ValueError, match=r"Expected networks with the depths \('gpt_neox.layers.0', 'gpt_neox.layers.1'\), got \('model.layers.0', 'model.layers.1'\)"):
        metric.update(tiny_llama(seed=5))
    assert int(metric.compute()["n_samples"]) == 2  # the refused update left the state as it was
