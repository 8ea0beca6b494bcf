"""Optimisers, schedule and EMA against the reference fixtures. Run: python -m pytest -q tests/test_optim.py"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from train.optim import EMA, AdamATan2, SparseSignSGD, lr_at

FIXTURES = ["trm_attn", "trm_attn_perturbed", "trm_mlpt", "trm_mlpt_perturbed", "hrm", "hrm_perturbed"]
# float32 throughout; the updates are ~1e-4 and params ~1e-1, so this is a few ulp of the params.
RTOL, ATOL = 1e-6, 1e-9


def _load(reference_dir, name):
    return torch.load(reference_dir / f"{name}.pt", weights_only=True)


def _embedding(weights, local_weights, grad, ids):
    local = local_weights.clone().requires_grad_(True)
    local.grad = grad.clone()
    return SimpleNamespace(weights=weights.clone(), local_weights=local, local_ids=ids.clone())


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_optim_step(reference_dir, name):
    fx = _load(reference_dir, name)
    sd, ts, opt = fx["state_dict"], fx["train_step"], fx["optim_step"]
    params = {k: nn.Parameter(sd[k].clone()) for k in ts["grads"]}
    for k, p in params.items():
        p.grad = ts["grads"][k].clone()
    emb = _embedding(sd["inner.puzzle_emb.weights"], ts["puzzle_emb_local_weights"],
                     ts["puzzle_emb_local_weights_grad"], ts["puzzle_emb_local_ids"])

    sparse = SparseSignSGD(emb, lr=opt["puzzle_emb_lr"], weight_decay=opt["puzzle_emb_weight_decay"])
    adam = AdamATan2(list(params.values()), lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]),
                     weight_decay=opt["weight_decay"])
    sparse.step()
    adam.step()

    assert params.keys() == opt["params_after"].keys()
    for k, p in params.items():
        torch.testing.assert_close(p.detach(), opt["params_after"][k], rtol=RTOL, atol=ATOL, msg=k)
        assert not torch.equal(p.detach(), sd[k]), f"{k} did not move"
    torch.testing.assert_close(emb.weights, opt["puzzle_emb_weights_after"], rtol=RTOL, atol=ATOL)
    assert all(float(adam.state[p]["step"]) == opt["adam_step_count"] for p in params.values())

    # Rows absent from the batch (ids 2 and 4) must not move.
    ids = set(ts["puzzle_emb_local_ids"].tolist())
    for row in set(range(emb.weights.shape[0])) - ids:
        assert torch.equal(emb.weights[row], sd["inner.puzzle_emb.weights"][row]), row

    sparse.zero_grad()
    adam.zero_grad()
    assert emb.local_weights.grad is None and all(p.grad is None for p in params.values())


def test_adam_atan2_several_steps_and_lr_change():
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (3,), (2, 2, 4)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) * 10 ** (-k) for s in shapes] for k in range(5)]
    lrs = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2]
    params = [nn.Parameter(x.clone()) for x in init]
    opt = AdamATan2(params, lr=1.0, betas=(0.8, 0.9), weight_decay=0.5)
    # Reference with the per-step lr: replay the rule with each step's lr.
    expected = []
    for i, x in enumerate(init):
        p, m, v = x.double(), torch.zeros_like(x, dtype=torch.float64), torch.zeros_like(x, dtype=torch.float64)
        for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
            g = step_grads[i].double()
            p = p * (1 - lr * 0.5)
            m = m + (g - m) * 0.2
            v = v + (g * g - v) * 0.1
            p = p - (lr / (1 - 0.8 ** t)) * torch.atan2(m, v.sqrt() / math.sqrt(1 - 0.9 ** t))
        expected.append(p)
    for step_grads, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)


def test_adam_atan2_resume_matches_uninterrupted():
    gen = torch.Generator().manual_seed(1)
    init = torch.randn(6, 4, generator=gen)
    grads = [torch.randn(6, 4, generator=gen) for _ in range(6)]

    def run(params, opt, gs):
        for g in gs:
            params[0].grad = g.clone()
            opt.step()

    a = [nn.Parameter(init.clone())]
    opt_a = AdamATan2(a, lr=1e-2)
    run(a, opt_a, grads)

    b = [nn.Parameter(init.clone())]
    opt_b = AdamATan2(b, lr=1e-2)
    run(b, opt_b, grads[:3])
    state = opt_b.state_dict()
    c = [nn.Parameter(b[0].detach().clone())]
    opt_c = AdamATan2(c, lr=1e-2)
    opt_c.load_state_dict(state)
    run(c, opt_c, grads[3:])
    torch.testing.assert_close(c[0], a[0], rtol=0, atol=0)


def test_adam_atan2_bfloat16_params_use_float32_state():
    p = nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    opt = AdamATan2([p], lr=1e-1, weight_decay=0.0)
    p.grad = torch.full((8,), -2.0, dtype=torch.bfloat16)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float32
    # Step 1: update = lr/bc1 * atan2(0.1 g, |g|) = 1.0 * atan(0.1) * sign(g).
    expected = 1.0 + math.atan(0.1)
    torch.testing.assert_close(p.float(), torch.full((8,), expected), rtol=1e-2, atol=0)


def test_adam_atan2_rejects_bad_hyperparameters():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="betas"):
        AdamATan2(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        AdamATan2(p, lr=-1.0)


def test_sparse_sign_sgd_duplicates_zero_grad_and_untouched_rows():
    weights = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    ids = torch.tensor([2, 0, 2, 1], dtype=torch.int32)
    grad = torch.tensor([[1.0, -1.0, 0.5],
                         [0.0, 0.0, 0.0],      # id 0 present but zero grad: decays only
                         [-3.0, 1.0, -0.5],    # id 2 again: sums to [-2, 0, 0]
                         [-1.0, 2.0, 0.0]])
    emb = _embedding(weights, weights[ids.long()], grad, ids)
    opt = SparseSignSGD(emb, lr=0.5, weight_decay=0.2)
    opt.step()
    decay = 1 - 0.5 * 0.2
    expected = weights.clone()
    expected[0] = weights[0] * decay
    expected[1] = weights[1] * decay - 0.5 * torch.tensor([-1.0, 1.0, 0.0])
    expected[2] = weights[2] * decay - 0.5 * torch.tensor([-1.0, 0.0, 0.0])
    torch.testing.assert_close(emb.weights, expected, rtol=0, atol=1e-6)

    # The lr set through param_groups is the one used; no grad -> no-op.
    opt.param_groups[0]["lr"] = 0.0
    opt.zero_grad()
    before = emb.weights.clone()
    opt.step()
    assert torch.equal(emb.weights, before)

    state = opt.state_dict()
    other = SparseSignSGD(emb, lr=1.0, weight_decay=1.0)
    other.load_state_dict(torch.load(_roundtrip(state), weights_only=True))
    assert other.param_groups == opt.param_groups


def _roundtrip(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("warmup,total,ratio", [(10, 110, 1.0), (10, 110, 0.1), (0, 50, 0.0)])
def test_lr_schedule(warmup, total, ratio):
    base = 3e-4
    for step in range(1, warmup):
        assert lr_at(step, base, warmup, total, ratio) == pytest.approx(base * step / warmup)
    assert lr_at(warmup, base, warmup, total, ratio) == pytest.approx(base)  # warm-up ends at base
    mid = warmup + (total - warmup) // 2
    assert lr_at(mid, base, warmup, total, ratio) == pytest.approx(base * (ratio + (1 - ratio) * 0.5))
    assert lr_at(total, base, warmup, total, ratio) == pytest.approx(base * ratio)
    assert lr_at(total + 100, base, warmup, total, ratio) == pytest.approx(base * ratio)
    after = [lr_at(s, base, warmup, total, ratio) for s in range(max(warmup, 1), total + 1)]
    assert all(a >= b - 1e-15 for a, b in zip(after, after[1:]))  # non-increasing after warm-up


def test_lr_schedule_reference_default_is_constant_after_warmup():
    assert [lr_at(s, 1e-4, 2000, 10_000) for s in (1, 1000, 2000, 5000, 10_000)] == pytest.approx(
        [1e-4 / 2000, 5e-5, 1e-4, 1e-4, 1e-4])


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("table", torch.zeros(4, 3))


def test_ema_tracks_parameters_not_buffers():
    model = _Tiny()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    ema = EMA(model, decay=0.9)
    assert set(ema.shadow) == {"lin.weight", "lin.bias"}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.table.fill_(7.0)
    ema.update(model)
    ema.update(model)
    for k, p in model.named_parameters():
        # shadow after two updates toward start+1: start + 1 - 0.9^2
        torch.testing.assert_close(ema.shadow[k], start[k] + 1 - 0.81, rtol=0, atol=1e-6)

    copy = ema.averaged_copy(model)
    torch.testing.assert_close(copy.lin.weight, ema.shadow["lin.weight"])
    assert torch.equal(copy.table, model.table)  # buffers come from the live model
    assert torch.equal(model.lin.weight, start["lin.weight"] + 1)  # the live model is untouched


    restored = EMA(_Tiny(), decay=0.5)
    restored.load_state_dict(torch.load(_roundtrip(ema.state_dict()), weights_only=True))
    assert restored.decay == 0.9
    for k in ema.shadow:
        assert torch.equal(restored.shadow[k], ema.shadow[k])


def _sparse_worker(rank: int, world: int, init_file: str, weights, local, grad, ids, out_file: str):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = len(ids) // world
        rows = slice(rank * half, (rank + 1) * half)
        emb = _embedding(weights, local[rows], grad[rows], ids[rows])
        SparseSignSGD(emb, lr=0.1, weight_decay=0.3).step()
        torch.save(emb.weights, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sparse_sign_sgd_gathers_across_ranks(tmp_path):
    """Two gloo ranks, each holding half the batch, must both apply the whole batch's update."""
    import torch.multiprocessing as mp
    gen = torch.Generator().manual_seed(3)
    weights = torch.randn(6, 4, generator=gen)
    ids = torch.tensor([5, 1, 1, 3], dtype=torch.int32)  # id 1 split across the two ranks
    local = weights[ids.long()]
    grad = torch.randn(4, 4, generator=gen)
    single = _embedding(weights, local, grad, ids)
    SparseSignSGD(single, lr=0.1, weight_decay=0.3).step()

    out = str(tmp_path / "w")
    mp.spawn(_sparse_worker, args=(2, str(tmp_path / "init"), weights, local, grad, ids, out), nprocs=2)
    for rank in range(2):
        torch.testing.assert_close(torch.load(f"{out}.{rank}", weights_only=True), single.weights, rtol=0, atol=0)
