"""Sharded strategies: ``ModelParallelStrategy`` (FSDP2 ``fully_shard``, or tensor parallelism) on two CPU
processes, analysed exactly like the unsharded model; FSDP1/DeepSpeed/XLA FSDP refused in setup.

FSDP1 (Lightning ``FSDPStrategy``) cannot run on CPU here: Lightning requires a CUDA accelerator
for it and torch's ``FullyShardedDataParallel`` refuses to start without one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from neuromfa_callback import NeuroMFA, NeuroMFACallback
from neuromfa_callback.history import load_history
from tests._models import TinyLM

SCRIPT = Path(__file__).with_name("fsdp_script.py")


def _expected(module: torch.nn.Module, scale):
    metric = NeuroMFA(samples=4, neurons_per_layer=16, scale=scale)
    metric.update(module)
    return metric.compute()


def _assert_matches(record, module) -> None:
    for scale, suffix in ((None, ""), ("rms", "_rms")):
        out = _expected(module, scale)
        for key in ("alpha0", "width", "alpha0_std"):
            name = key.replace("alpha0", "alpha0" + suffix).replace("width", "width" + suffix)
            assert record[name] == pytest.approx(float(out[key]), abs=1e-12), name


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["fsdp", "tp"])
def test_model_parallel_two_cpu_processes_match_unsharded_model(tmp_path, mode):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(SCRIPT), str(tmp_path), "4", mode]
    # Its own session, so that a hang (a rank waiting on a collective the other never joins) kills both ranks.
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=270)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the {mode} run hung (killed after 270 s):\n{stdout[-2000:]}{stderr[-3000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert (tmp_path / "sharded.txt").read_text() == "True"  # the weights really were DTensor shards

    history = load_history(tmp_path / "history.jsonl")
    assert [r["step"] for r in history] == [0, 4, 8]
    assert all(r["errors"] == 0 for r in history)

    # step 0: the initial weights (TinyLM is seeded), analysed unsharded in this process
    _assert_matches(history[0], TinyLM())
    # step 8: the final weights, gathered into one state dict by the strategy
    final = TinyLM()
    state = torch.load(tmp_path / "final.ckpt", weights_only=False)["state_dict"]
    final.load_state_dict(state)
    trained = final.model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight
    assert not torch.equal(trained, TinyLM().model.gpt_neox.layers[0].mlp.dense_h_to_4h.weight)
    _assert_matches(history[-1], final)


@pytest.mark.parametrize(
    ("name", "words"),
    [("FSDPStrategy", "FSDP1"), ("DeepSpeedStrategy", "DeepSpeed"), ("XLAFSDPStrategy", "XLA FSDP")],
)
def test_ungatherable_sharded_strategies_refused_in_setup(tmp_path, name, words):
    # Lightning itself refuses FSDPStrategy on CPU before any callback runs, and DeepSpeed is not
    # installed: the callback's own check is exercised with a stand-in whose class has the name.
    if name == "FSDPStrategy":
        from lightning.pytorch.strategies import FSDPStrategy

        strategy = FSDPStrategy()  # constructing it starts nothing
    else:
        strategy = type(name, (), {})()
    cb = NeuroMFACallback(history_path=tmp_path / "h.jsonl")
    trainer = SimpleNamespace(strategy=strategy, loggers=[])
    with pytest.raises(MisconfigurationException) as info:
        cb.setup(trainer, TinyLM(), "fit")
    msg = str(info.value)
    assert name in msg and words in msg
    assert "DDP" in msg and "ModelParallelStrategy" in msg and "neuromfa analyze" in msg


def test_fsdp1_needs_cuda_in_lightning():
    """Why FSDP1 is not run here: Lightning refuses it on CPU (the GPU check is described in the module docstring)."""
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import FSDPStrategy

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        pl.Trainer(accelerator="cpu", devices=2, strategy=FSDPStrategy(), logger=False)
