"""Non-blocking snapshot copies from several devices: one event per source device, on that device's stream.

A model split over devices (``device_map="auto"``, pipeline stages) has its sampled weights copied to
pinned CPU memory from each device on that device's current stream; the snapshot must wait for all of
those copies, not for one event on the current device. These tests replace the CUDA calls with
recorders, so they run on a CPU; the GPU suite runs the same path on a model split over cuda:0 and cpu.
"""

from __future__ import annotations

import pytest
import torch

from neuromfa_callback.functional import _neuron_network as nn_mod


class _Stream:
    def __init__(self, device: torch.device) -> None:
        self.device = device


class _Event:
    made: list[_Event] = []

    def __init__(self) -> None:
        self.recorded_on: _Stream | None = None
        self.waited = 0
        _Event.made.append(self)

    def record(self, stream: _Stream) -> None:
        self.recorded_on = stream

    def synchronize(self) -> None:
        self.waited += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    _Event.made = []
    monkeypatch.setattr(torch.cuda, "current_stream", lambda dev: _Stream(torch.device(dev)))
    monkeypatch.setattr(torch.cuda, "Event", _Event)
    return _Event


def test_one_event_per_cuda_device_recorded_on_its_own_stream(fake_cuda):
    """Copies from cuda:1, cuda:0 and the CPU: an event on cuda:0's stream and one on cuda:1's, none for the CPU."""
    devices = [torch.device("cuda", 1), torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)]
    events = nn_mod.record_copy_events(devices)
    assert [e.recorded_on.device for e in events] == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert fake_cuda.made == events


def test_the_snapshot_waits_for_every_event_before_reading(fake_cuda):
    """A network built with several pending events synchronizes each once, before its weights are read."""
    from neuromfa_callback import build_network

    net = build_network(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)), neurons_per_layer=8)
    events = nn_mod.record_copy_events([torch.device("cuda", 0), torch.device("cuda", 1)])
    pending = nn_mod.NeuronNetwork(net.blocks, depth_names=net.depth_names, seed=0, neurons_per_layer=8, ready=events)
    assert all(e.waited == 0 for e in events)
    pending.partition(min_neighbours=2)  # reads the weights
    assert [e.waited for e in events] == [1, 1]
    pending.partition(min_neighbours=2)
    assert [e.waited for e in events] == [1, 1]  # waited once, then forgotten


def test_to_non_blocking_records_events_for_the_source_devices(fake_cuda, monkeypatch):
    """NeuronNetwork.to(cpu, non_blocking=True) asks for events on the devices its weights come from."""
    from neuromfa_callback import build_network

    seen = []
    monkeypatch.setattr(nn_mod, "record_copy_events", lambda devices: seen.append(sorted({str(d) for d in devices})) or [])
    net = build_network(torch.nn.Sequential(torch.nn.Linear(16, 16)), neurons_per_layer=8)
    net.to("cpu", non_blocking=True)
    assert seen == [["cpu"]]
