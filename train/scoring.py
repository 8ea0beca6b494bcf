"""Scoring an evaluation: per-example sums, their reduction across ranks, and ARC voting.

    sums = score(res, family, info)            # sums, not means: ranks add them before dividing
    metrics = reduce(sums, system)             # means over the counted examples, plus "count"
    metrics |= arc_vote(res, data_dir, out_dir, system)     # pass@K, answer collapse; writes submission.json

Metrics: accuracy (cells), exact_accuracy (whole answers), q_halt_accuracy (the halting head's
"I am right" agrees with exactness), steps (steps run), halt_steps (step at which the halting head
first said stop), valid_solution (the puzzle's own rules hold; Sudoku and maze), and, with several
trajectories per puzzle, the exact counts under every selection rule (train/trajectories.py).
ARC adds changed_cell_accuracy: the accuracy on the cells whose answer differs from the input (both
are canvas tokens; the answer's PAD cells are the ignore label), so copying the input scores 0 where
plain accuracy rewards it for every unchanged cell; a mean over the examples that have such cells.
On an in-context dataset (`info["slots"]`) the answer slot is compared with the query input's slot.
After voting, same_answer_share is the share of held-out test inputs given the most common answer
grid and same_truth_share the same share among their true outputs: a collapsed model (one grid
for every task) shows the first near 1 while pass@K alone only looks poor.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.losses import IGNORE_LABEL_ID as IGNORE
from puzzles.check import CHECKED, valid_solution
from puzzles.dataset import load_identifiers
from puzzles.errors import atomic_write

from . import collectives


def score(res: dict, family: str, info: dict) -> dict[str, float]:
    """Sums (not means) of the per-example metrics, so ranks can add them before dividing."""
    labels, preds = res["labels"], res["preds"]
    mask = labels != IGNORE
    n = mask.sum(-1)
    counted = n > 0
    correct = (mask & (preds == labels)).sum(-1)
    exact = counted & (correct == n)
    q_right = counted & ((res["q_halt_logit"] >= 0) == exact)
    sums = {"count": float(counted.sum()), "accuracy": float((correct / np.maximum(n, 1))[counted].sum()),
            "exact_accuracy": float(exact.sum()), "q_halt_accuracy": float(q_right.sum()),
            "steps": float(res["steps_run"][counted].sum()), "halt_steps": float(res["steps"][counted].sum())}
    if family in CHECKED:
        sums["valid_solution"] = float(valid_solution(family, info, res["inputs"], preds)[counted].sum())
    if family == "arc":  # inputs and labels are both canvas tokens; `mask` drops the answer's PAD cells
        from puzzles.arc import query_slots
        slots = info.get("slots", 0)
        given = query_slots(res["inputs"], slots)[0]
        answer, guess = (query_slots(x, slots)[1] for x in (labels, preds))
        changed = (answer != IGNORE) & (answer != given)
        m = changed.sum(-1)
        right = (changed & (guess == answer)).sum(-1)
        sums["changed_count"] = float((m > 0).sum())
        sums["changed_cell_accuracy"] = float((right / np.maximum(m, 1))[m > 0].sum())
    return sums


def reduce(sums: dict[str, float], system) -> dict[str, float]:
    """Sums over ranks divided by the number of counted examples; "count" itself stays a count."""
    names = sorted(sums)
    if system.distributed:
        t = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=system.device)
        collectives.sum_(t)
        sums = dict(zip(names, t.cpu().tolist()))
    count = max(sums.pop("count"), 1.0)
    changed = sums.pop("changed_count", None)  # changed_cell_accuracy's own denominator
    means = {k: v / count for k, v in sums.items()} | {"count": count}
    if changed is not None:
        means["changed_cell_accuracy"] = sums["changed_cell_accuracy"] / max(changed, 1.0)
    return means


def collapse_warning(metrics: dict, run_dir: Path | str = "RUN") -> str:
    """A warning (or "") when most ARC test inputs got one and the same answer grid while their true
    outputs are not that alike (at least twice as concentrated): the run may have collapsed to one answer."""
    same, truth = metrics.get("same_answer_share", 0.0), metrics.get("same_truth_share", 0.0)
    if same < 0.5 or same < 2 * truth:
        return ""
    truths = f"their true outputs: {truth:.0%} alike" if truth else "their true outputs are not given"
    return (f"warning: {same:.0%} of the held-out test inputs got the same answer grid ({truths}); the model "
            f"may have collapsed to one answer (see its predictions: python -m train.visualize {run_dir})")


def arc_copy_baseline(data_dir: Path) -> float | None:
    """pass@2 (= pass@1) of copying each held-out test input as its answer, the floor an ARC run's
    pass@K is read against; None for a dataset without test_puzzles.json."""
    from puzzles.arc import copy_input_score
    path = Path(data_dir) / "test_puzzles.json"
    return copy_input_score(json.loads(path.read_text())) if path.exists() else None


def arc_vote(res: dict, data_dir: Path, out_dir: Path | None, system, slots: int = 0) -> dict[str, float]:
    """pass@K of the ARC test tasks after mapping every augmented prediction back and voting (all
    ranks' predictions), and how many empty predicted grids the submission replaced; rank 0 writes
    the Kaggle `submission.json` into `out_dir`. `slots`: the grid slots of an in-context dataset."""
    from puzzles.arc import ArcVoter
    path = Path(data_dir) / "test_puzzles.json"
    if not path.exists():
        return {}
    voter = ArcVoter(json.loads(path.read_text()), load_identifiers(data_dir), slots)
    # The raw predictions: the voter crops each one itself (masking with the labels would leak
    # the true answer's shape into the prediction).
    voter.add(res["puzzle_identifiers"], res["inputs"], res["preds"],
              1.0 / (1.0 + np.exp(-res["q_halt_logit"].astype(np.float64))))
    if system.distributed:
        states = collectives.gather_objects(voter.state())
        for i, state in enumerate(states):
            if i != system.rank:
                voter.merge(state)
    if out_dir is not None and system.is_main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out_dir) / "submission.json", json.dumps(voter.submission(), indent=1))
    # empty predicted grids never become attempts; how many were replaced is reported with pass@K
    same_answer, same_truth = voter.answer_concentration()
    return voter.pass_at() | {"empty_attempts_replaced": float(voter.empty_attempts()),
                              "same_answer_share": same_answer, "same_truth_share": same_truth}
