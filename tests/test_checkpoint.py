"""core.checkpoint: the trainer state's RNG and optimizer parts round-trip, and a hostile key is
one line. The CUDA cases run where a GPU is."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ladd.core.checkpoint import FORMAT, load_state, save_state
from ladd.core.errors import LaddError

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _opt(device="cpu", kind=torch.optim.SGD, **kw):
    model = torch.nn.Linear(3, 2).to(device)
    opt = kind(model.parameters(), lr=0.1, **kw)
    model(torch.ones(4, 3, device=device)).sum().backward()
    opt.step()
    return opt


def test_a_malformed_device_rng_key_is_one_line(tmp_path):
    path = tmp_path / "trainer_state.safetensors"
    save_state(path, {}, {"epoch": 1}, _opt(momentum=0.9), torch.Generator().manual_seed(0))
    state = load_file(path)
    state["cuda_rng.x"] = torch.zeros(8, dtype=torch.uint8)
    save_file(state, path, metadata={"format": FORMAT, "ladd": json.dumps({"epoch": 1})})
    with pytest.raises(LaddError, match=r"trainer_state\.safetensors is not a usable trainer state \(ValueError"):
        load_state(path, _opt(momentum=0.9), torch.Generator(), "cpu")


def test_the_training_devices_cuda_rng_goes_to_the_device_that_resumes(tmp_path, monkeypatch):
    """A student trained alone on rank 1's GPU and resumed by rank 0 (assignment moves students) draws
    on from cuda:1's stream, not cuda:0's untouched seed state. Two GPUs faked: this machine has none."""
    streams = {0: torch.full((8,), 10, dtype=torch.uint8), 1: torch.full((8,), 11, dtype=torch.uint8)}
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d="cuda": streams[d].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda rng, d="cuda": restored.__setitem__(d, rng))
    path = tmp_path / "trainer_state.safetensors"
    save_state(path, {}, {"epoch": 1}, _opt(), torch.Generator().manual_seed(0), "cuda:1")
    assert torch.equal(load_file(path)["cuda_rng"], streams[1])
    load_state(path, _opt(), torch.Generator(), "cuda")  # resumed on the current device, cuda:0
    assert torch.equal(restored[0], streams[1]) and torch.equal(restored[1], streams[1])


@CUDA
def test_every_cuda_devices_rng_and_adams_host_step_survive_a_resume(tmp_path):
    """The state keeps each CUDA device's RNG (`seeded` seeds them all; dropout draws from the one
    the model is on), and Adam's step count goes back to the host, where torch keeps it (on the
    device, foreach Adam would read it back to the host every step)."""
    path = tmp_path / "trainer_state.safetensors"
    devices = range(torch.cuda.device_count())
    torch.cuda.manual_seed_all(0)
    save_state(path, {}, {"epoch": 1}, _opt("cuda", torch.optim.AdamW), torch.Generator().manual_seed(0))
    want = [torch.rand(3, device=f"cuda:{d}") for d in devices]
    opt = _opt("cuda", torch.optim.AdamW)
    load_state(path, opt, torch.Generator(), "cuda")
    assert all(torch.equal(torch.rand(3, device=f"cuda:{d}"), want[d]) for d in devices)
    (state,) = opt.state.values()
    assert state["step"].device.type == "cpu" and state["exp_avg"].device.type == "cuda"
