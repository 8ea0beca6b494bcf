"""Exact Sudoku solver for any box shape: bitmask candidates, singles propagation, MRV search.

Used through `puzzles.sudoku` (`solve`, `count_solutions`, `rate`); the search runs on plain
Python ints and lists because numpy per-cell calls are far slower at this granularity.
Benchmark: `python -m bench.puzzles`.

Board state: `vals` (n*n cell digits, 0 = empty) and `used` (3n bitmasks, one per unit: rows
0..n-1, columns n..2n-1, boxes 2n..3n-1; bit d-1 set when digit d is placed in that unit).
A cell's candidates are the digits used in none of its three units.

Search (fixed and deterministic, so `rate` is well defined):
  1. propagate: place every naked single (a cell with one candidate), repeat until none is left;
     then every hidden single (a digit with one possible cell in a unit); repeat both until stable.
     A cell with no candidate, or a unit digit with no possible cell, is a dead end.
  2. branch: take the empty cell with the fewest candidates (lowest cell index on ties) and try
     its candidates in ascending digit order (or in a random order when a `random.Random` is
     given, which is how full grids are generated).
"""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np


class _Tables:
    """Per-box-shape lookup tables (cell -> its three unit ids, unit -> its cells)."""

    def __init__(self, r: int, c: int) -> None:
        n = r * c
        self.n, self.size, self.full = n, n * n, (1 << n) - 1
        self.cell_units = [(i // n, n + i % n, 2 * n + (i // n // r) * r + (i % n) // c) for i in range(n * n)]
        self.units: list[list[int]] = [[] for _ in range(3 * n)]
        for i, (a, b, k) in enumerate(self.cell_units):
            for u in (a, b, k):
                self.units[u].append(i)


@lru_cache(maxsize=None)
def tables(box: tuple[int, int]) -> _Tables:
    r, c = box
    return _Tables(r, c)


def _placed(vals: list[int], used: list[int], cell: int, units: tuple[int, int, int],
            bit: int) -> tuple[list[int], list[int]]:
    """Copies of (vals, used) with the digit `bit` (a one-hot bitmask) written into `cell`."""
    v2, u2 = vals[:], used[:]
    v2[cell] = bit.bit_length()
    for unit in units:
        u2[unit] |= bit
    return v2, u2


class _Search:
    """Depth-first search that counts solutions up to `limit` and counts branch points."""

    def __init__(self, t: _Tables, limit: int, rng: random.Random | None = None) -> None:
        self.t, self.limit, self.rng = t, limit, rng
        self.count = 0
        self.branches = 0
        self.solution: list[int] | None = None

    def run(self, vals: list[int], used: list[int]) -> None:
        state = self._propagate(vals, used)
        if state is None:
            return
        cand, empties = state
        if not empties:  # no empty cell left: a solution
            self.count += 1
            if self.solution is None:
                self.solution = vals
            return
        # most constrained cell, lowest index on ties (`empties` is in index order)
        best, best_k = -1, 99
        for i in empties:
            k = cand[i].bit_count()
            if k < best_k:
                best, best_k = i, k
                if k == 2:
                    break
        self.branches += 1
        m = cand[best]
        digits = []
        while m:
            b = m & -m
            m ^= b
            digits.append(b)
        if self.rng is not None:
            self.rng.shuffle(digits)
        units = self.t.cell_units[best]
        for b in digits:
            self.run(*_placed(vals, used, best, units, b))
            if self.count >= self.limit:
                return

    def _propagate(self, vals: list[int], used: list[int]) -> tuple[list[int], list[int]] | None:
        """Place singles in place; return (candidate mask per cell, 0 when filled; the empty
        cells), or None at a dead end."""
        t = self.t
        cell_units, units, full = t.cell_units, t.units, t.full
        empties = [i for i in range(t.size) if not vals[i]]
        while True:
            # naked singles until stable
            while True:
                placed = False
                cand = [0] * t.size
                rest = []
                for i in empties:
                    a, b, k = cell_units[i]
                    m = full & ~(used[a] | used[b] | used[k])
                    if not m:
                        return None
                    if m & (m - 1):
                        cand[i] = m
                        rest.append(i)
                    else:
                        vals[i] = m.bit_length()
                        used[a] |= m
                        used[b] |= m
                        used[k] |= m
                        placed = True
                empties = rest
                if not placed:
                    break
            if not empties:
                return cand, empties
            # hidden singles; `cand` may go stale as we place, but stale sets only over-approximate,
            # so every dead end found is real and every placement is re-checked against `used`.
            # A filled cell's mask is 0, so it drops out of the counts below.
            placed = False
            for u, cells in enumerate(units):
                need = full & ~used[u]
                if not need:
                    continue
                once = twice = 0
                for i in cells:
                    m = cand[i]
                    twice |= once & m
                    once |= m
                if once & need != need:
                    return None
                hidden = once & ~twice & need
                while hidden:
                    d = hidden & -hidden
                    hidden ^= d
                    for i in cells:
                        if cand[i] & d:
                            break
                    else:  # its one cell was just filled with another hidden single
                        return None
                    a, b, k = cell_units[i]
                    if (used[a] | used[b] | used[k]) & d:
                        return None
                    vals[i] = d.bit_length()
                    cand[i] = 0
                    used[a] |= d
                    used[b] |= d
                    used[k] |= d
                    placed = True
            if not placed:
                return cand, empties
            empties = [i for i in empties if not vals[i]]


def start_state(grid: np.ndarray, box: tuple[int, int]) -> tuple[list[int], list[int]] | None:
    """(vals, used) for a validated (n, n) digit grid; None when two clues already clash."""
    t = tables(box)
    vals = [int(v) for v in np.asarray(grid).ravel()]
    used = [0] * (3 * t.n)
    for i, v in enumerate(vals):
        if v:
            bit = 1 << (v - 1)
            a, b, k = t.cell_units[i]
            if (used[a] | used[b] | used[k]) & bit:
                return None
            used[a] |= bit
            used[b] |= bit
            used[k] |= bit
    return vals, used


def search(grid: np.ndarray, box: tuple[int, int], limit: int, rng: random.Random | None = None) -> _Search:
    """Run the search on a validated grid; the result holds `.count`, `.solution`, `.branches`."""
    s = _Search(tables(box), limit, rng)
    state = start_state(grid, box)
    if state is not None:
        s.run(*state)
    return s


def has_other_solution(vals: list[int], box: tuple[int, int], cell: int, digit: int) -> bool:
    """True if the grid `vals` (unique before `cell` was blanked, where `digit` stood) now has a
    solution with another digit in `cell`. Any second solution must differ exactly there, so this
    is a uniqueness test that only has to find one solution instead of counting two."""
    t = tables(box)
    used = [0] * (3 * t.n)
    for i, v in enumerate(vals):
        if v:
            bit = 1 << (v - 1)
            for u in t.cell_units[i]:
                used[u] |= bit
    a, b, k = t.cell_units[cell]
    m = t.full & ~(used[a] | used[b] | used[k]) & ~(1 << (digit - 1))
    s = _Search(t, 1)
    while m and not s.count:
        d = m & -m
        m ^= d
        s.run(*_placed(vals, used, cell, (a, b, k), d))
    return s.count > 0
