"""ARC-AGI canvas token encoding (30x30 by default), augmentations and their inverses, augmented names.

Encoding (reference section 5.2): a grid sits in a 30x30 canvas at a top-left offset; colour c is
token c + 2, EOS (1) marks the cells directly below and right of the grid (inside the canvas,
never the diagonal corner), everything else is PAD (0). Flattened row-major: seq_len 900.
The canvas side is a parameter (`canvas`, 2..30, recorded in dataset.json): a smaller canvas holds
only grids that fit it (e.g. 10: grids up to 10x10, 9x9 with room for the EOS border) and makes
sequences of canvas**2 tokens; functions that read token rows take the side from the row length.

Augmentation: colour map first (colour 0 fixed, 1..9 permuted), then dihedral transform t
(`puzzles.grid`). An augmented puzzle is named "<task>|||t<t>|||<perm>", perm being the ten new
colours of old colours 0..9. `copy_keys` reads every identifier's task and augmentation back from
these names (the per-task puzzle embedding's keys). `expand_examples` re-creates examples from
compact build arrays.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from puzzles.arc.data import MAX_SIZE
from puzzles.errors import PuzzleError
from puzzles.grid import dihedral, invert_permutation, inverse_dihedral

PAD, EOS, COLOUR0 = 0, 1, 2
VOCAB_SIZE = 12
SEQ_LEN = MAX_SIZE * MAX_SIZE
SEPARATOR = "|||"
IDENTITY = np.arange(10, dtype=np.uint8)
# Dihedral transform t as index arithmetic (checked against puzzles.grid.dihedral in the tests):
# output cell (a, b) reads source cell (row, col) with u, v = (b, a) if SWAP else (a, b),
# row = h-1-u if ROW_FLIP else u, col = w-1-v if COL_FLIP else v. SWAP also swaps the shape.
SWAP = np.array([0, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
ROW_FLIP = np.array([0, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
COL_FLIP = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
EXPAND_CHUNK = 2048  # rows per vectorised pass in expand_examples (bounds its temporary memory)
MIN_CANVAS = 2


def check_canvas(canvas: int) -> int:
    """`canvas` as an int; PuzzleError unless 2 <= canvas <= 30 (the reference's 30x30 is the most)."""
    if isinstance(canvas, bool) or not isinstance(canvas, (int, np.integer)) or not MIN_CANVAS <= canvas <= MAX_SIZE:
        raise PuzzleError(f"canvas must be an integer from {MIN_CANVAS} to {MAX_SIZE}, got {canvas!r}")
    return int(canvas)


def canvas_of(tokens: np.ndarray) -> int:
    """The canvas side of token rows (..., side * side)."""
    n = np.asarray(tokens).shape[-1]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise PuzzleError(f"ARC token rows must hold a square canvas, got {n} tokens")
    return side


def fits(shape: tuple[int, int], canvas: int) -> bool:
    """Whether a grid of `shape` fits a canvas of side `canvas` (EOS cells may fall off the edge)."""
    return shape[0] <= canvas and shape[1] <= canvas


# ---------------------------------------------------------------------------------------- encoding

def encode_grid(grid: np.ndarray, offset: tuple[int, int] = (0, 0), canvas: int = MAX_SIZE) -> np.ndarray:
    """(canvas**2,) uint8 tokens of `grid` placed at top-left `offset` of the canvas (900 for 30)."""
    h, w = grid.shape
    r, c = offset
    if not (0 <= r and 0 <= c and r + h <= canvas and c + w <= canvas):
        raise ValueError(f"a {h}x{w} grid at offset {offset} does not fit the {canvas}x{canvas} canvas")
    out = np.zeros((canvas, canvas), dtype=np.uint8)
    out[r:r + h, c:c + w] = grid + COLOUR0
    if r + h < canvas:
        out[r + h, c:c + w] = EOS
    if c + w < canvas:
        out[r:r + h, c + w] = EOS
    return out.reshape(-1)


def query_slots(tokens: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(query input, query output) canvas rows (B, canvas**2) of in-context rows (B, slots * canvas**2)
    (`puzzles.arc.context`: the query's two grids are the last two slots); `slots` 0 (the one-pair
    layout) gives the rows themselves twice."""
    tokens = np.asarray(tokens)
    if not slots:
        return tokens, tokens
    per_slot = tokens.reshape(len(tokens), slots, -1)
    return per_slot[:, -2], per_slot[:, -1]


def crop_shapes(tokens: np.ndarray) -> np.ndarray:
    """(B, 2) shapes the evaluator crops from a batch of (B, canvas**2) token rows (see `crop`)."""
    side = canvas_of(tokens)
    g = np.asarray(tokens).reshape(-1, side, side)
    is_colour = (g >= COLOUR0) & (g < COLOUR0 + 10)
    # leading colour cells per row, then capped by every row above: usable width of a top rectangle
    lead = np.where(is_colour.all(-1), side, np.argmin(is_colour, axis=-1))
    width = np.minimum.accumulate(lead, axis=-1)
    area = width * np.arange(1, side + 1)
    rows = np.argmax(area, axis=-1)  # first maximum, as the reference's strict ">" keeps
    best = area[np.arange(len(g)), rows]
    return np.where(best[:, None] > 0, np.stack([rows + 1, width[np.arange(len(g)), rows]], -1), 0)


def crop(tokens: np.ndarray) -> np.ndarray:
    """The grid in a (canvas**2,) token row: the largest top-left rectangle of colour tokens, minus 2.

    Matches the reference evaluator, also on malformed predictions (possibly an empty 0x0 grid).
    """
    (h, w), = crop_shapes(tokens)
    side = canvas_of(tokens)
    return (np.asarray(tokens).reshape(side, side)[:h, :w] - COLOUR0).astype(np.uint8)


# ------------------------------------------------------------------------------------ augmentation

def augment_grid(grid: np.ndarray, t: int, perm: np.ndarray) -> np.ndarray:
    """Colour map `perm` (perm[old] = new) first, then dihedral transform `t`."""
    return np.ascontiguousarray(dihedral(np.asarray(perm, dtype=np.uint8)[grid], t))


def invert_grid(grid: np.ndarray, t: int, perm: np.ndarray) -> np.ndarray:
    """Undo `augment_grid(grid, t, perm)`."""
    inv = invert_permutation(np.asarray(perm, dtype=np.uint8))
    return np.ascontiguousarray(inv[inverse_dihedral(grid, t)])


def aug_name(task: str, t: int, perm: np.ndarray) -> str:
    """The reference's name of an augmented copy: "<task>|||t<t>|||<ten colour digits>"."""
    return f"{task}{SEPARATOR}t{t}{SEPARATOR}{''.join(str(int(x)) for x in perm)}"


def parse_name(name: str) -> tuple[str, int, np.ndarray]:
    """(task, t, perm) of an identifier name; a plain task name gives (name, 0, identity)."""
    if SEPARATOR not in name:
        return name, 0, IDENTITY.copy()
    parts = name.split(SEPARATOR)
    task, tpart, ppart = SEPARATOR.join(parts[:-2]), parts[-2], parts[-1]
    ok = (len(parts) >= 3 and len(tpart) == 2 and tpart[0] == "t" and tpart[1] in "01234567"
          and len(ppart) == 10 and sorted(ppart) == list("0123456789"))
    if not ok:
        raise PuzzleError(f"identifier {name!r}: expected '<task>|||t<0-7>|||<permutation of 0-9>'")
    return task, int(tpart[1]), np.array([int(ch) for ch in ppart], dtype=np.uint8)


class CopyKeys(NamedTuple):
    """Per puzzle identifier of an ARC dataset: which task it is a copy of, and how it was augmented.
    (Translation is drawn per example, not per copy, so it is no part of a copy's key.)"""
    tasks: list[str]  # task index -> task name; "<blank>" (identifier 0, the padding rows) is task 0
    task: np.ndarray  # (N,) int32 task index of each identifier
    dihedral: np.ndarray  # (N,) uint8 dihedral transform t (puzzles.grid.dihedral)
    perm: np.ndarray  # (N, 10) uint8 colour map, perm[old] = new


def copy_keys(identifiers: Sequence[str]) -> CopyKeys:
    """The keys of every identifier, read from its name: "<task>|||t<t>|||<perm>" for an augmented
    copy, the plain task name for the original (t 0, identity). Every ARC dataset names its
    identifiers so (the reference's builder too), so datasets built before the keys were used have
    them as well; a malformed name is a PuzzleError naming it. Tasks are numbered in order of first
    appearance."""
    index: dict[str, int] = {}
    task = np.zeros(len(identifiers), np.int32)
    dihedral = np.zeros(len(identifiers), np.uint8)
    perm = np.zeros((len(identifiers), 10), np.uint8)
    for i, name in enumerate(identifiers):
        name_of_task, dihedral[i], perm[i] = parse_name(name)
        task[i] = index.setdefault(name_of_task, len(index))
    return CopyKeys(list(index), task, dihedral, perm)


def translation_range(shape_in: tuple[int, int], shape_out: tuple[int, int],
                      canvas: int = MAX_SIZE) -> tuple[int, int]:
    """Number of top-left offsets per axis at which both grids of a pair fit the canvas."""
    return (canvas - max(shape_in[0], shape_out[0]) + 1, canvas - max(shape_in[1], shape_out[1]) + 1)


# ------------------------------------------------------------------------------- compact examples

def _canvas(cells, start, h, w, t, perm, off, side: int = MAX_SIZE) -> np.ndarray:
    """(B, side**2) tokens of B grids (packed in `cells`) after colour map, dihedral t and offset.

    The source index of canvas cell (i, j) splits into a part that depends on i only and one on
    j only, so all index arithmetic runs on (B, side) vectors and only a few passes touch (B, side**2).
    """
    B = len(h)
    swap = SWAP[t][:, None]
    h2, w2 = np.where(swap, w[:, None], h[:, None]), np.where(swap, h[:, None], w[:, None])  # transformed shape
    ar = np.arange(side, dtype=np.int32)
    a = ar[None, :] - off[:, :1]  # (B,side) row of canvas row i inside the transformed grid
    b = ar[None, :] - off[:, 1:]  # (B,side) column of canvas column j inside it
    in_a, in_b = (a >= 0) & (a < h2), (b >= 0) & (b < w2)
    hh, ww = h[:, None], w[:, None]
    # source row = u or h-1-u, source col = v or w-1-v, with (u, v) = (a, b), or (b, a) when t swaps axes
    row_of = lambda u: np.where(ROW_FLIP[t][:, None], hh - 1 - u, u) * ww
    col_of = lambda v: np.where(COL_FLIP[t][:, None], ww - 1 - v, v)
    part_i = np.where(swap, col_of(a), row_of(a)) + start[:, None].astype(np.int32)
    part_j = np.where(swap, row_of(b), col_of(b))
    inside = in_a[:, :, None] & in_b[:, None, :]
    src = np.where(inside, part_i[:, :, None] + part_j[:, None, :], 0)
    # colour map of row k sits at perm_flat[10k : 10k + 10]; tokens are colour + 2
    lut = (np.asarray(perm, np.uint8) + COLOUR0).reshape(-1)
    colour = lut[cells[src] + (10 * np.arange(B, dtype=np.int32))[:, None, None]]
    eos = ((a == h2)[:, :, None] & in_b[:, None, :]) | (in_a[:, :, None] & (b == w2)[:, None, :])
    out = np.where(inside, colour, eos.view(np.uint8))
    return out.reshape(B, side * side)


def expand_examples(compact: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) uint8 (len(rows), canvas**2) of the given example rows of a compact ARC split.

    `compact` holds (see `puzzles.arc.build`): base_cells (packed grids), base_start/base_shape
    (per grid; pair p = grids 2p, 2p+1), puzzle_indices, puzzle_base (first pair of each puzzle),
    puzzle_t, puzzle_perm (dihedral id and colour map of each puzzle), example_offset (row, col),
    and `canvas` (its side, one value) only when it is not 30, so 30x30 datasets keep their files.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    side = int(np.asarray(compact["canvas"]).reshape(-1)[0]) if "canvas" in compact else MAX_SIZE
    out = (np.empty((len(rows), side * side), np.uint8), np.empty((len(rows), side * side), np.uint8))
    cells = np.asarray(compact["base_cells"])
    starts = np.asarray(compact["base_start"])
    shapes = np.asarray(compact["base_shape"]).astype(np.int32)
    pidx = np.asarray(compact["puzzle_indices"])
    for lo in range(0, len(rows), EXPAND_CHUNK):
        r = rows[lo:lo + EXPAND_CHUNK]
        p = np.searchsorted(pidx, r, side="right") - 1
        pair = compact["puzzle_base"][p].astype(np.int64) + (r - pidx[p])
        t = np.asarray(compact["puzzle_t"][p], dtype=np.int64)
        perm = np.asarray(compact["puzzle_perm"][p])
        off = np.asarray(compact["example_offset"][r]).astype(np.int32)
        for k in range(2):  # 0 = input grid, 1 = output grid of the pair
            g = 2 * pair + k
            out[k][lo:lo + len(r)] = _canvas(cells, starts[g], shapes[g, 0], shapes[g, 1], t, perm, off, side)
    return out

