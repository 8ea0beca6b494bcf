"""Dataset builders with typed arguments: Sudoku, mazes and ARC into the on-disk format.

    from puzzles.build_options import MazeOptions
    from puzzles.builders import build_dataset
    built = build_dataset("maze", "data/maze-11", MazeOptions(preset="quick"), progress=False)
    print(built.summary())

`build_<family>(options)` makes the splits in memory; `build_dataset` checks the output first
(before a long build), writes the folder atomically and times it. `python -m puzzles.build` is the
command line over these (puzzles/build.py); the trainer calls `build_dataset` directly. Each
split's dataset.json records the resolved options under "build" (`options_record`), so a trainer
can tell whether an existing folder was built with the options it would build it with.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from puzzles.build_options import (BUILD, OPTIONS, ArcOptions, BuildOptions, MazeOptions, SudokuOptions, options_record,
                                   resolve)
from puzzles.dataset import SplitData, check_output, disk_bytes, human_bytes, write_dataset
from puzzles.errors import PuzzleError, csv_rows
from puzzles.imports import distinct_files, warn_overlap


class Splits(NamedTuple):
    """What a family's builder makes in memory."""

    identifiers: list[str]  # identifier id -> puzzle name, [0] = "<blank>"
    splits: dict[str, SplitData]  # "train", "test"
    extra: dict | None  # extra JSON files by name (ARC: test_puzzles.json)


@dataclass
class Built:
    """What `build_dataset` wrote: where, the splits, and how long it took."""

    out: Path
    splits: dict[str, SplitData]
    seconds: float

    def summary(self) -> str:
        """The one line `python -m puzzles.build` ends with."""
        parts = [f"{name} {len(s.puzzle_identifiers)} puzzles / {s.num_examples} examples"
                 for name, s in self.splits.items()]
        return (f"wrote {self.out}: {', '.join(parts)}; {human_bytes(disk_bytes(self.out))} on disk; "
                f"{self.seconds:.1f} s")


def build_dataset(family: str, out: str | Path, options: BuildOptions, *, force: bool = False,
                  progress: bool = True) -> Built:
    """Build `family` with `options` into the dataset folder `out` (replaced only with `force`);
    each split's dataset.json records the options under "build" (`options_record`)."""
    if not isinstance(options, OPTIONS[family]):
        raise TypeError(f"{family} datasets take {OPTIONS[family].__name__}, got {type(options).__name__}")
    start = time.perf_counter()
    out = check_output(out, force)  # fail now, not after an hour of generation
    record = options_record(options)
    made = BUILDERS[family](options, progress)
    splits = {name: dataclasses.replace(split, meta={**split.meta, BUILD: record})
              for name, split in made.splits.items()}
    materialize = isinstance(options, ArcOptions) and options.materialize
    write_dataset(out, made.identifiers, splits, made.extra, force=force, materialize=materialize)
    return Built(out, splits, time.perf_counter() - start)


# ------------------------------------------------------------------------------------ shared parts

def _stack(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of all groups stacked, and group_indices for groups of one example per puzzle."""
    sizes = [len(g) for g in groups]
    return np.concatenate(groups), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


def _split(inputs: np.ndarray, labels: np.ndarray, group_indices: np.ndarray, meta: dict) -> SplitData:
    """One example per puzzle, identifier 0 for all (the reference Sudoku/maze layout)."""
    n = len(inputs)
    return SplitData(meta=meta, inputs=inputs.reshape(n, -1), labels=labels.reshape(n, -1),
                     puzzle_identifiers=np.zeros(n, np.int32), puzzle_indices=np.arange(n + 1, dtype=np.int32),
                     group_indices=group_indices)


def _disjoint(make, count: int, forbidden: set, what: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` (input, label) pairs from `make(k, seed)` whose input is not in `forbidden`."""
    keep_in, keep_lab, round_ = [], [], 0
    while len(keep_in) < count:
        if round_ == 8:
            raise PuzzleError(f"found only {len(keep_in)} of {count} test {what} distinct from the train set "
                              f"and its augmented copies; lower --test or --aug, or build larger puzzles")
        need = count - len(keep_in)
        inputs, labels = make(need + need // 4 + 4, seed + 1 + round_)
        for x, y in zip(inputs, labels):
            key = x.tobytes()
            if key not in forbidden and len(keep_in) < count:
                forbidden.add(key)
                keep_in.append(x)
                keep_lab.append(y)
        round_ += 1
    return np.stack(keep_in), np.stack(keep_lab)


def _subsample(n: int, k: int | None, seed: int) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def _bad(where: str, why: str, on_bad: str, keep: bool = False) -> None:
    """Report a bad imported puzzle: one line naming file:line (or raise with --on-bad fail)."""
    if on_bad == "fail":
        raise PuzzleError(f"{where}: {why} (pass --on-bad skip to drop such puzzles)")
    tqdm.write(f"{'kept' if keep else 'skipped'} {where}: {why}", file=sys.stderr)


def _csv_lines(path: Path) -> list[int]:
    """Line number of each non-empty data row (read_csv returns rows without them)."""
    return [lineno for lineno, _ in csv_rows(path)]


# ------------------------------------------------------------------------------------------ Sudoku

def _import_sudoku(path: Path, kind: str, box, on_bad: str, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles with exactly one solution from a CSV (answers checked) or text file (solved here)."""
    from puzzles import sudoku
    if kind == "csv":
        questions, answers, _ = sudoku.read_csv(path, box)
        items = list(zip(_csv_lines(path), questions, answers))
    else:
        items = [(line, grid, None) for line, grid in sudoku.read_text(path, box)]
    keep_q, keep_a = [], []
    for line, q, a in tqdm(items, desc=f"checking {path.name}", disable=not progress, unit="puzzle"):
        count = sudoku.count_solutions(q, box, limit=2)
        if count == 0:
            _bad(f"{path}:{line}", "puzzle has no solution", on_bad)
            continue
        if count > 1:
            # "keep" imports such puzzles as the reference builder does (label = the given answer)
            _bad(f"{path}:{line}", "puzzle has more than one solution", on_bad, keep=on_bad == "keep")
            if on_bad != "keep":
                continue
        if a is None:
            a = sudoku.solve(q, box)
        elif not sudoku.check(a, box, q):
            _bad(f"{path}:{line}", "answer is not a valid solution of the puzzle", on_bad)
            continue
        keep_q.append(q)
        keep_a.append(a)
    if not keep_q:
        raise PuzzleError(f"{path}: no usable puzzle")
    return np.stack(keep_q).astype(np.uint8), np.stack(keep_a).astype(np.uint8)


def build_sudoku(options: SudokuOptions, progress: bool = True) -> Splits:
    """Each train puzzle is a group of itself + `aug` augmented copies; test puzzles are disjoint
    from every train copy (generated) or taken from the test file (imported)."""
    from puzzles import sudoku
    o = options
    cfg = resolve(o)
    box, seed, aug = tuple(cfg.box), cfg.seed, cfg.aug
    n = box[0] * box[1]
    train_file = o.from_csv or o.from_text
    test_file = o.test_csv or o.test_text
    if (train_file is None) != (test_file is None):
        raise PuzzleError("an import needs both a train file (--from-csv/--from-text) and a test file "
                          "(--test-csv/--test-text)")
    if o.from_csv and o.from_text or o.test_csv and o.test_text:
        raise PuzzleError("give either CSV or text files for a split, not both")
    if train_file is not None:
        distinct_files(Path(train_file), Path(test_file))
        kind = lambda p: "csv" if p in (o.from_csv, o.test_csv) else "text"  # noqa: E731
        train_q, train_a = _import_sudoku(train_file, kind(train_file), box, o.on_bad, progress)
        test_q, test_a = _import_sudoku(test_file, kind(test_file), box, o.on_bad, progress)
        pick = _subsample(len(train_q), cfg.train, seed)
        train_q, train_a = train_q[pick], train_a[pick]
        pick = _subsample(len(test_q), cfg.test, seed + 1)
        test_q, test_a = test_q[pick], test_a[pick]
        warn_overlap(train_q, test_q, test_file)
    else:
        def make(k, s):
            try:
                return sudoku.generate(k, box=box, clues=cfg.clues, min_rating=cfg.min_rating, seed=s,
                                       progress=progress)
            except ValueError as err:
                raise PuzzleError(f"sudoku {box[0]}x{box[1]}: {err}") from None
        train_q, train_a = make(cfg.train, seed)
    # Each train puzzle is a group: the original first, then `aug` augmented copies.
    rng = np.random.default_rng([seed, 1])
    groups_q, groups_a = [], []
    for q, a in tqdm(list(zip(train_q, train_a)), desc="augmenting", disable=not progress or aug == 0):
        gq, ga = [q], [a]
        for _ in range(aug):
            both = sudoku.augment(np.stack([q, a]), sudoku.random_augmentation(rng, box))
            gq.append(both[0])
            ga.append(both[1])
        groups_q.append(np.stack(gq))
        groups_a.append(np.stack(ga))
    tq, gidx = _stack(groups_q)
    ta = np.concatenate(groups_a)
    if train_file is None:
        forbidden = {x.tobytes() for x in tq}
        test_count = 1000 if cfg.test is None else cfg.test
        test_q, test_a = _disjoint(make, test_count, forbidden, "puzzles", seed)
    meta = {"vocab_size": n + 2, "seq_len": n * n, "family": "sudoku", "box": list(box)}
    splits = {"train": _split(sudoku.encode(tq), sudoku.encode(ta), gidx, meta),
              "test": _split(sudoku.encode(test_q), sudoku.encode(test_a),
                             np.arange(len(test_q) + 1, dtype=np.int32), meta)}
    return Splits(["<blank>"], splits, None)


# -------------------------------------------------------------------------------------------- maze

def build_maze(options: MazeOptions, progress: bool = True) -> Splits:
    """Input = maze with S and G, label = the shortest path marked; train groups hold `aug`
    distinct dihedral copies; generated test mazes are disjoint from every train copy."""
    from puzzles import maze
    o = options
    cfg = resolve(o)
    seed, aug = cfg.seed, cfg.aug
    if (o.from_csv is None) != (o.test_csv is None):
        raise PuzzleError("a maze import needs both --from-csv and --test-csv")
    if o.from_csv is not None:
        def read(path):
            inputs, labels = maze.read_csv(path)
            ok = np.array([maze.check_path(x, y) for x, y in zip(inputs, labels)], dtype=bool)
            for line in np.array(_csv_lines(path))[~ok]:
                _bad(f"{path}:{line}", "label is not a shortest S-G path of the maze", o.on_bad)
            if not ok.any():
                raise PuzzleError(f"{path}: no usable maze")
            return inputs[ok], labels[ok]
        distinct_files(Path(o.from_csv), Path(o.test_csv))
        train_in, train_lab = read(o.from_csv)
        test_in, test_lab = read(o.test_csv)
        pick = _subsample(len(train_in), o.train, seed)  # imports keep everything unless asked
        train_in, train_lab = train_in[pick], train_lab[pick]
        pick = _subsample(len(test_in), o.test, seed + 1)
        test_in, test_lab = test_in[pick], test_lab[pick]
        if train_in.shape[1:] != test_in.shape[1:]:
            raise PuzzleError(f"{o.from_csv} has {train_in.shape[1]}x{train_in.shape[2]} mazes but "
                              f"{o.test_csv} has {test_in.shape[1]}x{test_in.shape[2]}")
        warn_overlap(train_in, test_in, o.test_csv)
    else:
        def make(k, s):
            try:
                return maze.generate(k, size=cfg.size, min_path=cfg.min_path, seed=s, progress=progress)
            except ValueError as err:
                raise PuzzleError(f"maze {cfg.size}x{cfg.size}: {err}") from None
        train_in, train_lab = make(cfg.train, seed)
    rng = np.random.default_rng([seed, 1])
    groups_in, groups_lab = [], []
    for x, y in zip(train_in, train_lab):
        ts = rng.permutation(7)[:aug] + 1  # distinct non-identity dihedral transforms
        groups_in.append(np.stack([x] + [maze.augment(x, int(t)) for t in ts]))
        groups_lab.append(np.stack([y] + [maze.augment(y, int(t)) for t in ts]))
    tin, gidx = _stack(groups_in)
    tlab = np.concatenate(groups_lab)
    if o.from_csv is None:
        test_in, test_lab = _disjoint(make, cfg.test, {x.tobytes() for x in tin}, "mazes", seed)
    size = tin.shape[1]
    meta = {"vocab_size": 6, "seq_len": size * size, "family": "maze", "size": int(size)}
    splits = {"train": _split(tin, tlab, gidx, meta),
              "test": _split(test_in, test_lab, np.arange(len(test_in) + 1, dtype=np.int32), meta)}
    return Splits(["<blank>"], splits, None)


# --------------------------------------------------------------------------------------------- ARC

def build_arc(options: ArcOptions, progress: bool = True) -> Splits:
    """Train = all pairs of the training subsets + the demonstrations of the test subsets; test =
    the test subsets' test pairs (puzzles.arc.build); `test_puzzles.json` keeps their tasks."""
    from puzzles import arc
    from puzzles.arc.build import build_arc as build_splits, select_first, select_fitting
    cfg = resolve(options)
    tasks = arc.load_subsets(cfg.source, cfg.subsets)
    concept = cfg.concept
    if concept is not None:
        if "concept" in tasks:
            raise PuzzleError("--concept given but --subsets already has a 'concept' subset")
        tasks["concept"] = arc.load_subset(str(Path(concept) / "arc-agi"), "concept")
    if cfg.fit_only:
        tasks, counts = select_fitting(tasks, cfg.canvas)
        print("tasks fitting the {0}x{0} canvas: ".format(cfg.canvas)
              + ", ".join(f"{s} {k}/{n}" for s, (k, n) in counts.items()), file=sys.stderr)
    if cfg.tasks:
        tasks = select_first(tasks, cfg.tasks)
    built = build_splits(tasks, test_set_name=cfg.test_set, num_aug=cfg.aug, seed=cfg.seed,
                         materialize=False, progress=progress, canvas=cfg.canvas, context=cfg.context)
    if built.short_groups:
        print(f"note: {len(built.short_groups)} tasks have fewer than {cfg.aug} distinct augmented copies",
              file=sys.stderr)
    return Splits(built.identifiers, built.splits, {"test_puzzles.json": built.test_puzzles})


BUILDERS = {"sudoku": build_sudoku, "maze": build_maze, "arc": build_arc}
