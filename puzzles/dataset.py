"""The on-disk dataset format: writer and reader, compatible with the reference builders' layout.

    <root>/identifiers.json              list: identifier id -> puzzle name ([0] = "<blank>")
    <root>/test_puzzles.json             (ARC) any extra JSON files the builder passes
    <root>/{train,test}/dataset.json     metadata (reference fields + "family", "box"/"size", "storage")
    <root>/{train,test}/all__inputs.npy, all__labels.npy            (num_examples, seq_len)
    <root>/{train,test}/all__puzzle_identifiers.npy                 int32 (num_puzzles,)
    <root>/{train,test}/all__puzzle_indices.npy                     int32 (num_puzzles + 1,)
    <root>/{train,test}/all__group_indices.npy                      int32 (num_groups + 1,)

Compact storage ("storage": "compact" in dataset.json) replaces inputs/labels by family arrays
`all__compact__<name>.npy`, expanded on demand by the family's `expand_examples` (ARC: a few
hundred MB instead of 7 GB). Arrays open memory-mapped, so a huge dataset opens instantly.

    from puzzles.dataset import load_split
    split = load_split("data/sudoku", "train"); inputs, labels = split.examples([0, 1, 2])
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from puzzles.errors import PuzzleError

SET = "all"  # the reference's single set name, prefix of every npy file
INDEX_FIELDS = ("puzzle_identifiers", "puzzle_indices", "group_indices")
EXAMPLE_FIELDS = ("inputs", "labels")
COMPACT_PREFIX = f"{SET}__compact__"
# The reference fields, in the reference's order; builders may add more after them.
BASE_META = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0}
WRITE_CHUNK = 65536  # rows expanded at a time when materialising compact arrays


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


# ----------------------------------------------------------------------------------------- writer

def is_dataset_dir(path: Path) -> bool:
    """Does `path` hold only what `write_dataset` makes (identifiers.json and other JSON files, split
    folders of dataset.json + all__*.npy)? Only such a folder may be replaced by --force."""
    def ours(f: Path, split: bool) -> bool:
        if f.is_symlink() or not f.is_file():
            return False
        return f.suffix == ".json" if not split else f.name == "dataset.json" or (
            f.name.startswith(f"{SET}__") and f.suffix == ".npy")

    if path.is_symlink() or not (path / "identifiers.json").is_file():
        return False
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            if not (entry / "dataset.json").is_file() or not all(ours(f, True) for f in entry.iterdir()):
                return False
        elif not ours(entry, False):
            return False
    return True


def check_output(out: str | os.PathLike, force: bool) -> Path:
    """Fail early (before a long build) if `out` cannot be written; returns it as a Path."""
    out = Path(out)
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise PuzzleError(f"{out} is a file, not a dataset directory; choose another --out")
    if out.exists() and not force:
        raise PuzzleError(f"{out} exists; pass --force to overwrite")
    if out.exists():  # --force replaces a dataset this project wrote, never anything else
        cwd = Path.cwd().resolve()
        if out.resolve() in (cwd, *cwd.parents):
            raise PuzzleError(f"--out {out} is the current folder or one above it; choose a new folder for the dataset")
        if not is_dataset_dir(out):
            raise PuzzleError(f"--out {out} holds files that are not a dataset written by puzzles.build; "
                              f"--force only replaces such a dataset: choose another --out")
    parent = out.absolute().parent
    existing = parent
    while not existing.exists():  # missing parents are created later, by write_dataset
        existing = existing.parent
    if not existing.is_dir():
        raise PuzzleError(f"{out}: cannot create parent directory {parent}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PuzzleError(f"{out}: parent directory {existing} is not writable")
    return out


def _save(path: Path, arr: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(arr))


def _write_split(directory: Path, identifiers_count: int, data: SplitData, materialize: bool) -> None:
    directory.mkdir()
    pid = np.asarray(data.puzzle_identifiers, dtype=np.int32)
    pidx = np.asarray(data.puzzle_indices, dtype=np.int32)
    gidx = np.asarray(data.group_indices, dtype=np.int32)
    n = data.num_examples
    check_indices(pid, pidx, gidx, n, identifiers_count, str(directory))
    meta = dict(BASE_META)
    meta.update(
        vocab_size=int(data.meta["vocab_size"]), seq_len=int(data.meta["seq_len"]),
        num_puzzle_identifiers=identifiers_count, total_groups=len(gidx) - 1,
        mean_puzzle_examples=n / max(len(pid), 1), total_puzzles=len(pid), sets=[SET],
    )
    meta.update({k: v for k, v in data.meta.items() if k not in meta})
    if data.compact is not None and not materialize:
        meta["storage"] = "compact"
        meta["compact_arrays"] = sorted(data.compact)
        for name, arr in data.compact.items():
            _save(directory / f"{COMPACT_PREFIX}{name}.npy", arr)
    else:
        meta.pop("storage", None)
        meta.pop("compact_arrays", None)
        if data.compact is None:
            for name, arr in (("inputs", data.inputs), ("labels", data.labels)):
                if arr.shape != (n, meta["seq_len"]):
                    raise ValueError(f"{name} has shape {arr.shape}, expected ({n}, {meta['seq_len']})")
                _save(directory / f"{SET}__{name}.npy", arr)
        else:  # expand in chunks appended to the npy files, never holding the full arrays
            expand = EXPANDERS[meta["family"]]
            header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (n, meta["seq_len"])}
            # plain writes, not a memmap: written pages would otherwise count as our resident memory
            with open(directory / f"{SET}__inputs.npy", "wb") as fi, open(directory / f"{SET}__labels.npy", "wb") as fl:
                for f in (fi, fl):
                    np.lib.format.write_array_header_1_0(f, header)
                for start in range(0, n, WRITE_CHUNK):
                    rows = np.arange(start, min(n, start + WRITE_CHUNK))
                    for f, chunk in zip((fi, fl), expand(data.compact, rows)):
                        f.write(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
    _save(directory / f"{SET}__puzzle_identifiers.npy", pid)
    _save(directory / f"{SET}__puzzle_indices.npy", pidx)
    _save(directory / f"{SET}__group_indices.npy", gidx)
    (directory / "dataset.json").write_text(json.dumps(meta))


def write_dataset(out: str | os.PathLike, identifiers: list[str], splits: dict[str, SplitData],
                  extra_files: dict[str, object] | None = None, force: bool = False,
                  materialize: bool = False) -> Path:
    """Write a dataset directory atomically: build it beside `out`, then rename it into place.

    `extra_files` maps a file name (e.g. "test_puzzles.json") to a JSON-serialisable object.
    `materialize` expands compact splits into full inputs/labels arrays (the reference layout).
    """
    out = check_output(out, force)
    if not identifiers or identifiers[0] != "<blank>":
        raise ValueError("identifiers must start with '<blank>' (identifier id 0)")
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.absolute().parent))
    try:
        (tmp / "identifiers.json").write_text(json.dumps(list(identifiers)))
        for name, obj in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(obj))
        for split_name, data in splits.items():
            _write_split(tmp / split_name, len(identifiers), data, materialize)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():  # --force: move the old one aside first, so a failure never loses both
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
            os.replace(out, old / "d")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def materialize(src: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Turn a (compact) dataset at `src` into the full reference layout at `out`."""
    src = Path(src)
    identifiers = load_identifiers(src)
    splits = {}
    for name in sorted(p.name for p in src.iterdir() if (p / "dataset.json").is_file()):
        s = load_split(src, name)
        splits[name] = SplitData(meta=s.meta, puzzle_identifiers=s.puzzle_identifiers,
                                 puzzle_indices=s.puzzle_indices, group_indices=s.group_indices,
                                 inputs=s._inputs, labels=s._labels, compact=s._compact)
    extra = {p.name: json.loads(p.read_text()) for p in src.glob("*.json") if p.name != "identifiers.json"}
    return write_dataset(out, identifiers, splits, extra, force=force, materialize=True)


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


def disk_bytes(root: str | os.PathLike) -> int:
    """Total size of the files under `root` (for build summaries)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


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
    """Normalise dataset/eval metadata to {"family", "box" (sudoku), "size" (sudoku/maze), "canvas" (arc)}.

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
        if box is None:  # reference 9x9 datasets: pick the squarest r x c with r * c = n
            n = math.isqrt(seq_len) if seq_len else 9
            r = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
            box = [r, n // r]
        spec["box"] = [int(box[0]), int(box[1])]
        spec["size"] = spec["box"][0] * spec["box"][1]
    elif family == "maze":
        spec["size"] = int(meta.get("size") or math.isqrt(seq_len))
    elif family == "arc":  # the encoding's canvas side: 30 (reference), or a smaller one the builder chose
        spec["canvas"] = int(meta.get("canvas") or (math.isqrt(seq_len) if seq_len else 30))
    return spec
