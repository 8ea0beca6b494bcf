"""ARC evaluation: undo each augmented prediction, vote per test input, pass@K and a Kaggle submission.

    voter = ArcVoter(test_puzzles, identifiers)      # test_puzzles.json, identifiers.json contents
    for batch, preds, q in eval_loop:                # tokens (B, canvas**2), q = sigmoid(q_halt_logits)
        voter.add(batch["puzzle_identifiers"], batch["inputs"], preds, q)
    voter.pass_at()     # {"pass@1": ..., "pass@2": ..., ...}
    voter.answer_concentration()  # (share of inputs given the most common answer, same for the truth)
    voter.submission()  # {task: [{"attempt_1": grid, "attempt_2": grid} per test input]}

As the reference evaluator (fixture README 5.3): each non-blank row is cropped (input and
prediction), mapped back through its puzzle's augmentation, and the inverted input's hash says
which original test input it answers. Distinct predictions of one test input are ranked by vote
count, ties by mean halting probability (then by first appearance); pass@K is 1 if the true
output is among the first K. A task scores the mean over its test inputs; the metric is the mean
over tasks. With several processes, gather `state()` from each and `merge` them into one voter.
For an in-context dataset (`slots` from its dataset.json) each row's query input and the prediction
in its query-output slot are the ones read (`encoding.query_slots`).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from puzzles.arc.data import to_grid
from puzzles.arc.encoding import COLOUR0, canvas_of, crop_shapes, invert_grid, parse_name, query_slots
from puzzles.grid import grid_hash

FALLBACK = [[0]]  # answer given for a test input that received no prediction


def _has_cells(grid: list) -> bool:
    """False for the empty grid a malformed prediction crops to (no colour cell at the top left):
    Kaggle scores such an attempt as wrong at best, so it never goes into a submission."""
    return bool(grid) and bool(grid[0])


def copy_input_score(test_puzzles: dict[str, dict]) -> float:
    """The copy-the-input baseline: mean over tasks of the share of test inputs whose output equals
    the input (one candidate per input, so its pass@1 and pass@2 are the same)."""
    scores = []
    for task in test_puzzles.values():
        hits = [ex.get("output") is not None and ex["output"] == ex["input"] for ex in task["test"]]
        scores.append(sum(hits) / len(hits))
    return float(np.mean(scores)) if scores else 0.0


def _numpy(x) -> np.ndarray:
    """numpy view of an array or a (CPU/GPU, any dtype) torch tensor, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.double() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def _cells(tokens: np.ndarray, h: int, w: int) -> np.ndarray:
    """Colours of the top-left h x w block of a (canvas**2,) token row (all colour tokens, by crop_shapes)."""
    side = canvas_of(tokens)
    return (tokens.reshape(side, side)[:h, :w] - COLOUR0).astype(np.uint8)


class ArcVoter:
    def __init__(self, test_puzzles: dict[str, dict], identifiers: Sequence[str], slots: int = 0):
        self.identifiers = list(identifiers)
        self.slots = slots  # grid slots per row (in-context layout); 0 = one canvas per row
        self.tasks: dict[str, list[tuple[str, str | None]]] = {}  # task -> [(input hash, output hash)]
        self.inputs: dict[str, list] = {}  # task -> its test input grids (the fallback for empty answers)
        self._index: dict[tuple[str, str], int] = {}  # (task, input hash) -> test input number
        for name, task in test_puzzles.items():
            pairs = []
            for k, ex in enumerate(task["test"]):
                where = f"test_puzzles: task {name} test pair {k}"
                h_in = grid_hash(to_grid(ex["input"], f"{where} input"))
                h_out = grid_hash(to_grid(ex["output"], f"{where} output")) if "output" in ex else None
                self._index.setdefault((name, h_in), k)
                pairs.append((h_in, h_out))
            self.tasks[name] = pairs
            self.inputs[name] = [ex["input"] for ex in task["test"]]
        # (task, test input number) -> {prediction hash: [votes, sum of q]} in first-seen order
        self.votes: dict[tuple[str, int], dict[str, list]] = {}
        self.grids: dict[str, list] = {}  # prediction hash -> grid as nested lists
        self._parsed: dict[int, tuple[str, int, np.ndarray] | None] = {}
        self.unmatched = 0  # rows whose inverted input is no known test input (should stay 0)

    def _parse(self, ident: int):
        if ident not in self._parsed:
            task, t, perm = parse_name(self.identifiers[ident])
            self._parsed[ident] = (task, t, perm) if task in self.tasks else None
        return self._parsed[ident]

    def add(self, identifier_ids, inputs, preds, q_halt_probs) -> None:
        """Record a batch: identifier ids (B,), input and predicted tokens (B, canvas**2, or
        B, slots * canvas**2), q in [0, 1] (B,)."""
        ids = _numpy(identifier_ids).reshape(-1)
        inputs = query_slots(_numpy(inputs).reshape(len(ids), -1), self.slots)[0]
        preds = query_slots(_numpy(preds).reshape(len(ids), -1), self.slots)[1]
        qs = _numpy(q_halt_probs).astype(np.float64).reshape(-1)
        keep = np.flatnonzero(ids != 0)  # 0 = <blank>: the padding rows of the last batch
        in_shapes, pred_shapes = crop_shapes(inputs[keep]), crop_shapes(preds[keep])
        for row, (hi, wi), (hp, wp) in zip(keep, in_shapes, pred_shapes):
            parsed = self._parse(int(ids[row]))
            if parsed is None:
                continue
            task, t, perm = parsed
            k = self._index.get((task, grid_hash(invert_grid(_cells(inputs[row], hi, wi), t, perm))))
            if k is None:
                self.unmatched += 1
                continue
            pred = invert_grid(_cells(preds[row], hp, wp), t, perm)
            h = grid_hash(pred)
            votes = self.votes.setdefault((task, k), {})
            stats = votes.setdefault(h, [0, 0.0])
            stats[0] += 1
            stats[1] += float(qs[row])
            if h not in self.grids:
                self.grids[h] = pred.tolist()

    def ranked(self, task: str, k: int) -> list[str]:
        """Prediction hashes for test input k of task, best first. Test inputs of a task that are the
        same grid share the votes of the first of them (the rows cannot tell them apart)."""
        k = self._index.get((task, self.tasks[task][k][0]), k)
        votes = self.votes.get((task, k), {})
        # sorted() is stable, so equal (count, mean q) keep their first-seen order, as in the reference
        return [h for h, _ in sorted(votes.items(), key=lambda kv: (kv[1][0], kv[1][1] / kv[1][0]), reverse=True)]

    def pass_at(self, ks: Sequence[int] = (1, 2, 5, 10, 100, 1000),
                tasks: Sequence[str] | None = None) -> dict[str, float]:
        """{"pass@K": mean over tasks (all, or the given ones) of the fraction of test inputs whose
        answer is in the top K}."""
        totals = np.zeros(len(ks))
        chosen = self.tasks if tasks is None else {t: self.tasks[t] for t in tasks}
        for task, pairs in chosen.items():
            hits = np.zeros(len(ks))
            for k, (_, h_out) in enumerate(pairs):
                ranked = self.ranked(task, k)
                if h_out is not None and h_out in ranked:
                    place = ranked.index(h_out)
                    hits += [place < K for K in ks]
            totals += hits / len(pairs)
        n = max(len(chosen), 1)
        return {f"pass@{K}": float(v / n) for K, v in zip(ks, totals)}

    def submission(self, attempts: int = 2) -> dict[str, list[dict]]:
        """Kaggle format: per task, per test input, the top `attempts` grids (first one repeated if fewer).
        An empty predicted grid is passed over for the next one, else the test input itself stands in
        (`empty_attempts` counts how often)."""
        out = {}
        for task, pairs in self.tasks.items():
            entries = []
            for k in range(len(pairs)):
                ranked = [self.grids[h] for h in self.ranked(task, k)]
                grids = [g for g in ranked if _has_cells(g)][:attempts]
                if ranked and not grids:
                    grids = [self.inputs[task][k]]
                grids = grids or [FALLBACK]
                grids += [grids[0]] * (attempts - len(grids))
                entries.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
            out[task] = entries
        return out

    def empty_attempts(self, attempts: int = 2) -> int:
        """Empty grids among the top `attempts` answers of every test input: attempts `submission`
        filled with the next answer or the test input instead."""
        return sum(not _has_cells(self.grids[h]) for task, pairs in self.tasks.items()
                   for k in range(len(pairs)) for h in self.ranked(task, k)[:attempts])

    def answer_concentration(self) -> tuple[float, float]:
        """(share of answered test inputs whose top answer is the most common top answer, the same
        share among their true outputs). A model that collapsed to one grid for every task (all
        black, say) shows a first figure near 1 where the second is small; pass@K alone hides it."""
        tops, truths = [], []
        for task, pairs in self.tasks.items():
            for k, (_, h_out) in enumerate(pairs):
                ranked = self.ranked(task, k)
                if ranked:
                    tops.append(ranked[0])
                    truths.append(h_out)

        def top_share(hashes: list) -> float:
            known = Counter(h for h in hashes if h is not None)
            return known.most_common(1)[0][1] / known.total() if known else 0.0
        return top_share(tops), top_share(truths)

    def state(self) -> dict:
        """Picklable votes, to gather from other processes and `merge` into one voter."""
        return {"votes": self.votes, "grids": self.grids, "unmatched": self.unmatched}

    def merge(self, state: dict) -> None:
        for key, votes in state["votes"].items():
            mine = self.votes.setdefault(key, {})
            for h, (count, qsum) in votes.items():
                stats = mine.setdefault(h, [0, 0.0])
                stats[0] += count
                stats[1] += qsum
        for h, g in state["grids"].items():
            self.grids.setdefault(h, g)
        self.unmatched += state["unmatched"]

