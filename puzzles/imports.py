"""Checks on imported puzzle files (Sudoku CSV/text, maze CSV): a test split must not be the
training split, and a partial overlap is said aloud. Used by puzzles/builders.py."""
from __future__ import annotations

import filecmp
import sys
from pathlib import Path

import numpy as np

from puzzles.errors import PuzzleError


def distinct_files(train: Path, test: Path) -> None:
    """An import whose test file is its train file (or a copy of it) would score the model on the
    puzzles it trained on: refuse it. A missing file is left to the reader to report."""
    if train.is_file() and test.is_file() and filecmp.cmp(train, test, shallow=False):
        same = "the same file" if train.samefile(test) else "files with the same contents"
        raise PuzzleError(f"the train file {train} and the test file {test} are {same}: a test set equal to "
                          f"the training set measures nothing; give a held-out test file")


def warn_overlap(train: np.ndarray, test: np.ndarray, test_file: Path) -> None:
    """One warning line when some imported test puzzles are also train puzzles (allowed: it may be
    meant, but the test score then overstates what the model learned)."""
    seen = {x.tobytes() for x in train}
    shared = sum(x.tobytes() in seen for x in test)
    if shared:
        print(f"warning: {shared} of the {len(test)} test puzzles from {test_file} are also train puzzles",
              file=sys.stderr, flush=True)
