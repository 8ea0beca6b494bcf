"""The on-disk dataset format and its writer, compatible with the reference builders' layout.

    <root>/identifiers.json              list: identifier id -> puzzle name ([0] = "<blank>")
    <root>/test_puzzles.json             (ARC) any extra JSON files the builder passes
    <root>/{train,test}/dataset.json     metadata (reference fields + "family", "box"/"size", "storage")
    <root>/{train,test}/all__inputs.npy, all__labels.npy            (num_examples, seq_len)
    <root>/{train,test}/all__puzzle_identifiers.npy                 int32 (num_puzzles,)
    <root>/{train,test}/all__puzzle_indices.npy                     int32 (num_puzzles + 1,)
    <root>/{train,test}/all__group_indices.npy                      int32 (num_groups + 1,)

Every split's dataset.json also holds the dataset's content `fingerprint` (`compute_fingerprint`):
runs record it, so a resume or an evaluation on other puzzles than a run trained on is refused.
A dataset made by `puzzles.builders.build_dataset` records its resolved builder options as "build"
(`options_record`): a trainer reuses a preset-named folder only when they are the ones it wants.

Compact storage ("storage": "compact" in dataset.json) replaces inputs/labels by family arrays
`all__compact__<name>.npy`, expanded on demand by the family's `expand_examples` (for ARC a small
fraction of the full arrays). Arrays open memory-mapped, so a huge dataset opens instantly.

    from puzzles.dataset import load_split, write_dataset
    split = load_split("data/sudoku", "train"); inputs, labels = split.examples([0, 1, 2])

The writer lives here; the split reader and `SplitData` in puzzles/splits.py, the family rules
(`FAMILIES`, `grid_spec`) in puzzles/families.py; this module re-exports them, so one import
serves every caller.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from puzzles.errors import PuzzleError, atomic_dir
from puzzles.families import FAMILIES, families_of, grid_spec  # noqa: F401  (re-exported)
from puzzles.splits import (  # noqa: F401  (re-exported: `from puzzles.dataset import ...` is the usual import)
    BASE_META, COMPACT_PREFIX, EXPANDERS, INDEX_FIELDS, SET, Split, SplitData, check_indices,
    load_identifiers, load_split,
)

WRITE_CHUNK = 65536  # rows expanded at a time when materialising compact arrays
FINGERPRINT = "fingerprint"  # dataset.json key of the dataset's content fingerprint
HASH_CHUNK = 1 << 24  # bytes of an array hashed at a time (memory-mapped, so huge sets stay out of memory)


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


def _write_split(directory: Path, identifiers_count: int, data: SplitData, materialize: bool) -> dict:
    """Write one split's arrays and dataset.json; returns its metadata (the fingerprint comes after)."""
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
    meta.update({k: v for k, v in data.meta.items() if k not in meta and k != FINGERPRINT})
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
    return meta


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
    with atomic_dir(out) as tmp:
        (tmp / "identifiers.json").write_text(json.dumps(list(identifiers)))
        for name, obj in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(obj))
        metas = {name: _write_split(tmp / name, len(identifiers), data, materialize)
                 for name, data in splits.items()}
        fingerprint = compute_fingerprint(tmp)  # of the bytes written, exactly as a reader computes it
        for name, meta in metas.items():
            (tmp / name / "dataset.json").write_text(json.dumps({**meta, FINGERPRINT: fingerprint}))
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


# ------------------------------------------------------------------------------------ fingerprint

def _split_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "dataset.json").is_file())


def compute_fingerprint(root: str | os.PathLike) -> str:
    """sha256 (hex) of a dataset's content: its identifier names and every array of every split
    (file name, dtype, shape, bytes). Metadata is left out, so the value does not depend on who
    wrote the folder or where it lies, and the same build options and seed give the same value."""
    root = Path(root)
    digest = hashlib.sha256(json.dumps(load_identifiers(root)).encode())
    for split in _split_dirs(root):
        for path in sorted(split.glob(f"{SET}__*.npy")):
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise PuzzleError(f"{path}: not a readable .npy array ({err})") from None
            digest.update(f"{split.name}/{path.name} {arr.dtype.str} {arr.shape}\n".encode())
            flat = np.ascontiguousarray(arr).reshape(-1)  # a view of the memory map (C order on disk)
            step = max(1, HASH_CHUNK // arr.itemsize)
            for start in range(0, flat.size, step):
                digest.update(flat[start:start + step].data)
    return digest.hexdigest()


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """The fingerprint the builder stored in dataset.json, or, for a dataset without one (an older
    version's, the reference builders'), computed now: such a folder is never written to."""
    root = Path(root)
    stored = set()
    for split in _split_dirs(root):
        try:
            meta = json.loads((split / "dataset.json").read_text())
        except (OSError, ValueError):
            meta = None
        stored.add(meta.get(FINGERPRINT) if isinstance(meta, dict) else None)
    if len(stored) == 1:
        value = stored.pop()
        if isinstance(value, str) and value:
            return value
    return compute_fingerprint(root)


def disk_bytes(root: str | os.PathLike) -> int:
    """Total size of the files under `root` (for build summaries)."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def human_bytes(n: int) -> str:
    """A byte count as the build summaries print it: 812 B, 4.10 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
