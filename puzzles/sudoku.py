"""Sudoku of any box shape: solve, count solutions, rate, generate, check, augment, read, encode.

A box (r, c) means boxes r rows tall and c columns wide; the side is n = r * c (4x4: (2, 2),
6x6: (2, 3), 9x9: (3, 3), 16x16: (4, 4)). Grids are numpy (n, n) ints with 0 = blank.
Text form, readers and the box rules: puzzles/sudoku_text.py (re-exported here).

Solve a file from the command line (one output line per puzzle: the solution, `unsolvable` or
`multiple`; a speed summary on stderr):
    python -m puzzles.sudoku solve puzzles.txt [--box 3x3]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Sequence

import numpy as np

from puzzles import sudoku_solver as _solver
from puzzles.errors import run_cli
from puzzles.sudoku_aug import (  # noqa: F401  (re-exported API)
    SudokuAug, augment, augmentation_from_array, augmentation_to_array, invert_augmentation,
    random_augmentation,
)
from puzzles.sudoku_text import CHARS, box_of, check_box as _check_box, read_csv, read_text, to_text  # noqa: F401

def _grid(grid: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    n = box[0] * box[1]
    g = np.asarray(grid)
    if g.shape != (n, n):
        raise ValueError(f"expected a ({n}, {n}) grid for box {box[0]}x{box[1]}, got shape {g.shape}")
    if g.size and (g.min() < 0 or g.max() > n):
        raise ValueError(f"cells must be 0 (blank) or 1..{n}")
    return g


# --- solving -----------------------------------------------------------------------------------

def solve(grid: np.ndarray, box: tuple[int, int] = (3, 3)) -> np.ndarray | None:
    """A solution of `grid` (the first the search finds), or None if there is none."""
    box = _check_box(box)
    s = _solver.search(_grid(grid, box), box, limit=1)
    return None if s.solution is None else np.array(s.solution, dtype=np.uint8).reshape(box[0] * box[1], -1)


def count_solutions(grid: np.ndarray, box: tuple[int, int] = (3, 3), limit: int = 2) -> int:
    """Number of solutions of `grid`, counting no further than `limit` (so 2 means 'several')."""
    box = _check_box(box)
    return _solver.search(_grid(grid, box), box, limit=limit).count


def rate(grid: np.ndarray, box: tuple[int, int] = (3, 3)) -> int:
    """Difficulty: the number of branch points in the search that `count_solutions(limit=2)` runs.

    The solver (puzzles/sudoku_solver.py) propagates naked then hidden singles to a fixed point,
    then branches on the empty cell with the fewest candidates (lowest row-major index on ties),
    trying digits in ascending order, and searches until it has two solutions or the tree is
    exhausted (so a unique puzzle's rating covers the full proof of uniqueness).
    0 = solvable by singles alone; every cell where the solver had to guess adds 1.
    """
    box = _check_box(box)
    return _solver.search(_grid(grid, box), box, limit=2).branches


def check(board: np.ndarray, box: tuple[int, int] = (3, 3), puzzle: np.ndarray | None = None) -> bool:
    """True if `board` is completely filled, every row/column/box holds 1..n once, and (if given)
    it agrees with every clue of `puzzle`."""
    r, c = _check_box(box)
    n = r * c
    b = np.asarray(board)
    if b.shape != (n, n):
        return False
    want = np.arange(1, n + 1)
    boxes = b.reshape(c, r, r, c).swapaxes(1, 2).reshape(n, n)  # (band, row, stack, col) -> box rows
    for lines in (b, b.T, boxes):
        if not np.array_equal(np.sort(lines, axis=1), np.broadcast_to(want, (n, n))):
            return False
    if puzzle is not None:
        p = np.asarray(puzzle)
        if p.shape != (n, n) or np.any((p != 0) & (p != b)):
            return False
    return True


# --- generation --------------------------------------------------------------------------------

def _random_full_grid(box: tuple[int, int], rng: random.Random) -> list[int]:
    n = box[0] * box[1]
    return _solver.search(np.zeros((n, n), dtype=np.int64), box, limit=1, rng=rng).solution


def _dig(solution: list[int], box: tuple[int, int], lo: int, rng: random.Random) -> list[int]:
    """Blank cells of `solution` in random order while the puzzle stays unique and above `lo` clues.
    One pass gives a minimal puzzle: a clue needed once stays needed as others are removed."""
    vals = solution[:]
    order = list(range(len(vals)))
    rng.shuffle(order)
    clues = len(vals)
    for i in order:
        if clues <= lo:
            break
        digit, vals[i] = vals[i], 0
        if _solver.has_other_solution(vals, box, i, digit):
            vals[i] = digit
        else:
            clues -= 1
    return vals


# Fewest clues a puzzle with a unique solution can have (4x4, 6x6: exhaustive searches; 9x9: McGuire
# et al. 2012; 16x16: the fewest known). Asking for fewer would make `generate` try forever.
FEWEST_CLUES = {4: 4, 6: 8, 9: 17, 16: 55}


def generate(count: int, box: tuple[int, int] = (3, 3), clues: tuple[int, int] | None = None,
             min_rating: int = 0, seed: int = 0, progress: bool = False,
             max_attempts: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct unique-solution puzzles and their solutions, uint8 (count, n, n).

    Each is a random full grid with clues removed in random order while the solution stays unique,
    stopping at `clues[0]`; it is kept only if it has at most `clues[1]` clues, `rate >= min_rating`
    and is new. Deterministic for `seed`. Raises ValueError after `max_attempts` rejected grids
    (default 200 + 50 * count) when the constraints cannot be met. Minimal 16x16 puzzles (no clue
    range) are slow to dig out, far slower than 9x9 ones (`python -m bench.puzzles`): give 16x16 a clue range.
    """
    from tqdm import tqdm

    box = _check_box(box)
    n = box[0] * box[1]
    lo, hi = (0, n * n) if clues is None else (int(clues[0]), int(clues[1]))
    if not 0 <= lo <= hi <= n * n:
        raise ValueError(f"clues must be (lo, hi) with 0 <= lo <= hi <= {n * n}, got {clues}")
    if hi < FEWEST_CLUES.get(n, 0):
        raise ValueError(f"no {n}x{n} puzzle with a unique solution is known with fewer than {FEWEST_CLUES[n]} "
                         f"clues; raise the clue range (got at most {hi})")
    rng = random.Random(seed)
    max_attempts = 200 + 50 * count if max_attempts is None else max_attempts
    seen: set[bytes] = set()
    puzzles = np.zeros((count, n, n), dtype=np.uint8)
    solutions = np.zeros((count, n, n), dtype=np.uint8)
    bar = tqdm(total=count, desc=f"sudoku {n}x{n}", disable=not progress)
    made = attempts = 0
    while made < count:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(f"gave up after {max_attempts} attempts with {made}/{count} puzzles: "
                             f"clues={clues}, min_rating={min_rating} too strict for box {box}")
        solution = _random_full_grid(box, rng)
        puzzle = np.array(_dig(solution, box, lo, rng), dtype=np.uint8).reshape(n, n)
        bar.set_postfix(tries=attempts, refresh=False)  # rejected grids show, so slow progress is visible
        if np.count_nonzero(puzzle) > hi:
            continue
        if min_rating and rate(puzzle, box) < min_rating:
            continue
        key = puzzle.tobytes()
        if key in seen:
            continue
        seen.add(key)
        puzzles[made] = puzzle
        solutions[made] = np.array(solution, dtype=np.uint8).reshape(n, n)
        made += 1
        bar.update(1)
    bar.close()
    return puzzles, solutions


# --- tokens and text ---------------------------------------------------------------------------

def encode(grid: np.ndarray) -> np.ndarray:
    """Dataset tokens: digit + 1 (blank 1, digits 2..n+1), row-major; (..., n, n) -> (..., n*n) uint8."""
    g = np.asarray(grid)
    return (g.reshape(*g.shape[:-2], -1) + 1).astype(np.uint8)


def decode(tokens: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `encode`: (..., n*n) tokens -> (..., n, n) uint8 digit grid (0 = blank)."""
    t = np.asarray(tokens)
    if t.shape[-1] != n * n:
        raise ValueError(f"expected {n * n} tokens per grid, got shape {t.shape}")
    if t.size and (t.min() < 1 or t.max() > n + 1):
        raise ValueError(f"sudoku tokens must be 1..{n + 1} (0 is padding), got {t.min()}..{t.max()}")
    return (t.astype(np.int64) - 1).astype(np.uint8).reshape(*t.shape[:-1], n, n)


# --- command line ------------------------------------------------------------------------------

def parse_box(text: str) -> tuple[int, int]:
    """`RxC` on a command line (argparse type): boxes R rows tall and C columns wide."""
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must look like 3x3 or 2x3, got {text!r}") from None
    try:
        return _check_box((r, c))
    except ValueError as err:  # well formed but too big (or zero): say so, not "must look like"
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m puzzles.sudoku", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="solve every puzzle of a text file (one per line) or a Sudoku-Extreme CSV")
    p.add_argument("file", help="puzzle file (.txt lines or .csv with a question column)")
    p.add_argument("--box", type=parse_box, default=(3, 3), help="box shape RxC, e.g. 2x3 for 6x6 (default 3x3)")
    args = parser.parse_args(argv)

    if str(args.file).lower().endswith(".csv"):
        grids = list(read_csv(args.file, args.box)[0])
    else:
        grids = [g for _, g in read_text(args.file, args.box)]
    start = time.perf_counter()
    for g in grids:
        s = _solver.search(g, args.box, limit=2)
        if s.count == 0:
            print("unsolvable")
        elif s.count > 1:
            print("multiple")
        else:
            print("".join(CHARS[v] for v in s.solution))
    seconds = time.perf_counter() - start
    rate_ = len(grids) / seconds if seconds > 0 else float("inf")
    print(f"{len(grids)} puzzles, {seconds:.2f} s, {rate_:.1f} puzzles/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
