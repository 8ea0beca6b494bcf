"""The CPU's explicit bf16 attention is as accurate as the fused kernel used on GPUs.

Scores rounded to bf16 before the softmax (an earlier form of models.layers.attend) gave several
times the fused kernel's error, and a bf16 CPU maze run learned far less than a GPU run of the same
recipe (docs/maze_arc.md). Errors are relative to a float64 computation on the same bf16 inputs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.layers import attend


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("scale", [3.0, 6.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bf16_attend_is_within_the_fused_kernels_error(scale: float, with_bias: bool) -> None:
    g = torch.Generator().manual_seed(0)
    B, H, T, d = 8, 4, 121, 32  # an 11x11 maze's cells, the quick preset's heads
    q, k = (torch.randn(B, H, T, d, generator=g) * scale for _ in range(2))
    v = torch.randn(B, H, T, d, generator=g)
    bias = torch.randn(H, T, T, generator=g) if with_bias else None
    qb, kb, vb = (x.bfloat16() for x in (q, k, v))
    bb = bias.bfloat16() if with_bias else None
    scores = (qb.double() @ kb.double().transpose(-1, -2)) * d ** -0.5
    if with_bias:
        scores = scores + bb.double()
    ref = scores.softmax(-1) @ vb.double()
    ours = relative_error(attend(qb, kb, vb, bb), ref)
    fused = relative_error(F.scaled_dot_product_attention(qb, kb, vb, attn_mask=bb), ref)
    rounded = (qb * d ** -0.5) @ kb.transpose(-1, -2)  # bf16 scores, the form this test guards against
    if with_bias:
        rounded = rounded + bb
    rounded_scores = relative_error(rounded.softmax(-1) @ vb, ref)
    assert ours <= 1.3 * fused, (ours, fused)
    assert rounded_scores > 1.5 * fused  # the check would have caught the bf16 scores
