"""Checkpoint loading (:mod:`neuromfa_callback.checkpoints`): complete, sharded, and unreadable checkpoints.

Checkpoints are tiny models saved from configs into temporary folders (the architecture tests'
GPT-NeoX: hidden 64, 2 layers, intermediate 256, vocabulary 64; no download). Every refusal is a
:class:`CheckpointError` whose message is one line holding the path and the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neuromfa_callback.checkpoints import CheckpointError, load_model, load_state_dict_safely
from tests._models import tiny_gpt_neox

DROPPED = "gpt_neox.layers.1.mlp.dense_h_to_4h.weight"


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(loaded: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    got = loaded.state_dict()
    assert set(got) == set(reference)
    for key, value in reference.items():
        assert torch.equal(got[key], value), key


def _one_line_error(excinfo: pytest.ExceptionInfo, path: Path, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for needle in needles:
        assert re.search(needle, msg), (needle, msg)
    return msg


@pytest.fixture(scope="module")
def neox(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A saved tiny GPT-NeoX folder and the state dict it was saved from."""
    model = tiny_gpt_neox(seed=3)
    folder = tmp_path_factory.mktemp("neox") / "model"
    model.save_pretrained(folder)
    return folder, _state(model)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, neox) -> Path:
    """The same model saved in shards of at most 100 KB (several ``model-0000i-of-0000n.safetensors``)."""
    folder = tmp_path_factory.mktemp("sharded") / "model"
    model = tiny_gpt_neox(seed=3)
    model.save_pretrained(folder, max_shard_size="100KB")
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------- complete checkpoints
def test_folder_loads_every_weight(neox):
    """A saved folder loads back exactly, the output embedding included (saved as ``embed_out`` by transformers 5)."""
    folder, reference = neox
    _assert_same_weights(load_model(folder), reference)


def test_missing_weight_matrix_is_refused(neox, tmp_path):
    """A folder whose file lacks one analysed matrix is refused, naming the matrix; nothing is half-initialised."""
    folder = _copy(neox[0], tmp_path / "model")
    state = load_file(folder / "model.safetensors")
    del state[DROPPED]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    msg = _one_line_error(excinfo, folder, "missing", re.escape(DROPPED), "weight matri")
    assert "dense_h_to_4h.bias" not in msg  # only what is missing is named


def test_missing_vector_parameter_is_refused_and_said_to_be_one(neox, tmp_path):
    """A missing 1-D parameter (a LayerNorm bias) is refused too, and listed apart from weight matrices."""
    folder = _copy(neox[0], tmp_path / "model")
    state = load_file(folder / "model.safetensors")
    del state["gpt_neox.final_layer_norm.bias"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    msg = _one_line_error(excinfo, folder, "missing", re.escape("gpt_neox.final_layer_norm.bias"))
    assert "weight matri" not in msg


def test_bare_safetensors_missing_matrix_is_refused(neox, tmp_path):
    """A bare .safetensors file (config beside it) lacking a matrix is refused the same way."""
    state = load_file(neox[0] / "model.safetensors")
    del state[DROPPED]
    path = tmp_path / "weights.safetensors"
    save_file(state, path, metadata={"format": "pt"})
    shutil.copy(neox[0] / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path)
    _one_line_error(excinfo, path, "missing", re.escape(DROPPED))


def test_tied_output_embedding_is_not_missing(tmp_path):
    """GPT-2 ties lm_head to the input embedding: the saved file omits it, and loading accepts that (same tensor)."""
    from tests.architectures._helpers import tiny_gpt2

    model = tiny_gpt2(seed=1)
    model.save_pretrained(tmp_path / "gpt2")
    assert "lm_head.weight" not in load_file(tmp_path / "gpt2" / "model.safetensors")
    loaded = load_model(tmp_path / "gpt2")
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert torch.equal(loaded.lm_head.weight, model.transformer.wte.weight)


class _TiedPair(torch.nn.Module):
    """Two linear layers sharing one weight (tied by identity), plus a non-persistent buffer."""

    def __init__(self, n: int = 8) -> None:
        super().__init__()
        self.a = torch.nn.Linear(n, n, bias=False)
        self.b = torch.nn.Linear(n, n, bias=False)
        self.b.weight = self.a.weight
        self.c = torch.nn.Linear(n, 4)
        self.register_buffer("scratch", torch.zeros(3), persistent=False)


def test_lightning_style_ckpt_ties_and_missing(tmp_path):
    """.ckpt: a tied weight saved under one name loads into both; a missing matrix is refused by name."""
    torch.manual_seed(0)
    src = _TiedPair()
    state = {k: v for k, v in src.state_dict().items() if k != "b.weight"}
    ok = tmp_path / "tied.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"n": 8}}, ok)
    loaded = load_model(ok, model_class="tests.test_checkpoints:_TiedPair")
    assert loaded.b.weight is loaded.a.weight and torch.equal(loaded.b.weight, src.a.weight)
    assert torch.equal(loaded.c.weight, src.c.weight)

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "c.weight"}, "hyper_parameters": {"n": 8}}, bad)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(bad, model_class="tests.test_checkpoints:_TiedPair")
    msg = _one_line_error(excinfo, bad, "missing", r"c\.weight")
    assert "scratch" not in msg and "a.weight" not in msg


def test_shape_mismatch_names_the_tensor(neox, tmp_path):
    """A config that does not fit the weights: refused, naming a tensor and both shapes."""
    folder = _copy(neox[0], tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    _one_line_error(excinfo, folder, r"mlp\.dense_(h_to_4h|4h_to_h)\.weight has shape \((256, 64|64, 256)\) in the "
                    r"checkpoint, \((128, 64|64, 128)\) in the model", r"\+5 more")


def test_config_architectures_name_only_model_classes(neox, tmp_path):
    """``architectures`` comes from an untrusted file: a name that is not a model class (here the
    ``transformers.pipeline`` function) is not called; the model comes from the config's model type."""
    folder = _copy(neox[0], tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["pipeline"]
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_model(folder)
    assert type(model).__name__ == "GPTNeoXModel"
    assert torch.equal(model.layers[1].mlp.dense_h_to_4h.weight, neox[1][DROPPED])


# ---------------------------------------------------------------------------------- sharded
def test_sharded_folder_loads_through_the_index(sharded, neox):
    """save_pretrained(max_shard_size=...) shards load back exactly."""
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and all((sharded / s).is_file() for s in shards)
    _assert_same_weights(load_model(sharded), neox[1])


def test_sharded_folder_ignores_files_not_in_the_index(sharded, neox, tmp_path):
    """A stray .safetensors beside the shards (an old export) is not read: the index says which files count."""
    folder = _copy(sharded, tmp_path / "model")
    save_file({DROPPED: torch.zeros_like(neox[1][DROPPED])}, folder / "zz-stale.safetensors")
    _assert_same_weights(load_model(folder), neox[1])


def test_missing_shard_is_refused(sharded, tmp_path):
    """A shard listed in the index but absent: one line naming the shard and the index."""
    folder = _copy(sharded, tmp_path / "model")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    gone = sorted(set(index["weight_map"].values()))[1]
    (folder / gone).unlink()
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    _one_line_error(excinfo, folder, re.escape(gone), r"model\.safetensors\.index\.json", "missing")


def test_shard_without_a_listed_tensor_is_refused(sharded, tmp_path):
    """A shard that lacks a tensor the index assigns to it is refused, naming the tensor."""
    folder = _copy(sharded, tmp_path / "model")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = index["weight_map"][DROPPED]
    state = load_file(folder / shard)
    del state[DROPPED]
    save_file(state, folder / shard, metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    _one_line_error(excinfo, folder, re.escape(DROPPED), re.escape(shard))


def test_index_pointing_outside_the_folder_is_refused(sharded, tmp_path):
    """An index naming a shard outside its folder (``../x``) is refused: an untrusted index reads nothing else."""
    folder = _copy(sharded, tmp_path / "model")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"][DROPPED] = "../outside.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    _one_line_error(excinfo, folder, re.escape("../outside.safetensors"))


def test_shards_without_index_must_be_complete(sharded, tmp_path):
    """Shards named model-0000i-of-0000n without their index: all n must be there."""
    folder = _copy(sharded, tmp_path / "model")
    (folder / "model.safetensors.index.json").unlink()
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    shards[0].unlink()
    with pytest.raises(CheckpointError) as excinfo:
        load_model(folder)
    _one_line_error(excinfo, folder, re.escape(shards[0].name), "missing")


# ------------------------------------------------------------------------------- unreadable
def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _text(path: Path) -> Path:
    path.write_text("step,loss\n0,5.5\n1,5.1\n")
    return path


def _truncated(src: Path, path: Path) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _torch_file(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _zip_not_torch(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "not a checkpoint")
    return path


def _folder_with(folder: Path, config: Path | None, files: dict[str, bytes]) -> Path:
    folder.mkdir()
    if config is not None:
        shutil.copy(config, folder / "config.json")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _unreadable(kind: str, tmp: Path, neox_folder: Path) -> tuple[Path, str]:
    """(path, a regex the message must match) for one kind of unreadable checkpoint."""
    cfg = neox_folder / "config.json"
    weights = neox_folder / "model.safetensors"
    shutil.copy(cfg, tmp / "config.json")  # bare files find their config beside them
    ckpt = _torch_file(tmp / "ok.pt", {"state_dict": {"w": torch.zeros(3)}})
    cases = {
        "text .ckpt": lambda: (_text(tmp / "x.ckpt"), "text file"),
        "text .safetensors": lambda: (_text(tmp / "x.safetensors"), "text file"),
        "text .bin in a folder": lambda: (
            _folder_with(tmp / "f", cfg, {"pytorch_model.bin": b"weights go here\n"}), r"pytorch_model\.bin.*text file"),
        "truncated .safetensors": lambda: (_truncated(weights, tmp / "t.safetensors"), "safetensors"),
        "truncated .ckpt": lambda: (_truncated(ckpt, tmp / "t.ckpt"), "PyTorch checkpoint"),
        "empty .ckpt": lambda: (_bytes(tmp / "e.ckpt", b""), "empty"),
        "safetensors named .ckpt": lambda: (
            Path(shutil.copy(weights, tmp / "w.ckpt")), r"a safetensors file, not a PyTorch checkpoint"),
        "pytorch file named .safetensors": lambda: (
            Path(shutil.copy(ckpt, tmp / "w.safetensors")), r"a PyTorch checkpoint, not a safetensors file"),
        "PNG named .ckpt": lambda: (_bytes(tmp / "p.ckpt", b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a PyTorch checkpoint"),
        "zip that is not torch": lambda: (_zip_not_torch(tmp / "z.ckpt"), "PyTorch checkpoint"),
        "list .ckpt": lambda: (_torch_file(tmp / "l.ckpt", [1, 2, 3]), "list"),
        "non-tensor values": lambda: (_torch_file(tmp / "n.ckpt", {"state_dict": {"model.w": 3}}), "not a tensor"),
        "empty folder": lambda: (_folder_with(tmp / "empty", None, {}), "config.json"),
        "folder without weights": lambda: (_folder_with(tmp / "noweights", cfg, {}), "weights"),
        "config.json not JSON": lambda: (
            _folder_with(tmp / "badcfg", None, {"config.json": b"{oops", "model.safetensors": weights.read_bytes()}),
            "config"),
        "index not JSON": lambda: (
            _folder_with(tmp / "badindex", cfg, {"model.safetensors.index.json": b"[1, 2"}),
            r"model\.safetensors\.index\.json is not a readable shard index"),
        "unknown suffix": lambda: (_text(tmp / "weights.txt"), "unknown checkpoint kind"),
    }
    return cases[kind]()


UNREADABLE = [
    "text .ckpt", "text .safetensors", "text .bin in a folder", "truncated .safetensors", "truncated .ckpt",
    "empty .ckpt", "safetensors named .ckpt", "pytorch file named .safetensors", "PNG named .ckpt",
    "zip that is not torch", "list .ckpt", "non-tensor values", "empty folder", "folder without weights",
    "config.json not JSON", "index not JSON", "unknown suffix",
]


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_checkpoint_is_one_line(kind, tmp_path, neox):
    """Any unreadable file or folder raises CheckpointError: one line, the path, and why."""
    path, reason = _unreadable(kind, tmp_path, neox[0])
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path, model_class="tests.test_checkpoints:_TiedPair")
    _one_line_error(excinfo, path, reason)


def test_unsafe_pickle_still_refused_as_unsafe(tmp_path):
    """A pickle with a global other than tensors is refused as unsafe (not as 'unreadable'), and nothing runs."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = _torch_file(tmp_path / "evil.pt", {"x": Payload()})
    with pytest.raises(CheckpointError) as excinfo:
        load_state_dict_safely(path)
    _one_line_error(excinfo, path, "refused", "pickled objects other than weights")
    assert not marker.exists()


def test_pickle_checkpoints_are_refused_on_a_torch_with_known_weights_only_bypasses(tmp_path, monkeypatch):
    """torch < 2.10: torch.load(weights_only=True) has published bypasses, so a .ckpt is refused before any parsing."""
    import neuromfa_callback.checkpoints as ck

    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2, 2)}}, path)
    assert "state_dict" in ck.load_state_dict_safely(path)
    monkeypatch.setattr(ck, "_torch_version", lambda: (2, 9))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not run"))
    with pytest.raises(ck.CheckpointError, match=r"refused to load a pickle-based checkpoint with torch .*CVE-2026-24747"):
        ck.load_state_dict_safely(path)
