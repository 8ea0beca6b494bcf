"""One split of a dataset: the in-memory form a builder writes (`SplitData`) and the reader of the
on-disk form (`Split`, `load_split`). The layout itself is described in puzzles/dataset.py.

    from puzzles.dataset import load_split        # re-exported there, the usual import
    split = load_split("data/sudoku", "train"); inputs, labels = split.examples([0, 1, 2])

Compact storage ("storage": "compact" in dataset.json) keeps family arrays instead of the full
inputs/labels; `EXPANDERS` maps a family to the function that re-creates rows from them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from puzzles.errors import PuzzleError

SET = "all"  # the reference's single set name, prefix of every npy file
INDEX_FIELDS = ("puzzle_identifiers", "puzzle_indices", "group_indices")
COMPACT_PREFIX = f"{SET}__compact__"
# The reference fields, in the reference's order; builders may add more after them.
BASE_META = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0}


def _expand_arc(compact: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from puzzles import arc  # imported lazily: reading a Sudoku dataset needs no ARC code

    return arc.expand_examples(compact, rows)


# family -> function(compact arrays, rows) -> (inputs, labels) of shape (len(rows), seq_len)
EXPANDERS: dict[str, Callable[[dict[str, np.ndarray], np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "arc": _expand_arc,
}


@dataclass
class SplitData:
    """One split in memory, ready to write. Give either `inputs`+`labels` or `compact` (+ meta family)."""

    meta: dict  # at least vocab_size and seq_len; family/box/size as the builder likes
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    inputs: np.ndarray | None = None
    labels: np.ndarray | None = None
    compact: dict[str, np.ndarray] | None = field(default=None)

    def __post_init__(self):
        if (self.inputs is None) != (self.labels is None):
            raise ValueError("SplitData: give both inputs and labels, or neither")
        if (self.inputs is None) == (self.compact is None):
            raise ValueError("SplitData: give exactly one of inputs/labels or compact")
        for key in ("vocab_size", "seq_len"):
            if key not in self.meta:
                raise ValueError(f"SplitData.meta: missing {key!r}")
        if self.compact is not None and self.meta.get("family") not in EXPANDERS:
            raise ValueError(f"SplitData.meta: compact storage needs a family in {sorted(EXPANDERS)}")

    @property
    def num_examples(self) -> int:
        if self.inputs is not None:
            return len(self.inputs)
        return int(self.puzzle_indices[-1]) if len(self.puzzle_indices) else 0


def check_indices(puzzle_identifiers, puzzle_indices, group_indices, num_examples: int,
                  num_identifiers: int | None, where: str) -> None:
    """Raise PuzzleError (naming `where`) unless the three index arrays describe `num_examples` rows."""
    def bad(msg: str):
        raise PuzzleError(f"{where}: inconsistent index arrays: {msg}")

    for name, arr in (("puzzle_indices", puzzle_indices), ("group_indices", group_indices),
                      ("puzzle_identifiers", puzzle_identifiers)):
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            bad(f"{name} must be a 1-d integer array, got {arr.dtype} {arr.shape}")
    num_puzzles = len(puzzle_identifiers)
    if len(puzzle_indices) != num_puzzles + 1:
        bad(f"puzzle_indices has {len(puzzle_indices)} entries, expected num_puzzles + 1 = {num_puzzles + 1}")
    if len(group_indices) < 1:
        bad("group_indices is empty")
    for name, arr, end in (("puzzle_indices", puzzle_indices, num_examples),
                           ("group_indices", group_indices, num_puzzles)):
        if arr[0] != 0 or arr[-1] != end:
            bad(f"{name} must run from 0 to {end}, got {arr[0]}..{arr[-1]}")
        if np.any(np.diff(arr) < 0):
            bad(f"{name} is not non-decreasing")
    if num_puzzles and (puzzle_identifiers.min() < 0 or
                        (num_identifiers is not None and puzzle_identifiers.max() >= num_identifiers)):
        bad(f"puzzle_identifiers outside 0..{num_identifiers}")


# ----------------------------------------------------------------------------------------- reader

def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise PuzzleError(f"{path}: missing dataset file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise PuzzleError(f"{path}: not a readable .npy array ({err})") from None


def _load_json(path: Path, what: str):
    if not path.is_file():
        raise PuzzleError(f"{path.parent} is not a dataset: {path.name} missing ({what})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PuzzleError(f"{path}: invalid JSON ({err})") from None


def _check_tokens(path: Path, arr: np.ndarray, vocab_size: int) -> None:
    """Once per open, on the stored array (not per batch): integer tokens in 0..vocab_size-1. A float
    2.5 would be truncated and a token past the vocabulary would fail deep inside a batch."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise PuzzleError(f"{path}: tokens are {arr.dtype}, not integers")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            raise PuzzleError(f"{path}: token {lo if lo < 0 else hi} is outside the vocabulary 0..{vocab_size - 1}")


class Split:
    """One split of a dataset on disk. Index arrays in memory (int32), examples memory-mapped."""

    def __init__(self, root: str | os.PathLike, split: str):
        self.root, self.name = Path(root), split
        directory = self.root / split
        if not self.root.is_dir():
            raise PuzzleError(f"{self.root} is not a dataset directory")
        self.meta: dict = _load_json(directory / "dataset.json", f"split {split!r}")
        for key in ("seq_len", "vocab_size"):
            if not isinstance(self.meta.get(key), int):
                raise PuzzleError(f"{directory / 'dataset.json'}: missing or non-integer {key!r}")
        for key, default in BASE_META.items():
            self.meta.setdefault(key, default)
        self.puzzle_identifiers, self.puzzle_indices, self.group_indices = (
            _load_npy(directory / f"{SET}__{name}.npy", mmap=False).astype(np.int32, copy=False)
            for name in INDEX_FIELDS)
        self._inputs = self._labels = self._compact = None
        self._expand = None
        seq_len = self.meta["seq_len"]
        if self.meta.get("storage", "full") == "compact":
            family = self.meta.get("family")
            if family not in EXPANDERS:
                raise PuzzleError(f"{directory / 'dataset.json'}: compact storage of unknown family {family!r}")
            names = self.meta.get("compact_arrays") or sorted(
                p.name[len(COMPACT_PREFIX):-4] for p in directory.glob(f"{COMPACT_PREFIX}*.npy"))
            if not names:
                raise PuzzleError(f"{directory}: compact storage but no {COMPACT_PREFIX}*.npy files")
            self._compact = {n: _load_npy(directory / f"{COMPACT_PREFIX}{n}.npy", mmap=True) for n in names}
            self._expand = EXPANDERS[family]
            num_examples = int(self.puzzle_indices[-1]) if len(self.puzzle_indices) else 0
        else:
            self._inputs = _load_npy(directory / f"{SET}__inputs.npy", mmap=True)
            self._labels = _load_npy(directory / f"{SET}__labels.npy", mmap=True)
            for name, arr in (("inputs", self._inputs), ("labels", self._labels)):
                if arr.ndim != 2 or arr.shape[1] != seq_len:
                    raise PuzzleError(f"{directory / f'{SET}__{name}.npy'}: shape {arr.shape} is not "
                                      f"(examples, seq_len={seq_len})")
            if self._labels.shape[0] != self._inputs.shape[0]:
                raise PuzzleError(f"{directory}: all__inputs.npy has {self._inputs.shape[0]} rows but "
                                  f"all__labels.npy has {self._labels.shape[0]}")
            for name, arr in (("inputs", self._inputs), ("labels", self._labels)):
                _check_tokens(directory / f"{SET}__{name}.npy", arr, self.meta["vocab_size"])
            num_examples = self._inputs.shape[0]
        self._num_examples = num_examples
        check_indices(self.puzzle_identifiers, self.puzzle_indices, self.group_indices, num_examples,
                      self.meta.get("num_puzzle_identifiers"), str(directory))

    def __len__(self) -> int:
        return self._num_examples

    @property
    def num_puzzles(self) -> int:
        return len(self.puzzle_identifiers)

    @property
    def num_groups(self) -> int:
        return len(self.group_indices) - 1

    @property
    def compact(self) -> bool:
        return self._compact is not None

    def examples(self, rows: Iterable[int] | np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) int32 (len(rows), seq_len) for the given example rows (dataset form)."""
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"example rows out of range 0..{len(self) - 1}")
        if self._compact is not None:
            inputs, labels = self._expand(self._compact, rows)
        else:
            inputs, labels = self._inputs[rows], self._labels[rows]
        return inputs.astype(np.int32, copy=False), labels.astype(np.int32, copy=False)

    def arrays(self) -> dict[str, np.ndarray]:
        """The reference's five arrays (inputs/labels in their stored dtype, expanded when compact)."""
        if self._compact is not None:
            inputs, labels = self._expand(self._compact, np.arange(len(self)))
        else:
            inputs, labels = np.asarray(self._inputs), np.asarray(self._labels)
        return {"inputs": inputs, "labels": labels, "puzzle_identifiers": self.puzzle_identifiers,
                "puzzle_indices": self.puzzle_indices, "group_indices": self.group_indices}


class SplitRows:
    """Fixed example rows of a split, read as a split of their own (each row its own puzzle, keeping
    its identifier): what an evaluation reads (meta, name, len, examples, the index arrays), so a
    bounded sample of the train split can be scored like the test split."""

    def __init__(self, split: Split, rows: np.ndarray):
        self.split, self.rows = split, np.asarray(rows, dtype=np.int64).reshape(-1)
        self.root, self.name, self.meta = split.root, split.name, split.meta
        per_row = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
        self.puzzle_identifiers = per_row[self.rows].astype(np.int32)
        self.puzzle_indices = self.group_indices = np.arange(len(self.rows) + 1, dtype=np.int32)

    @classmethod
    def spread(cls, split: Split, n: int) -> "SplitRows":
        """`n` rows spaced evenly over the whole split (all rows when it has fewer): the same rows on
        every call, and every part of the split (every task, for ARC) represented."""
        rows = np.unique(np.linspace(0, len(split) - 1, min(n, len(split))).round().astype(np.int64))
        return cls(split, rows)

    def __len__(self) -> int:
        return len(self.rows)

    def examples(self, rows) -> tuple[np.ndarray, np.ndarray]:
        return self.split.examples(self.rows[rows])


def load_split(root: str | os.PathLike, split: str) -> Split:
    """Open `<root>/<split>` (e.g. "train", "test"); raises PuzzleError if it is not a dataset."""
    return Split(root, split)


def load_identifiers(root: str | os.PathLike) -> list[str]:
    """identifier id -> puzzle name ("<blank>" at 0)."""
    path = Path(root) / "identifiers.json"
    if not Path(root).is_dir():
        raise PuzzleError(f"{root} is not a dataset directory")
    names = _load_json(path, "identifier names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PuzzleError(f"{path}: expected a JSON list of names")
    return names
