"""Grid-aware levers: 2-D positions (axial RoPE, learned row + column) and the feed-forward
grid convolution. Run: python -m pytest -q tests/test_positions.py
"""
from __future__ import annotations

import pytest
import torch

from models import MODELS, ModelConfig
from models.embedding import InputEmbedding
from models.layers import GridConv, RotaryEmbedding, grid_positions


def config(**overrides) -> ModelConfig:
    fields = dict(seq_len=12, vocab_size=5, hidden_size=16, num_heads=2, expansion=2.0, H_cycles=2,
                  L_cycles=2, L_layers=1, halt_max_steps=2, forward_dtype="float32", grid_width=4)
    fields.update(overrides)
    return ModelConfig(**fields)


def test_grid_positions_on_a_non_square_grid_with_a_prefix():
    rows, cols = grid_positions(prefix=2, rows=3, cols=4)
    assert rows.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert cols.tolist() == [0, 0, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]
    assert config().grid_shape == (3, 4)
    assert config(seq_len=36, grid_width=0).grid_shape == (6, 6)


def test_rope2d_code_is_a_function_of_row_and_column_only():
    """Two cells in the same column share the column half of every rotation, two in the same row
    the row half; the tables do not depend on the grid's content (they take none)."""
    cos, _ = RotaryEmbedding(8, 2 + 12, 10000.0, grid=(2, 3, 4))()
    idx = lambda r, c: 2 + r * 4 + c
    row_part, col_part = slice(0, 2), slice(2, 4)  # head_dim 8: 4 frequencies, 2 per axis
    assert torch.equal(cos[idx(0, 1), col_part], cos[idx(2, 1), col_part])
    assert not torch.equal(cos[idx(0, 1), row_part], cos[idx(2, 1), row_part])
    assert torch.equal(cos[idx(1, 0), row_part], cos[idx(1, 3), row_part])
    assert torch.equal(cos[0], torch.ones(8)) and torch.equal(cos[1], torch.ones(8))  # prefix: no turn
    # Shift the content one cell right: the model's scores change only through the content,
    # because the attention logits for offsets (dr, dc) are identical everywhere in the grid.
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)
    from models.layers import apply_rope
    table = RotaryEmbedding(8, 2 + 12, 10000.0, grid=(2, 3, 4))()
    rot = lambda v, p: apply_rope(v.view(1, 1, 1, 8).expand(1, 14, 1, 8), *table)[0, p, 0]
    score = lambda a, b: float(rot(q, a) @ rot(k, b))
    assert score(idx(0, 0), idx(1, 2)) == pytest.approx(score(idx(1, 1), idx(2, 3)), abs=1e-5)
    assert score(idx(0, 0), idx(1, 2)) != pytest.approx(score(idx(0, 0), idx(2, 1)), abs=1e-3)


def test_one_d_rope_is_unchanged_by_the_grid_option():
    """rope (1-D) ignores grid_width: the same tables as positions 0..T-1 with the base formula."""
    cos, sin = RotaryEmbedding(8, 6, 100.0)()
    inv = 1.0 / (100.0 ** (torch.arange(0, 8, 2).float() / 8))
    angles = torch.outer(torch.arange(6).float(), inv)
    assert torch.equal(cos, torch.cat((angles, angles), -1).cos())
    assert torch.equal(sin, torch.cat((angles, angles), -1).sin())


def test_learned2d_gives_equal_rows_equal_row_vectors():
    emb = InputEmbedding(config(pos_encodings="learned2d", puzzle_emb_ndim=16, num_puzzle_identifiers=2))
    tokens = torch.zeros(1, 12, dtype=torch.int32)  # same token everywhere: only positions differ
    x = emb(tokens, torch.zeros(1, dtype=torch.int32))[0]
    assert x.shape == (1 + 12, 16)
    # cells (0,1) and (0,2) differ only by their column vectors
    col = emb.embed_col.embedding_weight
    diff = (x[1 + 1] - x[1 + 2]) / (emb.scale * 0.57735027)
    assert torch.allclose(diff, col[2] - col[3], atol=1e-5)


@pytest.mark.parametrize("name, overrides", [
    *[(name, o) for name in ("trm", "hrm") for o in (
        dict(pos_encodings="rope2d"), dict(pos_encodings="learned2d"), dict(pos_encodings="rope2d+learned2d", ffn_conv=3))],
    ("trm", dict(attn_bias="pairwise", puzzle_emb_ndim=16, num_puzzle_identifiers=2)),
    ("hrm", dict(attn_bias="pairwise", pos_encodings="none")),
    ("trm", dict(pos_encodings="learned2d", mlp_t=True, ffn_conv=3, puzzle_emb_ndim=16, num_puzzle_identifiers=2)),
])
def test_levers_train_and_every_parameter_gets_a_gradient(name, overrides):
    torch.manual_seed(0)
    cfg = config(H_layers=1, grad_mode="full", **overrides)
    model = MODELS[name](cfg)
    if model.puzzle_emb is not None:
        model.puzzle_emb.weights.normal_()
    batch = {"inputs": torch.randint(0, 5, (3, 12), dtype=torch.int32), "labels": torch.randint(1, 5, (3, 12)),
             "puzzle_identifiers": torch.zeros(3, dtype=torch.int32)}
    model.train()
    carry = model.initial_carry(batch)
    carry, loss, metrics, outputs, _ = model(carry, batch)
    assert outputs["logits"].shape == (3, 12, 5)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if pname.endswith(("conv.weight", "score_bias")):  # zero-initialised, but they must learn
            assert p.grad.abs().sum() > 0, pname


def test_grid_conv_mixes_neighbours_only_and_leaves_the_prefix():
    conv = GridConv(channels=1, kernel=3, prefix=1, rows=3, cols=4)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    h = torch.zeros(1, 13, 1)
    h[0, 1 + 5] = 1.0  # cell (1, 1)
    out = conv(h)[0, :, 0]
    assert out[0] == 0  # prefix untouched
    grid = out[1:].view(3, 4)
    assert grid[1, 1] == 2  # residual + centre tap
    assert grid[0, 0] == 1 and grid[2, 2] == 1 and grid[0, 3] == 0 and grid[2, 3] == 0


@pytest.mark.parametrize("overrides, field", [
    (dict(pos_encodings="rope2d", seq_len=12, grid_width=5), "grid_width"),
    (dict(pos_encodings="learned2d", seq_len=10, grid_width=0), "grid_width"),
    (dict(ffn_conv=2), "ffn_conv"),
    (dict(attn_bias="relative"), "attn_bias"),
    (dict(attn_bias="pairwise", mlp_t=True, pos_encodings="none"), "attn_bias"),
    (dict(ffn_conv=-3), "ffn_conv"),
    (dict(pos_encodings="rope2d", mlp_t=True), "pos_encodings"),
    (dict(pos_encodings="rope2d", hidden_size=12, num_heads=2), "num_heads"),
])
def test_bad_grid_options_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        config(**overrides)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pairwise_bias_reaches_the_attention_scores(dtype):
    """A large bias towards one key makes every query read that key's value (both kernels)."""
    from models.layers import attend
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, dtype=dtype) for _ in range(3))
    bias = torch.zeros(2, 5, 5, dtype=dtype)
    bias[:, :, 3] = 1e4
    out = attend(q, k, v, bias)
    assert torch.allclose(out.float(), v[:, :, 3:4].expand_as(v).float(), atol=1e-2)
    assert torch.allclose(attend(q, k, v, torch.zeros_like(bias)).float(), attend(q, k, v).float(), atol=1e-2)
