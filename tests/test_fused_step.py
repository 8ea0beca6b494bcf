"""The trainer's step without per-step overhead (train/step.py, train/optim.py, train/guard.py):
fused optimiser updates equal the per-tensor rule bit for bit, the guard skips a step that would
write a non-finite value (and nothing needs restoring), the sync-free step never reads the device.
Run: python -m pytest -q tests/test_fused_step.py
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import ArchConfig, DataShape, build_model
from train.config import OptimConfig
from train.errors import TrainError
from train.guard import GRAD_LIMIT, STATE_LIMIT, Bound, stays_finite
from train.optim import EMA, AdamATan2, SparseSignSGD, first_occurrence
from train.loop import train
from train.step import TrainStep

from .test_train import _fresh_model, _keep_threads, _nan_forward, assert_same, sudoku_data, tiny_cfg  # noqa: F401


# --- the per-tensor rules the fused updates replace (the optimiser code before them) ----------------
def reference_adam(params, states, t, lr, betas, wd):
    bc1, bc2 = 1.0 - betas[0] ** t, 1.0 - betas[1] ** t
    for p, s in zip(params, states):
        g = p.grad.float()
        p32 = p.float()
        p32.mul_(1.0 - lr * wd)
        s["exp_avg"].lerp_(g, 1.0 - betas[0])
        s["exp_avg_sq"].lerp_(g * g, 1.0 - betas[1])
        p32.add_(torch.atan2(s["exp_avg"], s["exp_avg_sq"].sqrt() / math.sqrt(bc2)), alpha=-(lr / bc1))
        if p32 is not p:
            p.copy_(p32)


def reference_sign_sgd(weights, grads, ids, lr, wd):
    unique_ids, inverse = torch.unique(ids.long(), return_inverse=True)
    summed = torch.zeros(len(unique_ids), grads.shape[-1])
    summed.index_add_(0, inverse, grads.float())
    rows = weights[unique_ids].float()
    rows.mul_(1.0 - lr * wd).add_(torch.sign(summed), alpha=-lr)
    weights[unique_ids] = rows.to(weights.dtype)


SHAPES = [(7, 5), (3,), (2, 2, 4), (64, 33), (1,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_adam_atan2_equals_the_per_tensor_rule_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen).to(dtype) for s in SHAPES]
    fused = [nn.Parameter(x.clone()) for x in init]
    ref = [x.clone() for x in init]
    ref_states = [{"exp_avg": torch.zeros(s), "exp_avg_sq": torch.zeros(s)} for s in SHAPES]
    opt = AdamATan2(fused, lr=1.0, betas=(0.8, 0.9), weight_decay=0.5)
    for t, lr in enumerate([1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 3e-2], start=1):
        opt.param_groups[0]["lr"] = lr
        for p, r in zip(fused, ref):
            p.grad = (torch.randn(p.shape, generator=gen) * 10 ** -(t % 3)).to(dtype)
            r.grad = p.grad.clone()
        opt.step()
        with torch.no_grad():
            reference_adam(ref, ref_states, float(t), lr, (0.8, 0.9), 0.5)
        assert opt.applied is True
        for p, r, s in zip(fused, ref, ref_states):
            assert torch.equal(p.detach(), r)
            assert torch.equal(opt.state[p]["exp_avg"], s["exp_avg"]) and torch.equal(opt.state[p]["exp_avg_sq"],
                                                                                       s["exp_avg_sq"])
            assert float(opt.state[p]["step"]) == t


def _embedding(weights, ids, grads):
    local = weights[ids.long()].clone().requires_grad_(True)
    local.grad = grads.clone()
    return type("Emb", (), dict(weights=weights, local_weights=local, local_ids=ids))()


def test_sign_sgd_without_unique_equals_the_unique_rule_bit_for_bit():
    gen = torch.Generator().manual_seed(1)
    fused_table, ref_table = (torch.randn(9, 6, generator=gen),) * 2
    fused_table, ref_table = fused_table.clone(), ref_table.clone()
    for step in range(6):
        ids = torch.randint(0, 9, (24,), generator=gen, dtype=torch.int32)  # many duplicates, absent rows
        grads = torch.randn(24, 6, generator=gen) * 10 ** -step
        SparseSignSGD(_embedding(fused_table, ids, grads), lr=0.05, weight_decay=0.3).step()
        reference_sign_sgd(ref_table, grads, ids, 0.05, 0.3)
        assert torch.equal(fused_table, ref_table), step


def test_first_occurrence():
    ids = torch.tensor([5, 1, 5, 3, 1, 1, 7, 5])
    assert first_occurrence(ids).tolist() == [0, 1, 0, 3, 1, 1, 6, 0]
    assert first_occurrence(torch.tensor([2])).tolist() == [0]


def test_fused_ema_equals_the_per_tensor_lerp_bit_for_bit():
    gen = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    ema = EMA(model, decay=0.99)
    ref = {k: v.clone() for k, v in ema.shadow.items()}
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen))
        ema.update(model)
        for name, p in model.named_parameters():
            ref[name].lerp_(p.detach().float(), 1.0 - 0.99)
        assert all(torch.equal(ema.shadow[k], ref[k]) for k in ref)


# --- the guard --------------------------------------------------------------------------------------
def test_stays_finite_reads_one_bound_per_update():
    g, v = [torch.ones(3), torch.zeros(0)], [torch.full((2,), 2.0)]
    assert stays_finite([Bound(g, v, 0.9, 1.0)]) and stays_finite([]) and stays_finite([Bound([torch.zeros(0)])])
    assert not stays_finite([Bound([torch.tensor([1.0, math.nan])], v)])
    assert not stays_finite([Bound(g, [torch.tensor([math.inf])])])
    assert not stays_finite([Bound([torch.tensor(2 * GRAD_LIMIT)], v)])  # its square would overflow
    assert not stays_finite([Bound(g, v, 1.0, math.inf)])  # a step size that overflowed on the host
    assert not stays_finite([Bound(g, [torch.tensor([STATE_LIMIT])], -2.0, 0.0)])  # decay pushes past the limit
    assert not stays_finite([Bound(g, v), Bound([torch.tensor(math.nan, dtype=torch.float64)])])  # e.g. the loss


def tiny_model(seed: int = 0):
    arch = ArchConfig(hidden_size=16, num_heads=2, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=3,
                      puzzle_emb_ndim=16)
    torch.manual_seed(seed)
    model = build_model("trm", arch, DataShape(seq_len=16, vocab_size=6, num_puzzle_identifiers=5), "float32")
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()  # nonzero rows: decay moves every row a step touches
    return model


def batches(count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([1, 3, 1, 4], dtype=torch.int32)  # a duplicate: sign-SGD sums its rows
    return [{"inputs": torch.randint(0, 6, (4, 16), generator=gen),
             "labels": torch.randint(2, 6, (4, 16), generator=gen), "puzzle_identifiers": ids} for _ in range(count)]


def snapshot(step: TrainStep, carry) -> list[torch.Tensor]:
    tensors = [t.clone() for t in step.state_tensors()]
    carry_tensors = (carry.z_H, carry.z_L, carry.steps, carry.halted, *carry.current_data.values())
    return tensors + [t.clone() for t in carry_tensors]


def _bad(kind: str, model, step: TrainStep):
    """Make the next step non-finite in one way; returns the undo."""
    if kind == "loss":
        forward = step.forward

        def nan_loss(carry, batch):
            carry, loss, *rest = forward(carry, batch)
            return (carry, loss * math.nan, *rest)
        step.forward = nan_loss
        return lambda: setattr(step, "forward", forward)
    if kind == "grad":  # the loss stays finite
        hook = model.lm_head.weight.register_hook(lambda g: g * math.inf)
        return hook.remove
    if kind == "rows":
        hook = model.puzzle_emb.local_weights.register_hook(lambda g: g * math.nan)
        return hook.remove
    lr = step.opt.lr  # "lr": finite gradients, finite loss, an update that overflows
    step.opt.lr = 1e38
    return lambda: setattr(step.opt, "lr", lr)


@pytest.mark.parametrize("optimizer", ["adam", "muon"])
@pytest.mark.parametrize("sync_free", [False, True])
@pytest.mark.parametrize("kind", ["loss", "grad", "rows", "lr"])
def test_a_non_finite_step_changes_nothing(kind, sync_free, optimizer):
    model = tiny_model()
    step = TrainStep(model, OptimConfig(global_batch_size=4, lr_warmup_steps=0, ema=True, ema_rate=0.9,
                                        optimizer=optimizer), total_steps=10, sync_free=sync_free)
    data = batches(4)
    carry = model.initial_carry(data[0])
    for i in range(2):
        carry = step(carry, data[i], i + 1).carry
    before = snapshot(step, carry)
    undo = _bad(kind, model, step)
    result = step(carry, data[2], 3)
    undo()
    assert not bool(result.finite)
    after = snapshot(step, result.carry)
    assert len(after) == len(before) and all(torch.equal(a, b) for a, b in zip(after, before))
    assert step.state_is_finite()
    assert bool(step(result.carry, data[3], 4).finite)  # and the next good step goes on


# --- the sync-free step -------------------------------------------------------------------------------
HOST_READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture
def no_host_reads(monkeypatch):
    """Every way a step could read a device value on the host raises (on the CPU too)."""
    def refuse(name):
        def read(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} called inside a sync-free step")
        return read
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))
    return monkeypatch


@pytest.mark.parametrize("optimizer", ["adam", "muon"])
def test_sync_free_step_never_reads_the_device_and_matches_the_host_path(no_host_reads, optimizer):
    opt = OptimConfig(global_batch_size=4, lr_warmup_steps=2, ema=True, ema_rate=0.9, optimizer=optimizer)
    data = batches(5)
    runs = {}
    for sync_free in (True, False):
        if not sync_free:
            no_host_reads.undo()
        model = tiny_model()
        step = TrainStep(model, opt, total_steps=10, sync_free=sync_free)
        carry, verdicts = model.initial_carry(data[0]), []
        for i, batch in enumerate(data):
            undo = _bad("loss", model, step) if i == 2 else (lambda: None)
            result = step(carry, batch, i + 1)
            undo()
            carry = result.carry
            verdicts.append(result.finite)
        runs[sync_free] = (snapshot(step, carry), verdicts)
    (free, free_verdicts), (host, host_verdicts) = runs[True], runs[False]
    assert all(isinstance(v, torch.Tensor) for v in free_verdicts) and all(type(v) is bool for v in host_verdicts)
    assert [bool(v) for v in free_verdicts] == host_verdicts == [True, True, False, True, True]
    for a, b in zip(free, host):  # the same rule; coefficients rounded on the device
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sync_free_step_on_cuda_makes_no_device_sync():
    """On a GPU the ops themselves must not sync either (nonzero, boolean masks, unique, ...)."""
    model = tiny_model().cuda()
    step = TrainStep(model, OptimConfig(global_batch_size=4, lr_warmup_steps=2, ema=True), total_steps=10,
                     sync_free=True)
    data = [{k: v.cuda() for k, v in b.items()} for b in batches(5)]
    carry = model.initial_carry(data[0])
    for i in range(2):  # the first steps make the state and move the step counts to the device
        carry = step(carry, data[i], i + 1).carry
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(2, 5):
            carry = step(carry, data[i], i + 1).carry
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert step.state_is_finite()


# --- the loop: bad steps counted at log lines when the step is sync-free --------------------------------
def _weights(run):
    from train.checkpoint import load_checkpoint
    return load_checkpoint(run / "checkpoint.pt")


def test_sync_free_run_counts_bad_steps_at_log_lines(tmp_path, sudoku_data, monkeypatch):
    import json
    runs = {}
    for sync_free in ("false", "true"):
        _nan_forward(monkeypatch, {2, 3})
        run = tmp_path / sync_free
        summary = train(tiny_cfg(sudoku_data, run, "optim.max_steps=6", "optim.max_bad_steps=3", "log.interval=2",
                                 "optim.ema=true", f"system.sync_free={sync_free}"))
        monkeypatch.undo()
        assert summary["steps"] == 6 and summary["skipped_steps"] == 2
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert {d["step"]: d["train/skipped_steps"] for d in lines if "train/skipped_steps" in d} == {2: 1, 4: 2, 6: 2}
        runs[sync_free] = _weights(run)
    assert runs["true"]["last_good_step"] == runs["false"]["last_good_step"] == 6
    for name, value in runs["false"]["model"].items():
        torch.testing.assert_close(runs["true"]["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_sync_free_run_stops_at_the_log_line_after_too_many_bad_steps(tmp_path, sudoku_data, monkeypatch):
    _nan_forward(monkeypatch, set(range(1, 100)))
    run = tmp_path / "r"
    cfg = tiny_cfg(sudoku_data, run, "optim.max_steps=8", "optim.max_bad_steps=3", "log.interval=2",
                   "system.sync_free=true")
    with pytest.raises(TrainError, match="4 non-finite steps in a row at step 4"):
        train(cfg)
    payload = _weights(run)
    assert payload["step"] == 4 and payload["bad_steps"] == 4 and payload["last_good_step"] == 0
    assert_same(_fresh_model("trm-mlp", run).state_dict(), payload["model"])  # nothing was applied
