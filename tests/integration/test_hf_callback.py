"""The Hugging Face Trainer twin, used the way the Trainer's docs show: ``Trainer(callbacks=[...])``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from neuromfa_callback import NeuroMFA, NeuroMFATrainerCallback
from neuromfa_callback.history import load_history
from tests._models import tiny_gpt_neox


class _Recorder(TrainerCallback):
    """Stands in for a ``report_to`` integration: records what every ``on_log`` receives, with the step."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs or {})))


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=128):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 64, (n, 16), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=4, logging_steps=100,
                report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, learning_rate=3e-3, seed=0)
    return TrainingArguments(**{**base, **kw})


@pytest.mark.parametrize("asynchronous", [True, False])
def test_values_reach_log_history_and_integrations_at_their_own_steps(tmp_path, asynchronous):
    """Standard `callbacks=[...]`, 20 steps, every 5: log_history and every on_log get steps 0, 5, 10, 15, 20."""
    model = tiny_gpt_neox()
    cb = NeuroMFATrainerCallback(every_n_steps=5, samples=2, neurons_per_layer=16, history_path=tmp_path / "h.jsonl",
                                 asynchronous=asynchronous)
    rec = _Recorder()
    trainer = Trainer(model=model, args=_args(tmp_path), train_dataset=_Tokens(), callbacks=[cb, rec])
    trainer.train()

    in_history = {e["step"]: e for e in trainer.state.log_history if "neuromfa/alpha0" in e}
    assert sorted(in_history) == [0, 5, 10, 15, 20]
    assert all(math.isfinite(e["neuromfa/alpha0"]) for e in in_history.values())
    seen = {step: logs for step, logs in rec.logs if "neuromfa/alpha0" in logs}
    assert sorted(seen) == [0, 5, 10, 15, 20]  # the integration saw each at the step its weights were taken
    assert seen[0]["neuromfa/emergence"] == 0.0
    losses = [logs for _, logs in rec.logs if "loss" in logs]
    assert len(losses) == 0  # logging_steps=100: no loss log was forced
    metric = NeuroMFA(samples=2, neurons_per_layer=16)
    metric.update(model)
    assert seen[20]["neuromfa/alpha0"] == pytest.approx(float(metric.compute()["alpha0"]), abs=1e-12)
    assert [r["step"] for r in load_history(tmp_path / "h.jsonl")] == [0, 5, 10, 15, 20]


@pytest.mark.parametrize("restore_flag", [False, True])
def test_resume_from_a_trainer_checkpoint_keeps_the_history(tmp_path, restore_flag):
    """Saved at 10, resumed to 20: the history file holds 0, 5, 10, 15, 20 once each, E against the first baseline
    (with the Trainer's `restore_callback_states_from_checkpoint` off, its default, and on)."""
    hist = tmp_path / "h.jsonl"
    kw = dict(every_n_steps=5, samples=2, neurons_per_layer=16, history_path=str(hist), asynchronous=False)
    first = Trainer(model=tiny_gpt_neox(), args=_args(tmp_path, max_steps=10, save_strategy="steps", save_steps=10),
                    train_dataset=_Tokens(), callbacks=[NeuroMFATrainerCallback(**kw)])
    first.train()
    base = load_history(hist)[0]
    assert [r["step"] for r in load_history(hist)] == [0, 5, 10]
    saved = json.loads((tmp_path / "checkpoint-10" / "trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["NeuroMFATrainerCallback"]["attributes"]["_resume_state"]["last_step"] == 10

    cb = NeuroMFATrainerCallback(**kw)  # a new process would build the same callback
    args = _args(tmp_path, max_steps=20, restore_callback_states_from_checkpoint=restore_flag)
    second = Trainer(model=tiny_gpt_neox(), args=args, train_dataset=_Tokens(), callbacks=[cb])
    second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    records = load_history(hist)
    assert [r["step"] for r in records] == [0, 5, 10, 15, 20]
    assert records[0] == base  # the baseline record survived the resume
    assert cb.history[-1]["step"] == 20  # the user's own instance kept receiving the events
    assert cb in second.callback_handler.callbacks


def test_hf_callback_validates_arguments():
    with pytest.raises(ValueError, match=r"Expected `every_n_steps` >= 1, got 0"):
        NeuroMFATrainerCallback(every_n_steps=0)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['every_n_train_steps'\]"):
        NeuroMFATrainerCallback(every_n_train_steps=5)


def test_without_a_trainer_handler_the_values_reach_log_history_and_the_handler_is_searched_once(monkeypatch):
    """Driven by a hand-written loop (no CallbackHandler holds it): one warning, every snapshot in
    ``state.log_history``, and the garbage-collector search for a handler (tens of ms with transformers
    loaded) is not repeated at every emit. Before the fix it ran again at each of the 5 emits."""
    from transformers import TrainerControl, TrainerState

    import neuromfa_callback.hf_callback as hf

    calls = []
    real = hf._find_handler
    monkeypatch.setattr(hf, "_find_handler", lambda cb: calls.append(1) or real(cb))
    model = tiny_gpt_neox()
    cb = NeuroMFATrainerCallback(every_n_steps=2, samples=2, neurons_per_layer=16, asynchronous=False)
    state, control = TrainerState(max_steps=8), TrainerControl()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="not held by a Trainer's CallbackHandler") as caught:
        cb.on_train_begin(None, state, control, model=model)
        for step in range(1, 9):
            model(input_ids=x, labels=x).loss.backward()
            cb.on_pre_optimizer_step(None, state, control, model=model)
            opt.step()
            opt.zero_grad()
            state.global_step = step
            cb.on_step_end(None, state, control, model=model)
        cb.on_train_end(None, state, control, model=model)
    assert sum("CallbackHandler" in str(w.message) for w in caught) == 1
    steps = [e["step"] for e in state.log_history if "neuromfa/alpha0" in e]
    assert steps == [0, 2, 4, 6, 8]
    assert len(calls) == 2  # on_train_begin, then the first emit; not once more per emit
