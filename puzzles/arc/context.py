"""In-context ARC examples: a task's demonstration pairs and one query in a single sequence.

    from puzzles.arc.build import build_arc
    built = build_arc(tasks, test_set_name="evaluation", num_aug=7, seed=42, canvas=10, context=3)
    built.splits["train"].meta["slots"]    # 8 = 2 * 3 + 2 grid slots of 10 x 10 tokens

A model that reads the demonstrations needs no puzzle embedding learned per task: it can answer a
task it never trained on. Layout (`context` K): 2K + 2 canvas slots, each encoded as
`encoding.encode_grid` does one grid, one after another:

    in_1, out_1, ..., in_K, out_K, query_in, query_out      (seq_len = (2K + 2) * canvas**2)

A task with fewer than K demonstrations leaves the leading pair slots PAD (the demonstrations
sit next to the query); the query-output slot of the input is always PAD, and the labels are PAD
(the dataset's ignore label) everywhere except there, so only the answer is trained and scored. Fixed slots rather than grids cropped to their
size and packed: every example has the same shape (torch.compile sees static shapes), a cell's
(row, column, slot) is where it sits in the sequence, so 3-D positions are a pure function of the
index, and every canvas tool (crop, voting, translation) works on a slot unchanged.

Examples: train holds each copy of a task once per demonstration pair, that pair the query and the
K pairs after it (cyclically) the context (leave-one-out); test holds each test input with the
task's first K demonstrations. Every grid of an example shares its copy's dihedral transform and
colour map (the identifier `<task>|||t<t>|||<perm>`, as the plain layout, so the voter undoes them)
and, in train, one translation inside the canvas. Stored materialised (no compact form).
"""
from __future__ import annotations

import numpy as np

from puzzles.arc.encoding import VOCAB_SIZE, aug_name, augment_grid, encode_grid
from puzzles.errors import PuzzleError
from puzzles.splits import SplitData


def check_context(context: int) -> int:
    """`context` as an int; PuzzleError unless it is a count >= 0 (0 = the plain one-pair layout)."""
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise PuzzleError(f"context must be a count of demonstration pairs >= 0, got {context!r}")
    return int(context)


def context_slots(context: int) -> int:
    """Grid slots of an example with `context` demonstration pairs: K pairs, query input, query output."""
    return 2 * context + 2


def _pick(pairs: list, query: int, context: int) -> list:
    """The K pairs after `query`, cyclically, never the query itself (leave-one-out)."""
    n = len(pairs)
    return [pairs[(query + j) % n] for j in range(1, n)][:context]


def _example(demos: list, query_in: np.ndarray, query_out: np.ndarray, context: int, offset: tuple[int, int],
             canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels), each (slots * canvas**2,) uint8, of one example (grids already augmented).
    The demonstrations fill the last slots before the query, so the query always has its
    nearest context and missing demonstrations are leading PAD slots."""
    cells = canvas * canvas
    slots = context_slots(context)
    x, y = np.zeros((slots, cells), np.uint8), np.zeros((slots, cells), np.uint8)
    first = context - len(demos)
    for j, (i, o) in enumerate(demos):
        x[2 * (first + j)] = encode_grid(i, offset, canvas)
        x[2 * (first + j) + 1] = encode_grid(o, offset, canvas)
    x[-2] = encode_grid(query_in, offset, canvas)
    y[-1] = encode_grid(query_out, offset, canvas)
    return x.reshape(-1), y.reshape(-1)


def _offset(grids: list[np.ndarray], canvas: int, rs: np.random.RandomState | None) -> tuple[int, int]:
    """One top-left offset at which every grid of the example fits ((0, 0) without `rs`)."""
    if rs is None:
        return 0, 0
    rows = canvas - max(g.shape[0] for g in grids)
    cols = canvas - max(g.shape[1] for g in grids)
    return int(rs.randint(0, rows + 1)), int(rs.randint(0, cols + 1))


def context_split(groups: list, demos_of: dict[str, list], ids: dict[str, int], context: int, canvas: int,
                  rs: np.random.RandomState | None) -> SplitData:
    """One split of in-context examples. `groups` are the builder's task groups (task, pairs, augs);
    `demos_of[task]` the pairs shown as context, or absent for leave-one-out over the group's own
    pairs (train); `rs` draws a translation per example (train) or None (test: no translation)."""
    inputs, labels, puzzle_ids, sizes = [], [], [], []
    for g in groups:
        for a, (t, perm) in enumerate(g.augs):
            aug = lambda pairs: [(augment_grid(i, t, perm), augment_grid(o, t, perm)) for i, o in pairs]
            pairs = aug(g.pairs)
            shown = aug(demos_of[g.task][:context]) if g.task in demos_of else None
            for q, (qi, qo) in enumerate(pairs):
                demos = shown if shown is not None else _pick(pairs, q, context)
                grids = [qi, qo] + [x for pair in demos for x in pair]
                x, y = _example(demos, qi, qo, context, _offset(grids, canvas, rs), canvas)
                inputs.append(x)
                labels.append(y)
            puzzle_ids.append(ids[aug_name(g.task, t, perm) if a else g.task])
            sizes.append(len(pairs))
    n_puzzles = [len(g.augs) for g in groups]
    seq_len = context_slots(context) * canvas * canvas
    meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": VOCAB_SIZE,
            "seq_len": seq_len, "num_puzzle_identifiers": len(ids), "total_groups": len(groups),
            "total_puzzles": len(puzzle_ids), "sets": ["all"], "family": "arc", "canvas": canvas,
            "context": context, "slots": context_slots(context)}
    empty = np.zeros((0, seq_len), np.uint8)
    return SplitData(meta=meta, inputs=np.stack(inputs) if inputs else empty,
                     labels=np.stack(labels) if labels else empty,
                     puzzle_identifiers=np.array(puzzle_ids, np.int32),
                     puzzle_indices=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32),
                     group_indices=np.concatenate([[0], np.cumsum(n_puzzles)]).astype(np.int32))
