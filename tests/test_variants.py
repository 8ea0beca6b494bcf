"""The survey's other recursive systems (docs/variants.md): share orders, ut, rrt.

Run: python -m pytest -q tests/test_variants.py tests/test_variants_mor.py
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models import MODELS, ModelConfig
from models.relax import relax_state_dict
from models.share import layer_order, order_letters

B, S, V = 3, 12, 6


def tiny(**overrides) -> ModelConfig:
    fields = dict(seq_len=S, vocab_size=V, hidden_size=16, num_heads=2, expansion=2.0, H_cycles=2, L_cycles=2,
                  L_layers=2, halt_max_steps=3, halt_exploration_prob=0.0, forward_dtype="float32", ut_max_steps=4)
    fields.update(overrides)
    return ModelConfig(**fields)


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(1, V, (B, S), generator=g, dtype=torch.int32),
            "labels": torch.randint(2, V, (B, S), generator=g),
            "puzzle_identifiers": torch.zeros(B, dtype=torch.int32)}


def build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return MODELS[name](tiny(**overrides))


def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        _, logits, _, _ = model.step(model.initial_carry(batch), batch)
    return logits


def assert_every_parameter_learns(model) -> None:
    """Default gradient mode: every parameter gets a non-zero gradient from one supervision step."""
    model.train()
    batch = make_batch()
    _, loss, metrics, _, _ = model(model.initial_carry(batch), batch)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient for {dead}"
    return metrics


# --- share orders ---------------------------------------------------------------------------
def test_share_orders_match_the_paper():
    assert order_letters(layer_order(3, 6, "sequence")) == "AABBCC"
    assert order_letters(layer_order(3, 6, "cycle")) == "ABCABC"
    assert order_letters(layer_order(3, 6, "cycle_rev")) == "ABCCBA"
    assert order_letters(layer_order(2, 10, "cycle")) == "AB" * 5  # TRM: M = L_layers = 2
    assert order_letters(layer_order(3, 7, "cycle_rev")) == "ABCABCC"  # f_i = f_{M - ((i-1) mod M)} at the end


def test_default_share_is_todays_trm():
    """M = L_layers, cycle: the same blocks, names and outputs as an explicit unique_layers=L_layers."""
    batch = make_batch()
    default, explicit = build("trm"), build("trm", unique_layers=2, share_order="cycle")
    assert default.core.order == [0, 1] * 3 and list(default.state_dict()) == list(explicit.state_dict())
    assert torch.equal(logits_of(default, batch), logits_of(explicit, batch))


@pytest.mark.parametrize("order", ["sequence", "cycle", "cycle_rev"])
@pytest.mark.parametrize("unique", [1, 3, 6])
def test_share_orders_train_every_layer(order, unique):
    model = build("trm", unique_layers=unique, share_order=order)
    assert len(model.core.L_level.layers) == unique and sorted(set(model.core.order)) == list(range(unique))
    assert logits_of(model, make_batch()).shape == (B, S, V)
    assert_every_parameter_learns(model)  # last_cycle: the order repeats in the differentiated cycle


# --- ut -------------------------------------------------------------------------------------
def test_ut_shapes_gradients_and_ponder():
    model = build("ut")
    assert model.config.grad_mode == "full"
    metrics = assert_every_parameter_learns(model)
    assert metrics["ponder_loss"] > 0 and 1 <= metrics["mean_ut_steps"] / B <= 4


def _weight_sums(model, batch) -> torch.Tensor:
    """With a transition that outputs ones, the new z_H is each cell's sum of halting weights."""
    model.core.transition = lambda s, cos_sin: torch.ones_like(s)
    model.eval()
    with torch.no_grad():
        carry = model.reset(model.initial_carry(batch), batch)
        z_H, _, aux = model.think_aux(carry.z_H, carry.z_L, model.embed(carry.current_data))
    return z_H, aux


@pytest.mark.parametrize("bias", [-10.0, 0.0, 0.3, 10.0])
def test_ut_halting_weights_sum_to_one(bias):
    model = build("ut", ut_halt_bias_init=bias)
    with torch.no_grad():
        model.core.halt.weight.normal_(std=0.3)  # cells halt at different steps
    sums, aux = _weight_sums(model, make_batch())
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
    steps = aux["mean_ut_steps"].item() / B
    if bias == -10.0:  # p ~ 0: no cell reaches the threshold, T_max forces every halt
        assert steps == pytest.approx(4.0)
    if bias == 10.0:  # p ~ 1: every cell halts at once, except position 0 (the Q head's)
        assert steps == pytest.approx((1 * (S - 1) + 4) / S)


def test_ut_frozen_cells_keep_their_state():
    """Halted cells are frozen: a cell that halted at step 1 sees no more updates."""
    model = build("ut", ut_halt_bias_init=10.0, ut_max_steps=3)
    calls = []
    def transition(s, cos_sin):
        calls.append(s.clone())
        return s + 1.0
    model.core.transition = transition
    model.eval()
    with torch.no_grad():
        carry = model.reset(model.initial_carry(make_batch()), make_batch())
        model.think(carry.z_H, carry.z_L, model.embed(carry.current_data))
    timing = model.core.timing
    # cell 1 halted at step 0: its state entering step 2 is step 1's input (+ the step-2 signal), not +1 again
    torch.testing.assert_close(calls[2][:, 1], calls[1][:, 1] + timing[2])
    torch.testing.assert_close(calls[2][:, 0], calls[1][:, 0] + 1.0 + timing[2])  # position 0 still runs


# --- rrt ------------------------------------------------------------------------------------
def untied_trm(seed: int = 0):
    return build("trm", seed, unique_layers=6, share_order="sequence")  # one block per position


@pytest.mark.parametrize("init", ["average", "stepwise", "lower"])
@pytest.mark.parametrize("alpha", [0.0, 64.0])  # scale 1, and alpha / r = 4: the scale is applied once
def test_rrt_full_rank_conversion_reproduces_the_untied_model(init, alpha):
    untied, batch = untied_trm(), make_batch()
    source = dataclasses.replace(untied.config, rrt_alpha=alpha)  # the conversion divides alpha / r out of B
    config, state = relax_state_dict(source, untied.state_dict(), init, rank=16)
    rrt = MODELS["rrt"](dataclasses.replace(config, halt_rule=None, grad_mode=None))
    rrt.load_state_dict(state)
    assert rrt.core.scale == (alpha / 16 if alpha else 1.0)
    torch.testing.assert_close(logits_of(rrt, batch), logits_of(untied, batch), rtol=1e-4, atol=1e-4)


def test_rrt_low_rank_conversion_is_an_approximation():
    untied, batch = untied_trm(), make_batch()
    errors = []
    for rank in (0, 4, 16):
        config, state = relax_state_dict(untied.config, untied.state_dict(), "average", rank)
        rrt = MODELS["rrt"](dataclasses.replace(config, halt_rule=None, grad_mode=None))
        rrt.load_state_dict(state)
        errors.append((logits_of(rrt, batch) - logits_of(untied, batch)).abs().max().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3


def test_rrt_rank_zero_is_plain_tying():
    rrt = build("rrt", rrt_rank=0)
    trm = build("trm", seed=1)
    assert not any("lora" in n for n, _ in rrt.named_parameters())
    trm.load_state_dict(rrt.state_dict())
    batch = make_batch()
    assert torch.equal(logits_of(rrt, batch), logits_of(trm, batch))


def test_rrt_every_parameter_learns():
    model = build("rrt", rrt_rank=4)
    assert model.core.lora_A["self_attn__qkv_proj"].shape == (6, 4, 16)  # one LoRA per position of the H-cycle
    with torch.no_grad():  # fresh LoRAs start with B = 0, so A's first gradient is zero by design
        for p in model.core.lora_B.values():
            p.normal_(std=0.01)
    assert_every_parameter_learns(model)


# --- bad configurations -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides, field", [
    (dict(mor_capacity=0.0), "mor_capacity"),
    (dict(mor_capacity=1.5), "mor_capacity"),
    (dict(rrt_rank=17), "rrt_rank"),
    (dict(share_order="zigzag"), "share_order"),
    (dict(ut_max_steps=0), "ut_max_steps"),
    (dict(unique_layers=7), "unique_layers"),
    (dict(mor_router="psychic"), "mor_router"),
    (dict(mor_attend="some"), "mor_attend"),
])
def test_bad_variant_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^ModelConfig\.{field}="):
        tiny(**overrides)


def test_relax_shares_non_linear_block_parameters():
    """An untied run with a pairwise score bias and a grid conv converts into an rrt model that
    loads strictly: those parameters are shared by the init rule (no LoRA), never left per position."""
    torch.manual_seed(0)
    cfg = ModelConfig(seq_len=9, vocab_size=5, hidden_size=16, num_heads=2, expansion=2.0, H_cycles=1,
                      L_cycles=1, L_layers=1, unique_layers=2, halt_max_steps=2, forward_dtype="float32",
                      attn_bias="pairwise", ffn_conv=3)
    untied = MODELS["trm"](cfg)
    with torch.no_grad():  # both start at zero: make the positions differ
        for name, param in untied.named_parameters():
            if name.endswith(("score_bias", "conv.weight")):
                param.normal_()
    config, state = relax_state_dict(untied.config, untied.state_dict(), "average", rank=4)
    rrt = MODELS["rrt"](config)
    rrt.load_state_dict(state)  # strict: no missing or unexpected keys
    bias = [untied.state_dict()[f"core.L_level.layers.{i}.self_attn.score_bias"] for i in range(2)]
    assert torch.equal(rrt.state_dict()["core.L_level.layers.0.self_attn.score_bias"], (bias[0] + bias[1]) / 2)
