"""Behaviour tests of models/ on tiny CPU configs (golden parity lives in test_models_golden.py).

Run: python -m pytest -q tests/test_models.py   (the compile test is marked slow)
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from models import MODELS, Carry, ModelConfig, build_model, load_reference_state_dict
from models.layers import Block, rms_norm, swiglu_width, trunc_normal_
from models.losses import IGNORE_LABEL_ID, token_cross_entropy
from models.params import main as params_main

B, S, V = 3, 8, 6


def tiny(**overrides) -> ModelConfig:
    fields = dict(seq_len=S, vocab_size=V, num_puzzle_identifiers=4, puzzle_emb_ndim=16, hidden_size=16,
                  num_heads=2, expansion=2.0, H_cycles=2, L_cycles=3, H_layers=1, L_layers=1,
                  halt_max_steps=3, halt_exploration_prob=0.0, forward_dtype="float32")
    fields.update(overrides)
    return ModelConfig(**fields)


def make_batch(seed: int = 0, batch: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(1, V, (batch, S), generator=g)
    labels[0, :2] = IGNORE_LABEL_ID
    return {"inputs": torch.randint(0, V, (batch, S), generator=g, dtype=torch.int32),
            "labels": labels,
            "puzzle_identifiers": torch.randint(0, 4, (batch,), generator=g, dtype=torch.int32)}


def build(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = MODELS[name](tiny(**overrides))
    with torch.no_grad():  # non-zero puzzle rows so their gradient path is exercised
        if model.puzzle_emb is not None:
            model.puzzle_emb.weights.normal_()
    return model


# --- config validation -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides, field", [
    (dict(hidden_size=30, num_heads=4), "hidden_size"),
    (dict(pos_encodings="alibi"), "pos_encodings"),
    (dict(halt_rule="sometimes"), "halt_rule"),
    (dict(grad_mode="two_step"), "grad_mode"),
    (dict(forward_dtype="float64"), "forward_dtype"),
    (dict(loss="mse"), "loss"),
    (dict(puzzle_emb_len=1, puzzle_emb_ndim=40), "puzzle_emb_len"),
    (dict(mlp_t=True, pos_encodings="rope"), "pos_encodings"),
    (dict(seq_len=0), "seq_len"),
    (dict(L_cycles=0), "L_cycles"),
    (dict(halt_exploration_prob=1.5), "halt_exploration_prob"),
    (dict(puzzle_emb_ndim=-1), "puzzle_emb_ndim"),
    (dict(hidden_size=18, num_heads=6), "num_heads"),  # head dim 3: RoPE needs it even
])
def test_bad_config_raises_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}"):
        tiny(**overrides)


def test_hrm_needs_h_layers_and_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="H_layers"):
        MODELS["hrm"](tiny(H_layers=0))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("gpt", tiny().arch, tiny().shape, "float32")


def test_mlp_t_rejects_a_batch_of_another_length():
    model = build("trm-mlp")
    batch = make_batch()
    batch = {k: (v[:, :-1] if v.ndim == 2 else v) for k, v in batch.items()}
    with pytest.raises(ValueError, match="seq_len"):
        model(model.initial_carry(batch), batch)


def test_registry_defaults_reproduce_the_reference_choices():
    assert (build("hrm").config.halt_rule, build("hrm").config.grad_mode) == ("q_halt_vs_continue", "one_step")
    assert (build("trm").config.halt_rule, build("trm").config.grad_mode) == ("q_halt", "last_cycle")
    mlp = build("trm-mlp").config
    assert mlp.mlp_t and mlp.pos_encodings == "none"
    assert build("trm", halt_rule="q_halt_vs_continue").config.halt_rule == "q_halt_vs_continue"
    # Same L_layers -> the baseline transformer has exactly TRM's trainable parameters.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build("transformer")) == count(build("trm"))


@pytest.mark.parametrize("ndim, length, prefix", [(0, 0, 0), (0, 2, 2), (16, 0, 1), (40, 3, 3)])
def test_puzzle_prefix_length(ndim, length, prefix):
    model = build("trm", puzzle_emb_ndim=ndim, puzzle_emb_len=length)
    assert model.config.prefix_len == prefix and (model.puzzle_emb is None) == (ndim == 0)
    batch = make_batch()
    model.train()
    carry, loss, _, outputs, _ = model(model.initial_carry(batch), batch)
    loss.backward()
    assert carry.z_H.shape == (B, S + prefix, 16) and outputs["logits"].shape == (B, S, V)
    if prefix and ndim == 0:  # prefix positions without a table receive zero input
        assert torch.all(model.embed(batch)[:, :prefix] == 0)


# --- layers ----------------------------------------------------------------------------------
def test_swiglu_width_matches_the_reference_rounding():
    assert [swiglu_width(n, 4) for n in (64, 128, 512, 20, 97)] == [256, 512, 1536, 256, 512]


def test_truncated_normal_has_requested_std_and_bounds():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(200_000), std=0.5)
    assert abs(x.std().item() - 0.5) < 0.005
    assert x.abs().max().item() <= 2 * 0.5 / 0.8796 + 1e-6  # clipped at two internal scales


# --- losses ----------------------------------------------------------------------------------
def test_stablemax_and_softmax_losses_ignore_masked_tokens():
    logits = torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[1, 3] = IGNORE_LABEL_ID
    soft = token_cross_entropy(logits, labels, "softmax")
    ref = torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), labels.flatten(), reduction="none",
                                            ignore_index=IGNORE_LABEL_ID).view(2, 5)
    torch.testing.assert_close(soft, ref)
    stable = token_cross_entropy(logits, labels, "stablemax")
    assert stable.dtype == torch.float64 and stable[1, 3] == 0 and soft[1, 3] == 0
    x = logits.double()[0, 0]
    s = torch.where(x >= 0, x + 1, 1 / (1 - x))
    assert math.isclose(stable[0, 0].item(), -math.log(s[labels[0, 0]] / s.sum()), rel_tol=1e-12)


@pytest.mark.parametrize("loss", ["stablemax", "softmax"])
def test_metrics_are_zero_d_sums(loss):
    model = build("trm", loss=loss)
    model.train()
    batch = make_batch()
    _, total, metrics, outputs, _ = model(model.initial_carry(batch), batch)
    assert set(metrics) == {"count", "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss",
                            "q_halt_loss", "q_continue_loss"}
    assert all(v.ndim == 0 for v in metrics.values())
    torch.testing.assert_close(total, metrics["lm_loss"] + 0.5 * (metrics["q_halt_loss"] + metrics["q_continue_loss"]))
    assert set(outputs) == {"logits", "q_halt_logits", "q_continue_logits", "preds"}


# --- halting wrapper -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hrm", "trm", "trm-mlp", "transformer"])
@pytest.mark.parametrize("rule", ["q_halt", "q_halt_vs_continue"])
def test_both_halting_rules_train_for_every_model(name, rule):
    model = build(name, halt_rule=rule)
    model.train()
    with torch.no_grad():  # q_halt ~ 0.5 > 0 but < q_continue ~ 1: the two rules disagree
        model.q_head.bias.copy_(torch.tensor([0.5, 1.0]))
        model.q_head.weight.normal_(std=0.01)  # so the next step's Q differs (non-zero continue loss grad)
    batch = make_batch()
    carry, loss, metrics, outputs, _ = model(model.initial_carry(batch), batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert carry.halted.all() == (rule == "q_halt")
    if rule == "q_halt_vs_continue":
        target = outputs["target_q_continue"]
        assert target.shape == (B,) and ((target > 0) & (target < 1)).all()
        assert metrics["q_continue_loss"] > 0
        assert model.q_head.bias.grad[1] != 0  # the continue logit is trained
    else:
        assert "target_q_continue" not in outputs and metrics["q_continue_loss"] == 0
        assert model.q_head.bias.grad[1] == 0


def test_continue_target_is_the_next_steps_best_q():
    model = build("trm", halt_rule="q_halt_vs_continue")
    model.train()
    batch = make_batch()
    carry, _, _, outputs, _ = model(model.initial_carry(batch), batch)
    with torch.no_grad():
        z_H, _ = model.think(carry.z_H, carry.z_L, model.embed(carry.current_data))
        _, q_halt, q_cont = model.heads(z_H)
    torch.testing.assert_close(outputs["target_q_continue"], torch.sigmoid(torch.maximum(q_halt, q_cont)))


def test_exploration_draws_twice_every_training_step():
    model = build("trm", halt_exploration_prob=0.0)
    model.train()
    batch = make_batch()
    carry = model.initial_carry(batch)
    torch.manual_seed(7)
    model(carry, batch)
    after_model = torch.rand(4)
    torch.manual_seed(7)
    torch.rand(B), torch.randint(2, 4, (B,), dtype=torch.int32)
    torch.testing.assert_close(after_model, torch.rand(4))


def test_exploration_keeps_rows_running_to_their_minimum():
    model = build("trm", halt_exploration_prob=1.0, halt_max_steps=4)
    model.train()
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # every row wants to halt at once
    batch = make_batch()
    carry, _, _, _, _ = model(model.initial_carry(batch), batch)
    assert not carry.halted.any()  # minimum steps are >= 2


def test_halted_rows_restart_on_new_data_and_others_keep_theirs():
    model = build("trm")
    model.train()
    first, second = make_batch(0), make_batch(1)
    carry = model.initial_carry(first)
    carry, *_ = model(carry, first)
    carry.halted = torch.tensor([True, False, False])
    carry.steps = torch.tensor([1, 1, 2], dtype=torch.int32)
    reset = model.reset(carry, second)
    assert torch.equal(reset.current_data["inputs"][0], second["inputs"][0])
    assert torch.equal(reset.current_data["inputs"][1:], first["inputs"][1:])
    assert torch.equal(reset.z_H[0], model.H_init.expand(S + model.config.prefix_len, -1))
    assert torch.equal(reset.z_L[1:], carry.z_L[1:]) and reset.steps.tolist() == [0, 1, 2]
    carry, *_ = model(carry, second)
    assert carry.steps.tolist() == [1, 2, 3] and carry.halted[2]  # row 2 hits halt_max_steps


@pytest.mark.parametrize("name", ["hrm", "trm"])
def test_eval_runs_to_max_steps_unless_adaptive(name):
    model = build(name, halt_max_steps=4)
    model.eval()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([3.0, -3.0]))  # both rules say halt now
    batch = make_batch()
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for step in range(1, 5):
            carry, _, metrics, _, all_finish = model(carry, batch)
            assert bool(all_finish) == (step == 4) and metrics["count"] == (B if step == 4 else 0)
        carry, _, _, _, all_finish = model(model.initial_carry(batch), batch, adaptive=True)
        assert all_finish and carry.steps.tolist() == [1] * B


def test_step_api_is_usable_without_labels():
    model = build("trm")
    model.eval()
    batch = make_batch()
    del batch["labels"]
    with torch.inference_mode():
        carry, logits, q_halt, q_continue = model.step(model.initial_carry(batch), batch)
    assert isinstance(carry, Carry) and logits.shape == (B, S, V) and q_halt.shape == q_continue.shape == (B,)


# --- gradients ---------------------------------------------------------------------------------
def count_differentiated_calls(model, batch) -> int:
    flags: list[bool] = []
    nets = {m for n, m in model.named_modules() if n.endswith(("L_level", "H_level"))}
    hooks = [net.register_forward_pre_hook(lambda *_: flags.append(torch.is_grad_enabled())) for net in nets]
    model.train()
    model(model.initial_carry(batch), batch)[1].backward()
    for hook in hooks:
        hook.remove()
    return sum(flags)


@pytest.mark.parametrize("name", ["hrm", "trm"])
def test_grad_mode_sets_which_calls_are_differentiated(name):
    # H_cycles=2, L_cycles=3 -> 8 calls per step (the q_halt rule avoids HRM's extra no-grad pass).
    calls = {mode: count_differentiated_calls(build(name, grad_mode=mode, halt_rule="q_halt"), make_batch())
             for mode in ("one_step", "last_cycle", "full")}
    assert calls == {"one_step": 2, "last_cycle": 4, "full": 8}


def test_grad_modes_change_the_gradient():
    grads = {}
    for mode in ("one_step", "last_cycle", "full"):
        model = build("trm", grad_mode=mode)
        model.train()
        model(model.initial_carry(make_batch()), make_batch())[1].backward()
        grads[mode] = model.embedding.embed_tokens.embedding_weight.grad.clone()
    assert not torch.allclose(grads["full"], grads["last_cycle"])
    assert not torch.allclose(grads["one_step"], grads["last_cycle"])


def test_sparse_puzzle_embedding_gradient_lands_on_batch_rows_only():
    model = build("trm")
    model.train()
    batch = make_batch()
    batch["puzzle_identifiers"] = torch.tensor([2, 0, 2], dtype=torch.int32)
    model(model.initial_carry(batch), batch)[1].backward()
    emb = model.puzzle_emb
    assert emb.local_ids.tolist() == [2, 0, 2]
    torch.testing.assert_close(emb.local_weights.detach(), emb.weights[[2, 0, 2]])
    assert emb.local_weights.grad.abs().sum(-1).gt(0).all() and emb.weights.grad is None
    handle = emb.local_weights
    model.eval()
    with torch.no_grad():  # eval reads the table; the scratch (and its grad) is left alone
        model(model.initial_carry(batch), batch)
    assert emb.local_weights is handle and handle.grad is not None


@pytest.mark.parametrize("name", ["hrm", "trm", "trm-mlp", "transformer"])
def test_bfloat16_forward_backward_is_finite(name):
    model = build(name, forward_dtype="bfloat16", pos_encodings="learned")
    model.train()
    batch = make_batch()
    carry, loss, _, outputs, _ = model(model.initial_carry(batch), batch)
    loss.backward()
    assert outputs["logits"].dtype == torch.bfloat16 and carry.z_H.dtype == torch.bfloat16
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters())


# --- reference import and CLI --------------------------------------------------------------------
def test_reference_import_strips_prefixes_and_resizes_the_puzzle_table():
    source = build("hrm", seed=1)
    reference = {}
    for key, value in source.state_dict().items():
        key = key.replace("embedding.", "").replace("core.", "")
        reference["_orig_mod.model.inner." + key] = value
    reference["_orig_mod.model.inner.puzzle_emb.weights"] = torch.arange(14.0).view(7, 2).repeat(1, 8)
    target = build("hrm", seed=2)
    warnings = load_reference_state_dict(target, reference)
    assert len(warnings) == 1 and "7 rows" in warnings[0]
    torch.testing.assert_close(target.lm_head.weight, source.lm_head.weight)
    torch.testing.assert_close(target.core.H_level.layers[0].mlp.down_proj.weight,
                               source.core.H_level.layers[0].mlp.down_proj.weight)
    assert torch.all(target.puzzle_emb.weights == reference["_orig_mod.model.inner.puzzle_emb.weights"].mean(0))
    del reference["_orig_mod.model.inner.H_init"]
    with pytest.raises(ValueError, match="H_init"):
        load_reference_state_dict(target, reference)


def test_params_cli_reports_the_paper_sizes(capsys):
    assert params_main([]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:]:
        tokens = line.split()
        i = next(i for i, t in enumerate(tokens) if t in MODELS)
        rows[tokens[i]] = float(tokens[i + 1].rstrip("M"))
    assert abs(rows["trm"] - 7) < 0.5 and abs(rows["trm-mlp"] - 5) < 0.5 and abs(rows["hrm"] - 27) < 1


# --- compile ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_compiled_supervision_step_matches_eager():
    """fullgraph=True: the whole supervision step (with the sparse scratch) is one graph."""
    torch._dynamo.reset()
    model = build("trm", halt_exploration_prob=0.5)
    model.train()
    batch = make_batch()
    compiled = torch.compile(model, fullgraph=True)
    losses, grads = [], []
    for fn in (compiled, model):
        model.zero_grad()
        torch.manual_seed(3)
        _, loss, _, _, _ = fn(model.initial_carry(batch), batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()] + [model.puzzle_emb.local_weights.grad.clone()])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_token_mixer_layouts_agree():
    """float32 mixes positions position-major (W @ (T, B*C)), other dtypes channel-major as the
    reference ((B*C, T) rows @ W^T; on 2-D rows without autograd): the same map, so values and
    gradients agree with the channel-major formula in float64 up to float32 rounding."""
    torch.manual_seed(0)
    block = Block(16, 2, 4.0, 1e-5, mlp_t=True, total_len=9)
    h = torch.randn(3, 9, 16)

    def channel_major(x: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)  # (B, C, T): each channel's T positions as one row
        gate, up = block.mlp_t.gate_up_proj(xt).chunk(2, dim=-1)
        return rms_norm(xt + block.mlp_t.down_proj(torch.nn.functional.silu(gate) * up), 1e-5).transpose(1, 2)

    a = h.clone().requires_grad_(True)
    ours = block.mix_positions(a)
    assert ours.is_contiguous()  # the carry keeps the strides compiled graphs were traced with
    ours.square().sum().backward()
    grads = [a.grad] + [p.grad.clone() for p in block.mlp_t.parameters()]
    block.zero_grad()
    block.double()
    b = h.double().requires_grad_(True)
    want = channel_major(b)
    want.square().sum().backward()
    torch.testing.assert_close(ours.double(), want.detach(), rtol=1e-5, atol=1e-6)
    for got, exact in zip(grads, [b.grad] + [p.grad for p in block.mlp_t.parameters()]):
        torch.testing.assert_close(got.double(), exact, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.mix_positions(b.detach()), want.detach())  # float64: channel-major
    with torch.no_grad():  # ... on explicit 2-D rows without autograd (rms_norm rounds through float32)
        torch.testing.assert_close(block.mix_positions(b.detach()), want.detach(), rtol=1e-6, atol=1e-6)
        assert block.mix_positions(b.detach()).is_contiguous()
