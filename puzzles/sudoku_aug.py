"""Validity-preserving, invertible Sudoku augmentations for any box shape (re-exported by puzzles.sudoku).

An augmentation is, applied in this order (the reference builder's order):
  1. transpose (only for square boxes r == c; it would turn r x c boxes into c x r ones otherwise),
  2. a cell permutation: output row i is input row `row_order[i]`, where the n/r bands (groups of
     r rows sharing boxes) are shuffled and the r rows inside each band are shuffled; likewise
     stacks (groups of c columns) and columns,
  3. a digit relabelling `digit_map[d]` (blank 0 stays 0).
All functions act on digit grids (0 = blank) over the last two axes, so batches (..., n, n) work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from puzzles.grid import invert_permutation


def _is_perm(a: np.ndarray, k: int) -> bool:
    return a.shape == (k,) and np.array_equal(np.sort(a), np.arange(k))


@dataclass(frozen=True)
class SudokuAug:
    """One augmentation for box (r, c), n = r * c. Arrays are int64."""

    box: tuple[int, int]
    digit_map: np.ndarray  # (n + 1,) new digit of old digit d; digit_map[0] == 0
    band_perm: np.ndarray  # (n / r,) output band b takes input band band_perm[b]
    row_perms: np.ndarray  # (n / r, r) inside output band b, row j takes band row row_perms[b, j]
    stack_perm: np.ndarray  # (n / c,)
    col_perms: np.ndarray  # (n / c, c)
    transpose: bool

    def __post_init__(self) -> None:
        r, c = self.box
        n = r * c
        if self.digit_map.shape != (n + 1,) or self.digit_map[0] != 0 or not _is_perm(self.digit_map[1:] - 1, n):
            raise ValueError(f"digit_map must fix 0 and permute 1..{n}, got {self.digit_map.tolist()}")
        if not _is_perm(self.band_perm, c) or not _is_perm(self.stack_perm, r):
            raise ValueError(f"band_perm/stack_perm must be permutations of {c} bands / {r} stacks")
        if self.row_perms.shape != (c, r) or not all(_is_perm(p, r) for p in self.row_perms):
            raise ValueError(f"row_perms must be {c} permutations of {r} rows")
        if self.col_perms.shape != (r, c) or not all(_is_perm(p, c) for p in self.col_perms):
            raise ValueError(f"col_perms must be {r} permutations of {c} columns")
        if self.transpose and r != c:
            raise ValueError(f"transpose is only valid for square boxes, got box {r}x{c}")

    @property
    def row_order(self) -> np.ndarray:
        r = self.box[0]
        return (self.band_perm[:, None] * r + self.row_perms).ravel()

    @property
    def col_order(self) -> np.ndarray:
        c = self.box[1]
        return (self.stack_perm[:, None] * c + self.col_perms).ravel()


def random_augmentation(rng: np.random.Generator, box: tuple[int, int] = (3, 3)) -> SudokuAug:
    """A uniformly random augmentation for `box` drawn from `rng`."""
    r, c = box
    n = r * c
    return SudokuAug(
        box=(r, c),
        digit_map=np.concatenate([[0], rng.permutation(n) + 1]).astype(np.int64),
        band_perm=rng.permutation(c).astype(np.int64),  # n / r == c bands of r rows
        row_perms=np.stack([rng.permutation(r) for _ in range(c)]).astype(np.int64),
        stack_perm=rng.permutation(r).astype(np.int64),
        col_perms=np.stack([rng.permutation(c) for _ in range(r)]).astype(np.int64),
        transpose=bool(r == c and rng.random() < 0.5),
    )


def augment(grid: np.ndarray, aug: SudokuAug) -> np.ndarray:
    """Apply `aug` to digit grid(s) of shape (..., n, n); returns a new array of the same dtype."""
    g = np.asarray(grid)
    if aug.transpose:
        g = np.swapaxes(g, -2, -1)
    g = g[..., aug.row_order, :][..., :, aug.col_order]
    return aug.digit_map.astype(g.dtype)[g]


def invert_augmentation(grid: np.ndarray, aug: SudokuAug) -> np.ndarray:
    """Undo `augment(grid, aug)`."""
    g = np.asarray(grid)
    g = invert_permutation(aug.digit_map).astype(g.dtype)[g]
    g = g[..., invert_permutation(aug.row_order), :][..., :, invert_permutation(aug.col_order)]
    if aug.transpose:
        g = np.swapaxes(g, -2, -1)
    return np.ascontiguousarray(g)


def cell_order(aug: SudokuAug) -> np.ndarray:
    """Flat cell indices `idx` with `augment(g, aug).ravel() == aug.digit_map[g.ravel()[idx]]`: the
    spatial part of `aug` alone, to move tokens that are not digits (padding, a model's guesses)."""
    n = aug.box[0] * aug.box[1]
    cells = np.arange(n * n).reshape(n, n)
    if aug.transpose:
        cells = cells.T
    return np.ascontiguousarray(cells[aug.row_order][:, aug.col_order]).ravel()


def augmentation_to_array(aug: SudokuAug) -> np.ndarray:
    """Flat int64 array: [transpose, digit_map[1:], band_perm, row_perms, stack_perm, col_perms]."""
    return np.concatenate([
        [int(aug.transpose)], aug.digit_map[1:], aug.band_perm, aug.row_perms.ravel(),
        aug.stack_perm, aug.col_perms.ravel(),
    ]).astype(np.int64)


def augmentation_from_array(arr: np.ndarray, box: tuple[int, int] = (3, 3)) -> SudokuAug:
    """Inverse of `augmentation_to_array` (ValueError if `arr` does not describe one for `box`)."""
    r, c = box
    n = r * c
    a = np.asarray(arr, dtype=np.int64).ravel()
    sizes = [1, n, c, n, r, n]
    if a.size != sum(sizes):
        raise ValueError(f"augmentation array for box {r}x{c} must have {sum(sizes)} values, got {a.size}")
    t, digits, bands, rows, stacks, cols = np.split(a, np.cumsum(sizes)[:-1])
    return SudokuAug(
        box=(r, c), digit_map=np.concatenate([[0], digits]), band_perm=bands,
        row_perms=rows.reshape(c, r), stack_perm=stacks, col_perms=cols.reshape(r, c), transpose=bool(t[0]),
    )
