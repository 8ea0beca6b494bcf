"""Does an answer obey the puzzle's own rules (whatever the label says)? One checker for every tool.

    ok = valid_solution("sudoku", {"box": (2, 3)}, inputs, preds)     # (M,) bool for (M, S) token rows
    ok = valid_solution("maze", {"size": 11}, inputs, preds)

Rows are in dataset token space. `info` is the family's geometry as `puzzles.dataset.grid_spec`
gives it (Sudoku: "box"; maze: "size"). Sudoku: every cell holds a digit (a blank or padding token
never counts as solved), rows, columns and boxes hold each digit once, and the givens are kept;
maze: the path is a valid shortest path from S to G. Families without a checker (ARC) get all False.
Used by the evaluator (valid_solution metric), the `checked` selection rule, train.solve and
bench.inference.
"""
from __future__ import annotations

import numpy as np

from . import maze, sudoku

CHECKED = ("sudoku", "maze")  # families with a checker


def has_checker(family: str, info: dict) -> bool:
    return family == "maze" or (family == "sudoku" and bool(info.get("box")))


def valid_solution(family: str, info: dict, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Per row: does the answer satisfy the puzzle's rules? (M,) bool for (M, S) inputs and answers."""
    if family == "sudoku" and info.get("box"):
        box = tuple(info["box"])
        n = box[0] * box[1]
        filled = ((preds >= 2) & (preds <= n + 1)).all(-1)  # token = digit + 1; 1 = blank, 0 = padding
        return np.array([bool(ok) and sudoku.check(sudoku.decode(p, n), box, puzzle=sudoku.decode(x, n))
                         for ok, x, p in zip(filled, inputs, preds)], dtype=bool)
    if family == "maze":
        n = info["size"]
        return np.array([maze.check_path(x.reshape(n, n), p.reshape(n, n)) for x, p in zip(inputs, preds)],
                        dtype=bool)
    return np.zeros(len(inputs), dtype=bool)
