"""Grid mazes in the dataset token space: generate, shortest path, check a path, augment, read, encode.

Characters "# SGo" map to tokens 1..5: `#` wall, ` ` open, `S` start, `G` goal, `o` path.
An input grid holds the maze with S and G; its label additionally marks the cells of a shortest
S-G path with `o` (S and G keep their tokens). Path length = number of steps from S to G, i.e.
(number of `o` cells) + 1. Maze-Hard (the reference data) is 30x30 with path length > 110:
    inputs, labels = generate(1000, size=30, min_path=110, seed=0)
"""
from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import numpy as np

from puzzles.errors import PuzzleError, csv_rows
from puzzles.grid import dihedral, inverse_dihedral

CHARS = "# SGo"
WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5
_LUT = np.zeros(256, dtype=np.uint8)  # ascii code -> token, 0 = not a maze character
for _tok, _ch in enumerate(CHARS, 1):
    _LUT[ord(_ch)] = _tok
EXTRA_OPENING = 0.08  # share of the spanning tree's closed walls knocked out, so loops and several routes exist


# --- encoding ----------------------------------------------------------------------------------

def encode(text: str) -> np.ndarray:
    """Token grid (n, n) uint8 of an n*n-character row-major string over "# SGo"."""
    n = int(round(len(text) ** 0.5))
    if n * n != len(text) or not text:
        raise ValueError(f"maze text must have a square number of characters, got {len(text)}")
    codes = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
    tokens = _LUT[codes]
    if not tokens.all():
        bad = text[int(np.argmin(tokens))]
        raise ValueError(f"invalid maze character {bad!r} (allowed: {CHARS!r})")
    return tokens.reshape(n, n)


def decode(grid: np.ndarray) -> str:
    """Row-major character string of a token grid (inverse of `encode`)."""
    g = np.asarray(grid).ravel()
    if g.size and (g.min() < 1 or g.max() > len(CHARS)):
        raise ValueError(f"maze tokens must be 1..{len(CHARS)}, got {g.min()}..{g.max()}")
    return "".join(CHARS[int(t) - 1] for t in g)


# --- paths -------------------------------------------------------------------------------------

def _bfs(walkable: list[bool], size: int, source: int) -> tuple[list[int], list[int]]:
    """(distance, parent) from `source` over 4-neighbours; -1 where unreachable. The fixed
    neighbour order (up, down, left, right) makes the chosen shortest path deterministic."""
    dist = [-1] * (size * size)
    parent = [-1] * (size * size)
    dist[source] = 0
    queue = deque([source])
    while queue:
        i = queue.popleft()
        y, x = divmod(i, size)
        d = dist[i] + 1
        for j, ok in ((i - size, y > 0), (i + size, y < size - 1), (i - 1, x > 0), (i + 1, x < size - 1)):
            if ok and walkable[j] and dist[j] < 0:
                dist[j] = d
                parent[j] = i
                queue.append(j)
    return dist, parent


def _endpoints(maze: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """(flat grid, S index, G index, side)."""
    g = np.asarray(maze)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"a maze is a square 2-D token grid, got shape {g.shape}")
    flat = g.ravel()
    starts, goals = np.flatnonzero(flat == START), np.flatnonzero(flat == GOAL)
    if len(starts) != 1 or len(goals) != 1:
        raise ValueError(f"a maze needs exactly one S and one G, got {len(starts)} and {len(goals)}")
    return flat, int(starts[0]), int(goals[0]), g.shape[0]


def shortest_path_length(maze: np.ndarray) -> int | None:
    """Steps on a shortest S-G path through non-wall cells (BFS), or None if G is unreachable."""
    flat, s, g, size = _endpoints(maze)
    dist, _ = _bfs((flat != WALL).tolist(), size, s)
    return dist[g] if dist[g] >= 0 else None


def solve(maze: np.ndarray) -> np.ndarray:
    """The label of `maze`: a copy with one shortest S-G path marked `o`. ValueError if none exists."""
    flat, s, g, size = _endpoints(maze)
    dist, parent = _bfs((flat != WALL).tolist(), size, s)
    if dist[g] < 0:
        raise ValueError("the maze has no path from S to G")
    out = flat.astype(np.uint8).copy()
    i = parent[g]
    while i != s:
        out[i] = PATH
        i = parent[i]
    return out.reshape(size, size)


def check_path(inputs: np.ndarray, labels: np.ndarray) -> bool:
    """True if `labels` is `inputs` with only open cells turned into `o`, and the `o` cells plus S
    and G form a simple path from S to G whose length equals the shortest possible."""
    x, y = np.asarray(inputs), np.asarray(labels)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] != x.shape[1]:
        return False
    if not np.isin(x, (WALL, OPEN, START, GOAL)).all() or np.count_nonzero(x == START) != 1 \
            or np.count_nonzero(x == GOAL) != 1:
        return False
    changed = x != y
    if np.any(changed & ((x != OPEN) | (y != PATH))):
        return False
    best = shortest_path_length(x)
    on = (y == PATH) | (y == START) | (y == GOAL)
    if best is None or int(on.sum()) != best + 1:
        return False
    # a simple path: endpoints S, G have one on-path neighbour, every `o` two, and it is connected
    p = np.pad(on, 1)
    degree = (p[:-2, 1:-1].astype(int) + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) * on
    want = np.where((y == START) | (y == GOAL), 1, 2) * on
    if not np.array_equal(degree, want):
        return False
    dist, _ = _bfs(on.ravel().tolist(), x.shape[0], int(np.flatnonzero(x.ravel() == START)[0]))
    return dist[int(np.flatnonzero(x.ravel() == GOAL)[0])] == best


# --- generation --------------------------------------------------------------------------------

def _random_maze(size: int, rng: random.Random) -> list[bool]:
    """Open-cell mask of a random maze: a depth-first spanning tree on a lattice of cells two
    apart (pillars and walls in between), with a few extra walls knocked out to make loops."""
    ys = range(rng.randrange(2) if size % 2 == 0 else 0, size, 2)  # even sizes: wall strip top or bottom
    xs = range(rng.randrange(2) if size % 2 == 0 else 0, size, 2)
    h, w = len(ys), len(xs)
    open_ = [False] * (size * size)
    visited = [[False] * w for _ in range(h)]
    start = (rng.randrange(h), rng.randrange(w))
    visited[start[0]][start[1]] = True
    open_[ys[start[0]] * size + xs[start[1]]] = True
    stack = [start]
    while stack:
        cy, cx = stack[-1]
        nbrs = [(cy + dy, cx + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= cy + dy < h and 0 <= cx + dx < w and not visited[cy + dy][cx + dx]]
        if not nbrs:
            stack.pop()
            continue
        ny, nx = rng.choice(nbrs)
        visited[ny][nx] = True
        open_[ys[ny] * size + xs[nx]] = True
        open_[(ys[cy] + ys[ny]) // 2 * size + (xs[cx] + xs[nx]) // 2] = True
        stack.append((ny, nx))
    for cy in range(h):  # knock out some remaining walls between lattice neighbours
        for cx in range(w):
            for ny, nx in ((cy + 1, cx), (cy, cx + 1)):
                if ny < h and nx < w and rng.random() < EXTRA_OPENING:
                    open_[(ys[cy] + ys[ny]) // 2 * size + (xs[cx] + xs[nx]) // 2] = True
    return open_


def _place_endpoints(open_: list[bool], size: int, min_path: int, rng: random.Random) -> tuple[int, int] | None:
    """Random S, then G random among cells more than `min_path` steps away. If S is too central
    for that, retry once from the cell farthest from it (an end of a near-longest path)."""
    cells = [i for i, ok in enumerate(open_) if ok]
    s = rng.choice(cells)
    for _ in range(2):
        dist, _ = _bfs(open_, size, s)
        far = [i for i in cells if dist[i] > max(min_path, 0)]
        if far:
            return s, rng.choice(far)
        s = max(cells, key=lambda i: dist[i])
    return None


def generate(count: int, size: int = 30, min_path: int = 0, seed: int = 0,
             progress: bool = False, max_attempts: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct random mazes and their labels, uint8 (count, size, size), each with a
    shortest S-G path longer than `min_path` steps. Deterministic for `seed`; ValueError after
    `max_attempts` rejected mazes (default 100 + 20 * count), or after 1000 without a single one
    (`min_path` out of reach for `size`: said in a second, not after the whole budget)."""
    from tqdm import tqdm

    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    rng = random.Random(seed)
    max_attempts = 100 + 20 * count if max_attempts is None else max_attempts
    inputs = np.zeros((count, size, size), dtype=np.uint8)
    labels = np.zeros((count, size, size), dtype=np.uint8)
    seen: set[bytes] = set()
    bar = tqdm(total=count, desc=f"maze {size}x{size}", disable=not progress)
    made = attempts = 0
    while made < count:
        attempts += 1
        if attempts > max_attempts or (made == 0 and attempts > 1000):
            raise ValueError(f"gave up after {attempts - 1} attempts with {made}/{count} mazes: "
                             f"min_path={min_path} too long for size {size}")
        open_ = _random_maze(size, rng)
        ends = _place_endpoints(open_, size, min_path, rng)
        if ends is None:
            continue
        grid = np.where(np.array(open_, dtype=bool), OPEN, WALL).astype(np.uint8).ravel()
        grid[ends[0]], grid[ends[1]] = START, GOAL
        grid = grid.reshape(size, size)
        key = grid.tobytes()
        if key in seen:
            continue
        seen.add(key)
        inputs[made], labels[made] = grid, solve(grid)
        made += 1
        bar.update(1)
    bar.close()
    return inputs, labels


# --- augmentation and files --------------------------------------------------------------------

def augment(grid: np.ndarray, t: int) -> np.ndarray:
    """Dihedral transform `t` (0..7, ids of puzzles.grid) of maze grid(s) (..., n, n)."""
    return np.ascontiguousarray(dihedral(np.asarray(grid), t))


def invert_augmentation(grid: np.ndarray, t: int) -> np.ndarray:
    """Undo `augment(grid, t)`."""
    return np.ascontiguousarray(inverse_dihedral(np.asarray(grid), t))


def read_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) uint8 (N, n, n) token grids from a Maze-Hard CSV (`source,question,answer,rating`)."""
    inputs, labels = [], []
    side = None
    for lineno, row in csv_rows(path):
        where = f"{path}:{lineno}"
        for text, out in ((row[1], inputs), (row[2], labels)):
            try:
                grid = encode(text)
            except ValueError as err:
                raise PuzzleError(f"{where}: {err}") from None
            if side is not None and grid.shape[0] != side:
                raise PuzzleError(f"{where}: a {grid.shape[0]}x{grid.shape[0]} maze in a file of {side}x{side} mazes")
            side = grid.shape[0]
            out.append(grid)
    shape = (len(inputs), side or 0, side or 0)
    return np.array(inputs, dtype=np.uint8).reshape(shape), np.array(labels, dtype=np.uint8).reshape(shape)
