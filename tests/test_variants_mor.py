"""Mixture-of-Recursions (models/mor.py), the FLOP counts of every variant, and a compile test of
each variant's core (docs/variants.md).

Run: python -m pytest -q tests/test_variants_mor.py
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.flops import step_flops
from models import MODELS
from models.mor import BLANK, kept_counts

from .test_variants import B, S, V, assert_every_parameter_learns, build, make_batch

ROUTERS = ["expert", "token", "oracle", "random"]


def record_recursions(model) -> list[dict]:
    """Wrap the core's `cycle` to keep, per recursion, the kept mask and the states in and out."""
    seen, cycle = [], model.core.cycle
    def spy(z_H, z_L, x, cos_sin, idx, kept, gate, *rest):
        new_H, new_L, call = cycle(z_H, z_L, x, cos_sin, idx, kept, gate, *rest)
        seen.append({"kept": kept.clone(), "before": z_H.clone(), "after": new_H.detach().clone()})
        return new_H, new_L, call
    model.core.cycle = spy
    return seen


def run_step(model, batch=None):
    batch = batch if batch is not None else make_batch()
    model.eval()
    with torch.no_grad():
        return model.step(model.initial_carry(batch), batch)


@pytest.mark.parametrize("attend", ["active", "all"])
@pytest.mark.parametrize("router", ["expert", "oracle", "random"])
def test_expert_choice_updates_capacity_cells_in_nested_sets(router, attend):
    model = build("mor", H_cycles=3, mor_router=router, mor_attend=attend)
    seen = record_recursions(model)
    _, logits, _, _ = run_step(model)
    assert logits.shape == (B, S, V)
    assert kept_counts(model.config) == [S, 8, 4]  # capacities 1, 2/3, 1/3 of 12 cells
    previous = torch.ones(B, S, dtype=torch.bool)
    for r, rec in enumerate(seen):
        kept = rec["kept"]
        assert (kept.sum(-1) == kept_counts(model.config)[r]).all()
        assert not (kept & ~previous).any(), "the kept sets must be nested"
        assert kept[:, 0].all(), "position 0 (the Q head's) is always kept"
        changed = (rec["after"] != rec["before"]).any(-1)
        assert torch.equal(changed, kept), "exactly the kept cells are updated"
        previous = kept


@pytest.mark.parametrize("attend", ["active", "all"])
def test_mor_at_full_capacity_with_an_undecided_router_is_trm(attend):
    """Capacity 1 keeps every cell and g = alpha = 1 at a zero router: TRM's update, gathered in
    router order (attention and per-cell RoPE do not care about the order)."""
    mor = build("mor", H_cycles=3, mor_capacity=1.0, mor_attend=attend)
    with torch.no_grad():
        mor.core.router.weight.zero_()
    trm = build("trm", seed=1, H_cycles=3)
    trm.load_state_dict({k: v for k, v in mor.state_dict().items() if "router" not in k})
    batch = make_batch()
    torch.testing.assert_close(run_step(mor, batch)[1], run_step(trm, batch)[1], rtol=1e-5, atol=1e-5)


def test_oracle_retires_givens_first():
    model = build("mor", H_cycles=3, mor_router="oracle")
    batch = make_batch()
    batch["inputs"][:, :S // 2] = BLANK  # the first half open, the second half givens
    batch["inputs"][:, S // 2:] = 3
    seen = record_recursions(model)
    run_step(model, batch)
    assert seen[1]["kept"][:, :S // 2].all()  # 8 kept: the 6 open cells and 2 givens
    assert not seen[2]["kept"][:, S // 2:].any()  # 4 kept: open cells only


def test_token_choice_masks_by_depth():
    model = build("mor", H_cycles=3, mor_router="token")
    seen = record_recursions(model)
    run_step(model)
    assert seen[0]["kept"].all()
    for r in (1, 2):
        kept = seen[r]["kept"]
        assert not (kept & ~seen[r - 1]["kept"]).any() and kept[:, 0].all()
        assert torch.equal((seen[r]["after"] != seen[r]["before"]).any(-1), kept)


@pytest.mark.parametrize("attend", ["active", "all"])
@pytest.mark.parametrize("router", ROUTERS)
def test_mor_every_parameter_learns(router, attend):
    metrics = assert_every_parameter_learns(build("mor", H_cycles=3, mor_router=router, mor_attend=attend))
    assert metrics["mean_active_r0"] == B and ("router_loss" in metrics) == (router in ("expert", "token"))


def test_mor_refuses_the_token_mlp():
    with pytest.raises(ValueError, match=r"^ModelConfig\.mlp_t"):
        build("mor", mlp_t=True, pos_encodings="none")


# --- FLOPs ------------------------------------------------------------------------------------
def test_variant_flops():
    trm = build("trm", H_cycles=3).config
    base = step_flops("trm", trm, 4)
    # ut at T_max = TRM's net calls, every cell running, all differentiated: more than TRM's last_cycle
    ut = dataclasses.replace(trm, ut_max_steps=9, grad_mode="full")
    assert step_flops("ut", ut, 4) > base
    assert step_flops("ut", ut, 4, {"ut_steps": 3.0}) == pytest.approx(step_flops("ut", ut, 4) / 3, rel=0.01)
    # rrt pays for its LoRA, tied rank 0 costs TRM's
    assert step_flops("rrt", dataclasses.replace(trm, rrt_rank=0), 4) == base
    assert step_flops("rrt", dataclasses.replace(trm, rrt_rank=4), 4) > base
    # mor at capacity 1 with attend-to-all is TRM plus its router; capacities 1, 2/3, 1/3 save
    full = dataclasses.replace(trm, mor_capacity=1.0, mor_attend="all")
    router = 2 * 4 * S * trm.hidden_size * 3 * 3
    assert step_flops("mor", full, 4) == pytest.approx(base + router, rel=1e-9)
    # last_cycle: the x3 (differentiated) cycle is the one with 1/3 of the cells, so the saving is
    # larger than the forward's (1 + 2/3 + 1/3) / 3; attention over kept cells only saves more still
    linear = (5 * 1 + 5 * 2 / 3 + 15 * 1 / 3) / 25
    assert step_flops("mor", trm, 4) < linear * base + router
    assert step_flops("mor", dataclasses.replace(trm, mor_attend="all"), 4) > step_flops("mor", trm, 4)


# --- compile: one graph, no recompiles across steps ---------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [
    ("trm", dict(unique_layers=3, share_order="cycle_rev")), ("ut", {}), ("rrt", dict(rrt_rank=4)),
    ("mor", dict(mor_router="expert")), ("mor", dict(mor_router="token", mor_attend="all")),
    ("mor", dict(mor_router="oracle", mor_attend="all")),
])
def test_variant_cores_compile_without_breaks_or_recompiles(name, overrides):
    """fullgraph=True fails on any graph break; error_on_recompile on a second graph for a later
    step (dynamo only, backend 'eager': the tracing is what is tested, in seconds)."""
    torch._dynamo.reset()  # small schedules: tracing time grows with the unrolled recursion
    model = build(name, L_layers=1, L_cycles=2, H_cycles=2, ut_max_steps=2, **overrides)
    model.train()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    carry = model.initial_carry(make_batch(0))
    with torch._dynamo.config.patch(error_on_recompile=False):
        carry, loss, _, _, _ = compiled(carry, make_batch(0))
    loss.backward()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (1,):
            carry, loss, _, _, _ = compiled(carry, make_batch(seed))
            loss.backward()
