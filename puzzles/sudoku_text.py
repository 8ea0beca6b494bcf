"""Sudoku sizes and text: one character per digit, so sides up to 35; the box rules; text and CSV readers.

Re-exported by puzzles.sudoku (the usual import). Text form: one puzzle per line, n*n cells from
`CHARS` ('1'-'9', then 'A'=10, 'B'=11, ... so 16x16 uses 1-9A-G), '.' or '0' blank. A box (r, c)
means boxes r rows tall and c columns wide (the solver, `check`, the augmentations and the pictures
all read it so); `box_of` is the one rule that gives a box to a side alone.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from puzzles.errors import PuzzleError, csv_rows, text_lines

CHARS = ".123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # CHARS[d] is digit d's character; 0 = blank
_VALUE = {ch: d for d, ch in enumerate(CHARS)} | {ch.lower(): d for d, ch in enumerate(CHARS) if d > 9} | {"0": 0}


def box_of(n: int) -> tuple[int, int]:
    """The box shape of an n x n Sudoku that names only its side: the squarest r x c with r * c = n
    and r <= c (4: 2x2, 6: 2x3, 8: 2x4, 9: 3x3, 12: 3x4, 16: 4x4; a prime n gives 1 x n). The one
    rule for the --size flag, datasets without a "box" field, and tools that know only the side."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(CHARS) - 1:
        raise ValueError(f"a sudoku side must be an integer from 1 to {len(CHARS) - 1}, got {n!r}")
    r = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return r, int(n) // r


def check_box(box: tuple[int, int]) -> tuple[int, int]:
    """`box` as two ints; ValueError unless the solver takes it (r, c >= 1 and one character per digit)."""
    r, c = (int(v) for v in box)
    if r < 1 or c < 1 or r * c > len(CHARS) - 1:
        raise ValueError(f"box {r}x{c} is not supported: sides must be >= 1 and the grid side r*c at most "
                         f"{len(CHARS) - 1} (one character per digit)")
    return r, c


def to_text(grid: np.ndarray) -> str:
    """One-line text form of a grid (blank '.')."""
    return "".join(CHARS[int(v)] for v in np.asarray(grid).ravel())


def _parse_cells(text: str, n: int, where: str) -> np.ndarray:
    cells = [_VALUE.get(ch, n + 1) for ch in text]
    if max(cells, default=0) > n:
        bad = next(ch for ch, v in zip(text, cells) if v > n)
        raise PuzzleError(f"{where}: invalid character {bad!r} in a {n}x{n} sudoku (cells: '.', '0', {CHARS[1:n + 1]})")
    return np.array(cells, dtype=np.uint8).reshape(n, n)


def read_text(path: str | Path, box: tuple[int, int] = (3, 3)) -> list[tuple[int, np.ndarray]]:
    """(line number, grid) for each puzzle line of a one-puzzle-per-line file. Blank lines and
    '#' comments are skipped; text after the n*n cells (separated by whitespace) is ignored."""
    r, c = check_box(box)
    n = r * c
    out = []
    for lineno, line in enumerate(text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells, rest = line[: n * n], line[n * n:]
        if len(cells) < n * n or (rest and not rest[0].isspace()):
            width = len(line.split()[0])
            raise PuzzleError(f"{path}:{lineno}: expected {n * n} cells for a {n}x{n} sudoku, got {width}")
        out.append((lineno, _parse_cells(cells, n, f"{path}:{lineno}")))
    return out


def read_csv(path: str | Path, box: tuple[int, int] = (3, 3)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(questions, answers, ratings) from a Sudoku-Extreme CSV (`source,question,answer,rating`,
    '.' blank): uint8 (N, n, n), uint8 (N, n, n), int64 (N,)."""
    r, c = check_box(box)
    n = r * c
    questions, answers, ratings = [], [], []
    for lineno, row in csv_rows(path):
        where = f"{path}:{lineno}"
        for text, out in ((row[1], questions), (row[2], answers)):
            if len(text) != n * n:
                raise PuzzleError(f"{where}: expected {n * n} cells, got {len(text)}")
            out.append(_parse_cells(text, n, where))
        try:
            ratings.append(int(row[3]))
        except ValueError:
            raise PuzzleError(f"{where}: rating must be an integer, got {row[3]!r}") from None
    shape = (len(questions), n, n)
    return (np.array(questions, dtype=np.uint8).reshape(shape), np.array(answers, dtype=np.uint8).reshape(shape),
            np.array(ratings, dtype=np.int64))
