"""Bad input catalogue (issue 7): one test group per row of the "what happens when" table.

| situation | direct API | during training (``NeuroMFACallback``) |
|---|---|---|
| NaN/inf anywhere in an analysed matrix | ValueError naming the parameter and the position | setup: MisconfigurationException; mid-training: one RuntimeWarning, NaN logged with an "error", training continues |
| an all-zero layer | its nodes have no edges; the spectrum comes from the other layers; ``scale="rms"``: ValueError "Cannot rescale" | raw values logged, ``*_rms`` NaN with a warning, training continues |
| no node qualifies (every layer zero, ``min_neighbours`` too large) | ValueError "no node has more than K neighbours within (1, threshold]" | RuntimeWarning, NaN logged, training continues |
| ``neurons_per_layer`` larger than a layer / < 1 | generic path: clamped to ``min(S, size)`` (no error); ``gpt_neox`` preset: ValueError naming ``neurons_per_layer``, its value and the size; < 1: ValueError | preset, larger: MisconfigurationException in setup; < 1: ValueError in ``__init__`` |
| any model with a weight operator (CNN, T5, MLP ...) | analysed (generic path) | analysed |
| a model without a weight operator (only embeddings / norms) | ValueError "... has no weight operator ...; pass `module=` ..." (< 300 chars) | MisconfigurationException in setup |
| no logger and no ``history_path`` | - | MisconfigurationException in setup; ``history_path`` alone: allowed, every snapshot in the file |
| invalid arguments | ValueError/TypeError naming the argument and the value | raised in ``NeuroMFACallback.__init__`` |
| ``backend="cupy"`` without CuPy | ImportError naming ``pip install 'neuromfa-callback[cuda12]'`` | MisconfigurationException in setup |

"In setup" is checked as: the exception comes out of ``Trainer.fit`` before any ``training_step`` ran.
Models are tiny (GPT-NeoX 64 hidden x 2 layers, or small MLPs) and runs take 4-8 optimizer steps.
"""

from __future__ import annotations

import json
import math
import re

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from neuromfa_callback import NeuroMFA, NeuroMFACallback, analyze_model, build_network, multifractal_spectrum
from neuromfa_callback._imports import cupy_available
from neuromfa_callback.history import load_history
from tests._models import RecordingLogger, TinyLM, tiny_gpt_neox

SMALL = {"samples": 1, "neurons_per_layer": 16}
NAN, INF = float("nan"), float("inf")
NAN_KEYS = ("alpha0", "width", "emergence", "alpha0_rms", "width_rms", "emergence_rms")
CUPY_HINT = re.escape("pip install 'neuromfa-callback[cuda12]'")
NO_OPERATOR = (
    r"has no weight operator \(nn\.Linear, Conv1D, nn\.Conv\*, nn\.MultiheadAttention, MoE experts, LoRA\); "
    r"pass `module=` to pick a part; weight-holding modules: Embedding, LayerNorm"
)


class CountingLM(TinyLM):
    """TinyLM that counts its training steps (0 proves an error came before training)."""

    steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


def _trainer(tmp_path, cb, logger=None, max_steps=4, extra_callbacks=()):
    return pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=RecordingLogger() if logger is None else logger,
        callbacks=[*extra_callbacks, cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )


def _setup_fails(tmp_path, cb, module, match, logger=None):
    """``fit`` raises MisconfigurationException matching ``match`` before the first training step."""
    trainer = _trainer(tmp_path, cb, logger=logger)
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(module)
    assert module.steps_run == 0 and trainer.global_step == 0
    assert cb.history == []


def _same(a, b) -> bool:
    """Equal records, NaN included (NaN != NaN in a plain comparison)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _neuromfa_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, RuntimeWarning) and str(w.message).startswith("NeuroMFA")]


def _mlp(*sizes: int) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _zero(model: torch.nn.Module, names: list[str], freeze: bool = True) -> None:
    with torch.no_grad():
        for name in names:
            p = model.get_parameter(name)
            p.zero_()
            p.requires_grad_(not freeze)


def _analysed_names(model: torch.nn.Module) -> list[str]:
    """Every analysed matrix of a GPT-NeoX (the 2-D weights of its layers)."""
    return [n for n, p in model.named_parameters() if p.ndim == 2 and ".layers." in n]


# Direct-API entry points that take a model; each must refuse bad weights the same way.
MODEL_APIS = {
    "build_network": lambda m, **kw: build_network(m, neurons_per_layer=kw.pop("neurons_per_layer", 16), **kw),
    "build_network_full": lambda m, **kw: build_network(m, full=True, **kw),
    "analyze_model": lambda m, **kw: analyze_model(m, samples=kw.pop("samples", 2), neurons_per_layer=kw.pop("neurons_per_layer", 16), **kw),
    "NeuroMFA.update": lambda m, **kw: NeuroMFA(samples=kw.pop("samples", 2), neurons_per_layer=kw.pop("neurons_per_layer", 16), **kw).update(m),
}


# ------------------------------------------------------------------ row 1: NaN or inf in a weight matrix
@pytest.mark.parametrize("api", sorted(MODEL_APIS))
@pytest.mark.parametrize("scale", [None, "rms"])
@pytest.mark.parametrize(
    ("bad", "pos"),
    [(NAN, (0, 0)), (INF, (63, 255)), (-INF, (17, 200))],  # (63, 255): the last entry of the matrix
    ids=["nan-first", "inf-last", "neginf-middle"],
)
def test_nonfinite_weight_direct_api_names_parameter_and_position(api, scale, bad, pos):
    """Anywhere in the matrix (sampled or not), with or without rescaling: the parameter and (out, in) are named."""
    model = tiny_gpt_neox()
    name = "gpt_neox.layers.1.mlp.dense_4h_to_h.weight"  # 64 x 256
    with torch.no_grad():
        model.get_parameter(name)[pos] = bad
    kwargs = {} if scale is None else {"scale": scale}
    with pytest.raises(ValueError, match=rf"Expected finite weights in `{re.escape(name)}`, got {bad} at \(out, in\) = \({pos[0]}, {pos[1]}\)"):
        MODEL_APIS[api](model, **kwargs)


@pytest.mark.parametrize("to_torch", [False, True])
@pytest.mark.parametrize("bad", [NAN, INF])
def test_nonfinite_distance_in_multifractal_spectrum_names_argument_and_index(bad, to_torch):
    distances = np.full(60, 2.0)
    distances[37] = bad
    indptr = np.arange(0, 61, 12)
    if to_torch:
        indptr, distances = torch.from_numpy(indptr), torch.from_numpy(distances)
    with pytest.raises(ValueError, match=rf"Expected finite `distances`, got {bad} at index 37"):
        multifractal_spectrum(indptr, distances, min_neighbours=2)


def test_nonfinite_weight_before_training_is_a_misconfiguration_in_setup(tmp_path):
    module = CountingLM()
    with torch.no_grad():
        module.model.gpt_neox.layers[1].attention.dense.weight[3, 5] = INF
    cb = NeuroMFACallback(**SMALL)
    _setup_fails(
        tmp_path, cb, module,
        r"cannot analyse this model: Expected finite weights in `gpt_neox\.layers\.1\.attention\.dense\.weight`, "
        r"got inf at \(out, in\) = \(3, 5\)",
    )


class _InjectNonFinite(pl.Callback):
    """Sets one weight to NaN right after optimizer step ``at_step`` (before NeuroMFA's hook sees it)."""

    def __init__(self, at_step: int, name: str, pos: tuple[int, int]) -> None:
        self.at_step, self.name, self.pos, self.done = at_step, name, pos, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step and not self.done:
            with torch.no_grad():
                pl_module.get_parameter(self.name)[self.pos] = NAN
            self.done = True


def test_nonfinite_weight_mid_training_warns_once_logs_nan_and_training_continues(tmp_path):
    """Step 6's weights hold a NaN (then the loss is NaN and the run diverges): steps 6 and 8 are NaN.

    The LightningModule holds one model (``self.model``), which the callback analyses under its own
    parameter names (``gpt_neox...``, as offline analysis of a saved checkpoint names them).
    """
    logger = RecordingLogger()
    hist = tmp_path / "h.jsonl"
    cb = NeuroMFACallback(every_n_train_steps=2, history_path=hist, **SMALL)
    inject = _InjectNonFinite(6, "model.gpt_neox.layers.0.mlp.dense_h_to_4h.weight", (3, 7))
    trainer = _trainer(tmp_path, cb, logger, max_steps=8, extra_callbacks=[inject])
    with pytest.warns(RuntimeWarning) as rec:
        trainer.fit(TinyLM())
    assert trainer.global_step == 8  # training went on to the end

    msgs = _neuromfa_warnings(rec)
    assert len(msgs) == 1, msgs  # once, although two snapshots failed
    assert "step 6" in msgs[0] and "logged as NaN" in msgs[0]
    assert "Expected finite weights in `gpt_neox.layers.0.mlp.dense_h_to_4h.weight`, got nan at (out, in) = (3, 7)" in msgs[0]

    for key in NAN_KEYS:
        values = logger.values(f"neuromfa/{key}")
        assert sorted(values) == [0, 2, 4, 6, 8], key
        assert all(math.isfinite(values[s]) for s in (0, 2, 4)), (key, values)
        assert all(math.isnan(values[s]) for s in (6, 8)), (key, values)

    records = load_history(hist)
    assert _same(records, cb.history)
    by_step = {r["step"]: r for r in records}
    assert sorted(by_step) == [0, 2, 4, 6, 8]
    assert all("error" not in by_step[s] for s in (0, 2, 4))
    assert "Expected finite weights in `gpt_neox.layers.0.mlp.dense_h_to_4h.weight`, got nan at (out, in) = (3, 7)" in by_step[6]["error"]
    assert "Expected finite weights in `" in by_step[8]["error"]
    for s in (6, 8):
        assert all(math.isnan(by_step[s][k]) for k in NAN_KEYS)
        assert "alpha" not in by_step[s]  # no spectrum for a failed snapshot


# -------------------------------------------------------------------------------- row 2: an all-zero layer
ZERO = "gpt_neox.layers.0.mlp.dense_4h_to_h.weight"


def test_all_zero_layer_has_no_edges_and_the_spectrum_comes_from_the_other_layers():
    model = tiny_gpt_neox()
    _zero(model, [ZERO])
    net = build_network(model, neurons_per_layer=16, seed=0)
    in_zero = net.node_matrix == ZERO
    assert in_zero.sum() == 32  # dense_4h_to_h's input neurons: 2S of the intermediate
    degrees = np.diff(net.indptr)
    assert (degrees[in_zero] == 0).all() and (degrees[~in_zero] > 0).all()

    # The network's spectrum equals the spectrum of the other layers' nodes alone.
    keep = np.flatnonzero(~in_zero)
    ip = np.concatenate([[0], np.cumsum(degrees[keep])])
    dist = np.concatenate([net.distances[net.indptr[k] : net.indptr[k + 1]] for k in keep])
    others = multifractal_spectrum(ip, dist)
    whole = net.spectrum()
    assert whole.n_nodes == others.n_nodes > 0
    np.testing.assert_array_equal(whole.tau, others.tau)

    a = analyze_model(model, samples=2, neurons_per_layer=16)
    assert math.isfinite(a.alpha0_mean) and math.isfinite(a.width_mean)
    metric = NeuroMFA(samples=2, neurons_per_layer=16)
    metric.update(model)
    assert float(metric.compute()["alpha0"]) == pytest.approx(a.alpha0_mean, abs=1e-12)


@pytest.mark.parametrize("api", ["build_network", "analyze_model", "NeuroMFA.update"])
def test_all_zero_layer_cannot_be_rescaled(api):
    model = tiny_gpt_neox()
    _zero(model, [ZERO])
    with pytest.raises(ValueError, match=rf"Cannot rescale `{re.escape(ZERO)}` to a given RMS \(scale='rms'\): all its weights are 0"):
        MODEL_APIS[api](model, scale="rms")


def test_all_zero_layer_during_training_logs_raw_values_and_nan_rms_with_one_warning(tmp_path):
    """The frozen zero layer is ignored in the raw spectrum; the scale-controlled one cannot run."""
    logger = RecordingLogger()
    hist = tmp_path / "h.jsonl"
    module = TinyLM()
    _zero(module.model, [ZERO])
    cb = NeuroMFACallback(every_n_train_steps=2, history_path=hist, **SMALL)
    trainer = _trainer(tmp_path, cb, logger, max_steps=4)
    with pytest.warns(RuntimeWarning) as rec:
        trainer.fit(module)
    assert trainer.global_step == 4

    msgs = _neuromfa_warnings(rec)
    assert len(msgs) == 1, msgs
    assert f"Cannot rescale `{ZERO}` to a given RMS (scale='rms'): all its weights are 0" in msgs[0]  # the model's own name
    assert "*_rms values are logged as NaN" in msgs[0]

    for key in ("alpha0", "width", "emergence", "weighted_degree"):
        values = logger.values(f"neuromfa/{key}")
        assert sorted(values) == [0, 2, 4] and all(math.isfinite(v) for v in values.values()), (key, values)
    assert logger.values("neuromfa/emergence")[0] == 0.0
    for key in ("alpha0_rms", "width_rms", "emergence_rms", "weighted_degree_rms"):
        values = logger.values(f"neuromfa/{key}")
        assert sorted(values) == [0, 2, 4] and all(math.isnan(v) for v in values.values()), (key, values)

    # The raw values are those of the direct API on the same weights.
    metric = NeuroMFA(**SMALL)
    metric.update(module)
    assert logger.values("neuromfa/alpha0")[4] == pytest.approx(float(metric.compute()["alpha0"]), abs=1e-12)
    records = load_history(hist)
    assert [r["step"] for r in records] == [0, 2, 4]
    assert all("error" not in r and len(r["alpha"]) == 60 for r in records)


# ---------------------------------------------------------------------------- row 3: no node qualifies
def _no_node(k: int) -> str:
    return rf"no node has more than {k} neighbours within \(1, threshold\]"


@pytest.mark.parametrize("api", ["analyze_model", "NeuroMFA"])
@pytest.mark.parametrize("case", ["every_layer_zero", "min_neighbours_too_large"])
def test_no_node_qualifies_direct_api(api, case):
    model = tiny_gpt_neox()
    if case == "every_layer_zero":
        _zero(model, _analysed_names(model))
        k, kwargs = 10, {}
    else:
        k, kwargs = 1000, {"min_neighbours": 1000}  # a sampled node has at most 2S = 32 out-edges
    with pytest.raises(ValueError, match=_no_node(k)):
        if api == "analyze_model":
            analyze_model(model, samples=1, neurons_per_layer=16, **kwargs)
        else:
            metric = NeuroMFA(samples=1, neurons_per_layer=16, **kwargs)
            metric.update(model)
            metric.compute()


@pytest.mark.parametrize("to_torch", [False, True])
def test_no_node_qualifies_in_multifractal_spectrum(to_torch):
    indptr, distances = np.arange(0, 5 * 3 + 1, 3), np.linspace(2.0, 9.0, 15)  # every node has 3 neighbours
    if to_torch:
        indptr, distances = torch.from_numpy(indptr), torch.from_numpy(distances)
    with pytest.raises(ValueError, match=_no_node(3)):
        multifractal_spectrum(indptr, distances, min_neighbours=3)
    assert multifractal_spectrum(indptr, distances, min_neighbours=2).n_nodes == 5  # one fewer: all qualify


@pytest.mark.parametrize("case", ["every_layer_zero", "min_neighbours_too_large"])
def test_no_node_qualifies_during_training_warns_logs_nan_and_training_continues(tmp_path, case):
    logger = RecordingLogger()
    hist = tmp_path / "h.jsonl"
    module = TinyLM()
    if case == "every_layer_zero":  # frozen, so they stay zero; scale control off (it would refuse zeros first)
        _zero(module.model, _analysed_names(module.model))
        k, kwargs = 10, {"scale_control": False}
    else:
        k, kwargs = 1000, {"min_neighbours": 1000}
    cb = NeuroMFACallback(every_n_train_steps=2, history_path=hist, **SMALL, **kwargs)
    trainer = _trainer(tmp_path, cb, logger, max_steps=4)
    with pytest.warns(RuntimeWarning) as rec:
        trainer.fit(module)
    assert trainer.global_step == 4

    msgs = _neuromfa_warnings(rec)
    assert len(msgs) == 1, msgs
    assert re.search(_no_node(k), msgs[0]) and "logged as NaN" in msgs[0]
    for key in ("alpha0", "width", "emergence"):
        values = logger.values(f"neuromfa/{key}")
        assert sorted(values) == [0, 2, 4] and all(math.isnan(v) for v in values.values()), (key, values)
    assert logger.values("neuromfa/errors") == {0: 0.0, 2: 0.0, 4: 0.0}  # bad input, not an analysis error
    records = load_history(hist)
    assert [r["step"] for r in records] == [0, 2, 4]
    assert all(re.search(_no_node(k), r["error"]) for r in records)


# ------------------------------------------------------------------------ row 4: neurons_per_layer bounds
@pytest.mark.parametrize("api", ["build_network", "analyze_model", "NeuroMFA.update"])
@pytest.mark.parametrize(
    ("model_fn", "npl", "match"),
    [
        (tiny_gpt_neox, 65, r"Expected `neurons_per_layer` <= 64 \(the hidden size of this gpt_neox model\), got 65"),
        (lambda: tiny_gpt_neox(hidden=32), 33, r"Expected `neurons_per_layer` <= 32 \(the hidden size of this gpt_neox model\), got 33"),
        (tiny_gpt_neox, 0, r"Expected `neurons_per_layer` >= 1, got 0"),
        (tiny_gpt_neox, -3, r"Expected `neurons_per_layer` >= 1, got -3"),
    ],
    ids=["gpt_neox-too-large", "gpt_neox-hidden32", "zero", "negative"],
)
def test_neurons_per_layer_out_of_range_direct_api(api, model_fn, npl, match):
    """The ``gpt_neox`` preset (the reference's sampling: S of the hidden size, 2S of the MLP's) still
    refuses an S larger than a layer, naming ``neurons_per_layer``, the size and the value."""
    with pytest.raises(ValueError, match=match):
        MODEL_APIS[api](model_fn(), neurons_per_layer=npl)


@pytest.mark.parametrize("api", ["build_network", "analyze_model", "NeuroMFA.update"])
@pytest.mark.parametrize(
    ("sizes", "npl"), [((32, 48, 8), 9), ((32, 6, 32), 7)], ids=["mlp-last-too-small", "mlp-middle-too-small"]
)
def test_neurons_per_layer_larger_than_a_layer_is_clamped_on_the_generic_path(api, sizes, npl):
    """Formerly a ValueError; the generic sampler now draws ``min(S, n_in)`` nodes and ``min(S, rows)``
    rows per operator, so a layer narrower than S is taken whole and every API analyses the model."""
    model = _mlp(*sizes)
    net = build_network(model, neurons_per_layer=npl, seed=0)
    assert [b.n_nodes for b in net.blocks] == [min(npl, n) for n in sizes[:-1]]
    assert [b.n_out for b in net.blocks] == [min(npl, n) for n in sizes[1:]]
    spectrum = {"threshold": 1000.0, "min_neighbours": 3}  # at most S = 9 out-edges per node
    ref = analyze_model(model, samples=2, neurons_per_layer=npl, **spectrum)
    assert ref.family == "generic" and ref.neurons_per_layer == npl
    got = MODEL_APIS[api](model, neurons_per_layer=npl, **({} if api == "build_network" else spectrum))
    if api == "build_network":
        np.testing.assert_array_equal(got.distances, net.distances)
        np.testing.assert_allclose(got.spectrum(**spectrum).tau, ref.spectra[0].tau, rtol=0, atol=1e-13)
    elif api == "analyze_model":
        assert got.alpha0_mean == ref.alpha0_mean and got.width_mean == ref.width_mean
    else:
        assert got is None  # NeuroMFA.update returns nothing: the metric was updated without error


def test_neurons_per_layer_larger_than_a_layer_on_the_generic_path_trains(tmp_path):
    """In the callback, ``architecture="generic"`` with S larger than the hidden size is clamped: every
    snapshot is finite, no warning."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=1, neurons_per_layer=65, architecture="generic")
    trainer = _trainer(tmp_path, cb, logger, max_steps=4)
    trainer.fit(TinyLM())
    values = logger.values("neuromfa/alpha0")
    assert sorted(values) == [0, 2, 4] and all(math.isfinite(v) for v in values.values())
    assert all("error" not in r for r in cb.history)


def test_neurons_per_layer_larger_than_a_layer_fails_in_setup(tmp_path):
    cb = NeuroMFACallback(samples=1, neurons_per_layer=65)  # accepted here: the model is not known yet
    _setup_fails(
        tmp_path, cb, CountingLM(),
        r"cannot analyse this model: Expected `neurons_per_layer` <= 64 \(the hidden size of this gpt_neox model\), got 65",
    )


@pytest.mark.parametrize("npl", [0, -1])
def test_neurons_per_layer_below_one_fails_in_callback_init(npl):
    """Earlier than setup: no model is needed to know that it is invalid."""
    with pytest.raises(ValueError, match=rf"Expected `neurons_per_layer` >= 1, got {npl}"):
        NeuroMFACallback(neurons_per_layer=npl)


# ----------------------------------------------------------------------------- row 5: any model / no operator
def _conv() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3))


def _tiny_t5():
    import transformers

    from tests.architectures._helpers import quiet_transformers

    quiet_transformers()
    torch.manual_seed(0)
    cfg = transformers.T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=32)
    return transformers.T5Model(cfg)


def _no_operator() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.LayerNorm(8))


ANALYSABLE = {"cnn": (_conv, ["0", "2"]), "t5": (_tiny_t5, ["encoder.block.0", "encoder.block.1", "decoder.block.0", "decoder.block.1"])}


@pytest.mark.parametrize("api", ["build_network", "build_network_full", "analyze_model", "NeuroMFA.update"])
@pytest.mark.parametrize("kind", sorted(ANALYSABLE))
def test_formerly_unsupported_models_are_analysed(api, kind):
    """A CNN (formerly "Unsupported model ... Conv2d") and an encoder-decoder T5 are analysed on the
    generic path: operators by type, node sets from a forward pass, one depth per block."""
    make, depths = ANALYSABLE[kind]
    model = make()
    spectrum = {"threshold": 1000.0, "min_neighbours": 3}
    out = MODEL_APIS[api](model, **({} if api.startswith("build_network") else spectrum))
    if api.startswith("build_network"):
        assert out.family == "generic" and list(out.depth_names) == depths and out.n_nodes > 0
        assert sorted(set(out.node_depth.tolist())) == list(range(len(depths)))
        assert np.isfinite(out.spectrum(**spectrum).alpha0)
    elif api == "analyze_model":
        assert out.family == "generic" and [d.name for d in out.by_depth] == depths
        assert math.isfinite(out.alpha0_mean) and math.isfinite(out.width_mean)
    ref = analyze_model(model, samples=2, neurons_per_layer=16, **spectrum)
    metric = NeuroMFA(samples=2, neurons_per_layer=16, **spectrum)
    metric.update(model)
    assert float(metric.compute()["alpha0"]) == ref.alpha0_mean


@pytest.mark.parametrize("api", ["build_network", "build_network_full", "analyze_model", "NeuroMFA.update"])
def test_model_without_weight_operator_direct_api_says_what_was_found(api):
    """Refused only when there is no weight operator: the message names what holds weights and ``module=``."""
    with pytest.raises(ValueError, match=rf"Sequential {NO_OPERATOR}") as info:
        MODEL_APIS[api](_no_operator())
    assert len(str(info.value)) < 300


class NoOperatorModule(CountingLM):
    """A LightningModule whose model holds only an embedding and a norm (the TinyLM around it is replaced)."""

    def __init__(self):
        super().__init__()
        self.model = _no_operator()

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        (x,) = batch
        return self.model(x % 10).square().mean()


class ConvModule(pl.LightningModule):
    """A small CNN trained on random images (regression onto zero)."""

    def __init__(self):
        super().__init__()
        self.model = _conv()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.model(x).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)


def test_model_without_weight_operator_fails_in_setup(tmp_path):
    cb = NeuroMFACallback(**SMALL)
    _setup_fails(tmp_path, cb, NoOperatorModule(), rf"cannot analyse this model: NoOperatorModule {NO_OPERATOR}")


def test_cnn_is_analysed_during_training(tmp_path):
    """Formerly refused in setup; now every snapshot of a CNN is finite, the baseline E is 0, and the last
    snapshot equals the direct API on the final weights."""
    logger = RecordingLogger()
    cb = NeuroMFACallback(every_n_train_steps=2, samples=2, neurons_per_layer=16, threshold=1000.0, min_neighbours=3,
                          scale_control=False, asynchronous=False)
    trainer = _trainer(tmp_path, cb, logger, max_steps=4)
    module = ConvModule()
    trainer.fit(module)
    values = logger.values("neuromfa/alpha0")
    assert sorted(values) == [0, 2, 4] and all(math.isfinite(v) for v in values.values())
    assert logger.values("neuromfa/emergence")[0] == 0.0
    assert [d["name"] for d in cb.history[-1]["by_depth"]] == ["0", "2"]  # the held model's own names
    ref = analyze_model(module, samples=2, neurons_per_layer=16, threshold=1000.0, min_neighbours=3)
    assert values[4] == ref.alpha0_mean


# ---------------------------------------------------------------------------------- row 6: no logger
def _no_logger_trainer(tmp_path, cb, max_steps=4):
    return pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, callbacks=[cb],
                      max_steps=max_steps, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False)


def test_no_logger_and_no_history_path_fails_in_setup(tmp_path):
    cb = NeuroMFACallback(**SMALL)
    module = CountingLM()
    trainer = _no_logger_trainer(tmp_path, cb)
    with pytest.raises(MisconfigurationException, match=r"no logger and `history_path` is None.*Pass a logger.*or set `history_path`"):
        trainer.fit(module)
    assert module.steps_run == 0 and trainer.global_step == 0


def test_history_path_without_logger_writes_every_snapshot(tmp_path):
    hist = tmp_path / "sub" / "h.jsonl"  # the folder is created
    cb = NeuroMFACallback(every_n_train_steps=2, history_path=hist, **SMALL)
    trainer = _no_logger_trainer(tmp_path, cb, max_steps=6)
    trainer.fit(TinyLM())
    records = load_history(hist)
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    assert _same(records, cb.history)
    assert all(math.isfinite(r["alpha0"]) and math.isfinite(r["emergence_rms"]) and "error" not in r for r in records)
    assert records[0]["emergence"] == 0.0


# ------------------------------------------------------------------------------ row 7: invalid arguments
BAD_ENGINE_ARGS = [
    ({"threshold": 1.0}, ValueError, r"Expected `threshold` > 1, got 1"),
    ({"threshold": 0.5}, ValueError, r"Expected `threshold` > 1, got 0.5"),
    ({"threshold": NAN}, ValueError, r"Expected `threshold` to be finite, got nan"),
    ({"decimals": -1}, ValueError, r"Expected `decimals` >= 0, got -1"),
    ({"decimals": 0.5}, TypeError, r"Expected `decimals` to be an int, got 0.5"),
    ({"q": [-1.0, 0.5, 1.0]}, ValueError, r"Expected `q` to contain 0 with a neighbour on each side .*got \[-1.0, 0.5, 1.0\]"),
    ({"q": [0.0, 0.5, 1.0]}, ValueError, r"Expected `q` to contain 0 with a neighbour on each side .*got \[0.0, 0.5, 1.0\]"),
    ({"backend": "tpu"}, ValueError, r"Expected `backend` to be one of \('auto', 'numpy', 'torch', 'cupy'\), got 'tpu'"),
    ({"min_neighbours": -1}, ValueError, r"Expected `min_neighbours` >= 0, got -1"),
]
BAD_SAMPLES = [
    ({"samples": 0}, ValueError, r"Expected `samples` >= 1, got 0"),
    ({"samples": "3"}, TypeError, r"Expected `samples` to be an int, got '3'"),
]
BAD_CALLBACK_ONLY = [
    ({"every_n_train_steps": 0}, ValueError, r"Expected `every_n_train_steps` >= 1, got 0"),
    ({"every_n_train_steps": 1.5}, TypeError, r"Expected `every_n_train_steps` to be an int, got 1.5"),
    ({"on_error": "x"}, ValueError, r"Expected `on_error` to be one of \('warn', 'raise'\), got 'x'"),
    ({"figure_every_n_snapshots": -1}, ValueError, r"Expected `figure_every_n_snapshots` >= 0, got -1"),
    ({"neurons_per_layer": 0}, ValueError, r"Expected `neurons_per_layer` >= 1, got 0"),
]


def _ids(cases):
    return ["-".join(f"{k}={v!r}" for k, v in kw.items()) for kw, _, _ in cases]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_ENGINE_ARGS + BAD_SAMPLES + BAD_CALLBACK_ONLY,
                         ids=_ids(BAD_ENGINE_ARGS + BAD_SAMPLES + BAD_CALLBACK_ONLY))
def test_invalid_arguments_raise_in_callback_init(kwargs, error, match):
    with pytest.raises(error, match=match):
        NeuroMFACallback(**kwargs)


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_ENGINE_ARGS + BAD_SAMPLES, ids=_ids(BAD_ENGINE_ARGS + BAD_SAMPLES))
def test_invalid_arguments_raise_in_the_metric_and_analyze_model(kwargs, error, match):
    with pytest.raises(error, match=match):
        NeuroMFA(**kwargs)
    with pytest.raises(error, match=match):
        analyze_model(_mlp(16, 16, 16), neurons_per_layer=8, **kwargs)


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_ENGINE_ARGS, ids=_ids(BAD_ENGINE_ARGS))
def test_invalid_arguments_raise_in_multifractal_spectrum_and_partition(kwargs, error, match):
    with pytest.raises(error, match=match):
        multifractal_spectrum(np.arange(0, 61, 12), np.full(60, 2.0), **kwargs)
    net = build_network(_mlp(16, 16, 16), neurons_per_layer=8)
    with pytest.raises(error, match=match):
        net.partition(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"neurons_per_layer": 0}, ValueError, r"Expected `neurons_per_layer` >= 1, got 0"),
        ({"seed": -1}, ValueError, r"Expected `seed` >= 0, got -1"),
        ({"full": "yes"}, TypeError, r"Expected `full` to be a bool, got 'yes'"),
        ({"scale": "std"}, ValueError, r"Expected `scale` to be one of \(None, 'rms'\), got 'std'"),
        ({"scale_rms": 0.0}, ValueError, r"Expected `scale_rms` > 0, got 0"),
        ({"architecture": "resnet"}, ValueError, r"Expected `architecture` to be one of .*got 'resnet'"),
    ],
)
def test_invalid_arguments_raise_in_build_network(kwargs, error, match):
    with pytest.raises(error, match=match):
        build_network(_mlp(16, 16, 16), **kwargs)


def test_unknown_keyword_of_analyze_model_is_a_type_error():
    """The unknown name is given, with the list of valid options."""
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['treshold'\]; options are \('samples', .*'threshold'"):
        analyze_model(_mlp(16, 16, 16), treshold=100.0)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['treshold'\]; analysis options are \('samples', .*'threshold'"):
        NeuroMFACallback(treshold=100.0)


# ---------------------------------------------------------------------- row 8: backend="cupy" without CuPy
@pytest.fixture
def no_cupy():
    if cupy_available():
        pytest.skip("CuPy is installed here: the 'cupy without CuPy' row cannot be exercised")


def test_cupy_backend_without_cupy_direct_api_names_the_extra(no_cupy):
    mlp = _mlp(16, 16, 16)
    with pytest.raises(ImportError, match=CUPY_HINT):
        multifractal_spectrum(np.arange(0, 61, 12), np.full(60, 2.0), backend="cupy")
    with pytest.raises(ImportError, match=CUPY_HINT):
        analyze_model(mlp, neurons_per_layer=8, backend="cupy")
    with pytest.raises(ImportError, match=CUPY_HINT):
        NeuroMFA(neurons_per_layer=8, backend="cupy").update(mlp)
    with pytest.raises(ImportError, match=CUPY_HINT):
        build_network(mlp, neurons_per_layer=8).partition(backend="cupy")


def test_cupy_backend_without_cupy_fails_in_setup_before_training(tmp_path, no_cupy):
    cb = NeuroMFACallback(backend="cupy", **SMALL)  # accepted here: CuPy is looked for in setup
    _setup_fails(tmp_path, cb, CountingLM(), rf"NeuroMFACallback\(backend='cupy'\): .*{CUPY_HINT}")
