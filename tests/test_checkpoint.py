"""Atomic checkpoint writes, clear errors on bad files, RNG capture. Run: python -m pytest -q tests/test_checkpoint.py"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from puzzles.errors import UserError
from train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from train.errors import CheckpointError
from train.optim import AdamATan2


@dataclass
class NotAllowed:  # weights_only loading refuses arbitrary classes
    x: int = 1


def _payload():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = AdamATan2(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt, {"step": 5, "model": model.state_dict(), "optim": opt.state_dict(),
                        "config": {"arch": {"L_cycles": 3, "betas": [0.9, 0.95]}, "name": "x", "warmup": None},
                        "rng": capture_rng_state()}


def test_round_trip_restores_model_and_optimizer(tmp_path):
    model, opt, payload = _payload()
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", payload)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temp left
    loaded = load_checkpoint(path)
    assert loaded["step"] == 5 and loaded["config"] == payload["config"]
    model2 = nn.Linear(4, 3)
    model2.load_state_dict(loaded["model"])
    opt2 = AdamATan2(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optim"])
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][k], opt2.state[q][k])


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def _assert_one_line_error(path, fragment):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert str(path) in message and fragment in message and "\n" not in message


def test_missing_truncated_garbage_and_foreign_files(tmp_path):
    _assert_one_line_error(tmp_path / "nope.pt", "does not exist")
    _assert_one_line_error(tmp_path, "is not a file")

    _, _, payload = _payload()
    good = save_checkpoint(tmp_path / "good.pt", payload)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        truncated = tmp_path / f"cut{cut}.pt"
        truncated.write_bytes(data[:cut])
        _assert_one_line_error(truncated, "truncated or corrupt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    _assert_one_line_error(garbage, "truncated or corrupt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _assert_one_line_error(empty, "truncated or corrupt")

    foreign = tmp_path / "foreign.pt"
    torch.save({"obj": NotAllowed()}, foreign)
    _assert_one_line_error(foreign, "truncated or corrupt")

    a_list = tmp_path / "list.pt"
    torch.save([1, 2], a_list)
    _assert_one_line_error(a_list, "not a checkpoint dict")


def _draw():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(2).tolist(),
            torch.rand(4).tolist())


def test_rng_state_round_trip_through_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn(1)  # and in numpy's
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = _draw()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert _draw() != expected
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draw() == expected
