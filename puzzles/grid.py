"""Grid operations shared by every puzzle family: dihedral transforms, permutations, hashing.

Dihedral ids follow the reference builders (so augmented names interoperate):
0 identity, 1 rot90 (numpy, counter-clockwise), 2 rot180, 3 rot270, 4 left-right flip,
5 up-down flip, 6 transpose, 7 anti-transpose (left-right flip of rot90).
All functions are pure and work on the last two axes, so a batch (..., H, W) is fine.
"""
from __future__ import annotations

import hashlib

import numpy as np

NUM_DIHEDRAL = 8
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Apply dihedral transform `t` (0..7) to the last two axes of `grid`."""
    axes = (-2, -1)
    if t == 0:
        return grid
    if t == 1:
        return np.rot90(grid, 1, axes=axes)
    if t == 2:
        return np.rot90(grid, 2, axes=axes)
    if t == 3:
        return np.rot90(grid, 3, axes=axes)
    if t == 4:
        return np.flip(grid, axis=-1)
    if t == 5:
        return np.flip(grid, axis=-2)
    if t == 6:
        return np.swapaxes(grid, -2, -1)
    if t == 7:
        return np.flip(np.rot90(grid, 1, axes=axes), axis=-1)
    raise ValueError(f"dihedral transform id must be 0..7, got {t}")


def inverse_dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Undo `dihedral(grid, t)`."""
    return dihedral(grid, DIHEDRAL_INVERSE[t])


def dihedral_index_map(h: int, w: int, t: int) -> np.ndarray:
    """Flat indices `idx` with `dihedral(g, t).ravel() == g.ravel()[idx]` for an (h, w) grid.

    Lets callers transform many same-shape grids with one fancy-indexing gather.
    """
    return np.ascontiguousarray(dihedral(np.arange(h * w).reshape(h, w), t)).ravel()


def invert_permutation(perm: np.ndarray) -> np.ndarray:
    """Inverse of a permutation array: `inv[perm[k]] == k`."""
    perm = np.asarray(perm)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm), dtype=perm.dtype)
    return inv


def grid_hash(grid: np.ndarray) -> str:
    """SHA-256 over the two shape bytes and the raw uint8 cells (the reference's grid hash)."""
    g = np.ascontiguousarray(grid, dtype=np.uint8)
    if g.ndim != 2:
        raise ValueError(f"grid_hash expects a 2-D grid, got shape {g.shape}")
    return hashlib.sha256(bytes(g.shape) + g.tobytes()).hexdigest()
