"""Muon + AdamATan2 (train/muon.py): steps against hand computations, the parameter split, bad values.
Run: python -m pytest -q tests/test_muon.py
"""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from train.config import OptimConfig
from train.muon import MuonAdamATan2, newton_schulz


def _ns_by_hand(g: torch.Tensor) -> torch.Tensor:
    """Five quintic Newton-Schulz steps, written out for a wide (rows <= columns) matrix."""
    x = g / (g.norm() + 1e-7)
    for _ in range(5):
        gram = x @ x.T
        x = 3.4445 * x - 4.7750 * gram @ x + 2.0315 * gram @ gram @ x
    return x


def test_newton_schulz_matches_hand_steps_and_orthogonalises():
    g = torch.tensor([[1.0, 2.0, 0.5], [-0.5, 1.0, 3.0]])
    torch.testing.assert_close(newton_schulz(g), _ns_by_hand(g))
    torch.testing.assert_close(newton_schulz(g.T), _ns_by_hand(g).T)  # tall: done on the transpose
    s = torch.linalg.svdvals(newton_schulz(torch.randn(16, 40, generator=torch.Generator().manual_seed(0))))
    assert s.min() > 0.6 and s.max() < 1.3  # ~orthogonal: every direction moves about equally


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.core = nn.Linear(3, 2)  # weight -> Muon, bias -> Adam
        self.head = nn.Linear(2, 1, bias=False)  # outside the core -> Adam


def _grads(model: Tiny, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def test_two_steps_against_hand_computation():
    torch.manual_seed(0)
    model = Tiny()
    w0, b0 = model.core.weight.detach().clone(), model.core.bias.detach().clone()
    lr, muon_lr, wd, mu, betas = 0.01, 0.03, 0.5, 0.9, (0.9, 0.95)
    opt = MuonAdamATan2(model, lr=lr, betas=betas, weight_decay=wd, muon_lr=muon_lr, momentum=mu)
    _grads(model, 1)
    g1, gb1 = model.core.weight.grad.clone(), model.core.bias.grad.clone()
    opt.step()
    _grads(model, 2)
    g2, gb2 = model.core.weight.grad.clone(), model.core.bias.grad.clone()
    opt.step()

    scale = muon_lr * 0.2 * math.sqrt(3)  # lr * (muon_lr / lr) * 0.2 * sqrt(max(2, 3))
    w = w0 * (1 - lr * wd) - scale * _ns_by_hand(g1 + mu * g1)  # buf = g1; Nesterov: g + mu * buf
    buf = mu * g1 + g2
    w = w * (1 - lr * wd) - scale * _ns_by_hand(g2 + mu * buf)
    torch.testing.assert_close(model.core.weight, w)

    b, m, v = b0.clone(), torch.zeros(2), torch.zeros(2)  # AdamATan2 on the bias
    for t, g in ((1, gb1), (2, gb2)):
        b = b * (1 - lr * wd)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        b = b - lr / (1 - betas[0] ** t) * torch.atan2(m, v.sqrt() / math.sqrt(1 - betas[1] ** t))
    torch.testing.assert_close(model.core.bias, b)


def test_without_nesterov_the_buffer_itself_is_orthogonalised():
    torch.manual_seed(0)
    model = Tiny()
    w0 = model.core.weight.detach().clone()
    opt = MuonAdamATan2(model, lr=0.01, betas=(0.9, 0.95), weight_decay=0.0, muon_lr=0.01, nesterov=False)
    _grads(model, 1)
    g = model.core.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(model.core.weight, w0 - 0.01 * 0.2 * math.sqrt(3) * _ns_by_hand(g))


@pytest.mark.parametrize("name", ["trm-mlp", "trm", "hrm"])
def test_groups_partition_the_parameters(name):
    from models import build_model
    from models.config import DataShape
    from train.presets import PRESETS
    arch = dataclasses.replace(PRESETS["quick"]("sudoku", name).arch, puzzle_emb_ndim=16, puzzle_emb_len=1)
    model = build_model(name, arch, DataShape(seq_len=36, vocab_size=8, num_puzzle_identifiers=3), torch.float32)
    opt = MuonAdamATan2(model, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, muon_lr=1e-3)
    adam, muon = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert not adam & muon and adam | muon == {id(p) for p in model.parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon and all(names[i].startswith("core.") and names[i].endswith(".weight") for i in muon)
    assert all(p.ndim == 2 for g in opt.param_groups[1:] for p in g["params"])
    assert any("embed" in names[i] for i in adam) and any("lm_head" in names[i] for i in adam)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = Tiny()
    b = Tiny()
    b.load_state_dict(a.state_dict())
    opt_a = MuonAdamATan2(a, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, muon_lr=0.02)
    _grads(a, 1)
    opt_a.step()
    opt_b = MuonAdamATan2(b, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, muon_lr=0.02)
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as through a checkpoint file
    for model, opt in ((a, opt_a), (b, opt_b)):
        _grads(model, 2)
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("field, value", [("optimizer", "sgd"), ("muon_lr", -1.0), ("muon_lr", float("nan")),
                                          ("muon_momentum", 1.0), ("muon_ns_steps", 0)])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"optim.{field}"):
        OptimConfig(**{field: value})


def test_bad_optimizer_on_the_command_line_is_one_line(capsys):
    from puzzles.errors import run_cli
    from train.cli import main
    assert run_cli(lambda argv: main("sudoku", argv), ["optim.optimizer=sgd"]) == 2
    err = capsys.readouterr().err.strip()
    assert "optim.optimizer" in err and "\n" not in err
