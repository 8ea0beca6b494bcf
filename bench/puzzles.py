"""Puzzle speed benchmark: Sudoku solving, unique-puzzle generation and maze generation, one core.

    python -m bench.puzzles                 # the full set
    python -m bench.puzzles --quick         # fewer items
    python -m bench.puzzles --sudoku-file path/to/puzzles.txt

Solving counts solutions up to 2 for each puzzle (what `python -m puzzles.sudoku solve` does), so
every figure includes the proof of uniqueness. Generated 9x9 and 6x6 puzzles are minimal (clues
removed until none can go); mazes are Maze-Hard-like (30x30, shortest path > 110 steps).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from puzzles import maze, sudoku
from puzzles.build_options import MAGICTOUR
from puzzles.errors import PuzzleError, run_cli



def timed(label: str, count: int, fn) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    per_s = count / seconds
    print(f"{label:<44} {count:>6} in {seconds:7.2f} s  {per_s:9.1f} /s", flush=True)
    return per_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.puzzles", description=__doc__.split("\n")[0])
    parser.add_argument("--sudoku-file", type=Path, default=MAGICTOUR,
                        help="one-puzzle-per-line 9x9 file to solve (default: the bundled magictour top1465 list)")
    parser.add_argument("--quick", action="store_true", help="fewer generated items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.sudoku_file.is_file():
        raise PuzzleError(f"--sudoku-file {args.sudoku_file} does not exist")

    grids = [g for _, g in sudoku.read_text(args.sudoku_file)]
    scale = 0.1 if args.quick else 1.0

    def solve_all() -> None:
        for g in grids:
            if sudoku.count_solutions(g) != 1:
                raise PuzzleError(f"{args.sudoku_file}: a puzzle without a unique solution")

    timed(f"solve {args.sudoku_file.name}", len(grids), solve_all)
    n9, n6, nm = (int(k * scale) for k in (200, 1500, 1000))
    timed("generate unique 9x9 (minimal)", n9, lambda: sudoku.generate(n9, (3, 3), seed=args.seed))
    timed("generate unique 6x6 (minimal)", n6, lambda: sudoku.generate(n6, (2, 3), seed=args.seed))
    timed("generate maze 30x30, path > 110", nm, lambda: maze.generate(nm, 30, min_path=110, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
