"""Loss head of the halting wrapper: token cross-entropy (stablemax or softmax), Q-halt BCE,
optional Q-continue BCE, and the summed metrics of fixture README section 4.8.

All quantities are *sums over the batch* (per-sequence means for the LM loss); the trainer
divides losses by the global batch size and the other metrics by max(count, 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_LABEL_ID = -100


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log(s(x) / sum s(x)) with s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0."""
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, kind: str = "stablemax") -> torch.Tensor:
    """Per-token loss (B, S) in float64; 0 where labels == IGNORE_LABEL_ID."""
    valid = labels != IGNORE_LABEL_ID
    logits64 = logits.to(torch.float64)
    logprobs = log_stablemax(logits64) if kind == "stablemax" else torch.log_softmax(logits64, dim=-1)
    safe = torch.where(valid, labels, 0).to(torch.long)
    picked = torch.gather(logprobs, -1, safe.unsqueeze(-1)).squeeze(-1)
    return -torch.where(valid, picked, 0)


def act_loss(logits: torch.Tensor, labels: torch.Tensor, q_halt_logits: torch.Tensor,
             q_continue_logits: torch.Tensor, target_q_continue: torch.Tensor | None,
             halted: torch.Tensor, steps: torch.Tensor, kind: str = "stablemax",
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Returns (loss, metrics, preds). loss = lm + 0.5 * (q_halt + q_continue), float64 sum.

    A row with no valid label counts as correct (its halt target is 1) but is not counted in
    the metrics (valid = halted & has labels), exactly as the reference.
    """
    mask = labels != IGNORE_LABEL_ID
    counts = mask.sum(-1)
    divisor = counts.clamp_min(1).unsqueeze(-1)
    with torch.no_grad():
        preds = logits.argmax(-1)
        is_correct = mask & (preds == labels)
        seq_correct = is_correct.sum(-1) == counts
        valid = halted & (counts > 0)
        metrics = {
            "count": valid.sum(),
            "accuracy": torch.where(valid, (is_correct.to(torch.float32) / divisor).sum(-1), 0).sum(),
            "exact_accuracy": (valid & seq_correct).sum(),
            "q_halt_accuracy": (valid & ((q_halt_logits >= 0) == seq_correct)).sum(),
            "steps": torch.where(valid, steps, 0).sum(),
        }
    lm_loss = (token_cross_entropy(logits, labels, kind) / divisor).sum()
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt_logits, seq_correct.to(q_halt_logits.dtype),
                                                     reduction="sum")
    if target_q_continue is not None:
        q_continue_loss = F.binary_cross_entropy_with_logits(q_continue_logits, target_q_continue,
                                                             reduction="sum")
    else:
        q_continue_loss = torch.zeros((), dtype=q_halt_loss.dtype, device=q_halt_loss.device)
    metrics["lm_loss"] = lm_loss.detach()
    metrics["q_halt_loss"] = q_halt_loss.detach()
    metrics["q_continue_loss"] = q_continue_loss.detach()
    return lm_loss + 0.5 * (q_halt_loss + q_continue_loss), metrics, preds
