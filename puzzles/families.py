"""The puzzle families, and what a dataset's metadata says about its grids.

    from puzzles.families import FAMILIES, grid_spec
    grid_spec({"family": "sudoku", "box": [2, 3]})   # {"family": "sudoku", "box": [2, 3], "size": 6}

`FAMILIES` is the one list of families: the trainer's config, the evaluator and the renderers
import it from here. Datasets built by the reference builders carry no "family" field, so the
family (and the grid) is inferred from the vocabulary and the sequence length.
"""
from __future__ import annotations

import math

from puzzles.errors import PuzzleError
from puzzles.sudoku_text import box_of

FAMILIES = ("sudoku", "maze", "arc")


def families_of(meta: dict) -> tuple[str, ...]:
    """The families a dataset's metadata can describe: its "family" field (our builders write it),
    or for datasets without one (the reference builders') every family whose vocabulary and grid
    fit, most likely first (a 4x4 Sudoku and a 4x4 maze both have 16 cells and 6 tokens)."""
    if meta.get("family") is not None:
        return (meta["family"],)
    seq_len, vocab = meta.get("seq_len"), meta.get("vocab_size")
    side = math.isqrt(seq_len) if isinstance(seq_len, int) and seq_len > 0 else 0
    found = []
    if vocab == 12 and seq_len == 900:
        found.append("arc")
    if vocab == 6 and side * side == seq_len:
        found.append("maze")
    if side and side * side == seq_len and vocab == side + 2:
        found.append("sudoku")
    return tuple(found)


def grid_spec(meta: dict) -> dict:
    """Normalise dataset/eval metadata to {"family", "box" (sudoku), "size" (sudoku/maze), "canvas" (arc),
    and for in-context ARC "context" and "slots"}.

    Our builders write "family"; reference datasets lack it, so infer it from vocab/seq_len.
    """
    family = (families_of(meta) or (None,))[0]
    seq_len = meta.get("seq_len")
    if family is None:
        raise PuzzleError(f"cannot tell the puzzle family from metadata {meta!r}: "
                          "expected a 'family' field")
    if family not in FAMILIES:
        raise PuzzleError(f"unknown puzzle family {family!r} in metadata (expected one of {FAMILIES})")
    spec: dict = {"family": family}
    if family == "sudoku":
        box = meta.get("box")
        if box is None:  # reference 9x9 datasets: the side names the box (sudoku.box_of)
            try:
                box = box_of(math.isqrt(seq_len) if seq_len else 9)
            except ValueError as err:
                raise PuzzleError(f"sudoku metadata without a 'box' field: {err}") from None
        spec["box"] = [int(box[0]), int(box[1])]
        spec["size"] = spec["box"][0] * spec["box"][1]
    elif family == "maze":
        spec["size"] = int(meta.get("size") or math.isqrt(seq_len))
    elif family == "arc":  # the encoding's canvas side: 30 (reference), or a smaller one the builder chose
        spec["canvas"] = int(meta.get("canvas") or (math.isqrt(seq_len) if seq_len else 30))
        if meta.get("context"):  # in-context layout (puzzles/arc/context.py): K pairs + query in slots
            spec["context"], spec["slots"] = int(meta["context"]), int(meta["slots"])
    return spec
