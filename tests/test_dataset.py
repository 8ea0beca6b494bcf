"""Dataset writer/reader: `python -m pytest -q tests/test_dataset.py`."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from puzzles import dataset as ds
from puzzles.dataset import SplitData, load_identifiers, load_split, materialize, write_dataset
from puzzles.errors import PuzzleError

FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


def tiny_split(seed: int = 0, groups: int = 3, seq_len: int = 5) -> SplitData:
    """Groups of 1..2 puzzles with 1..3 examples each, random tokens."""
    rng = np.random.default_rng(seed)
    gsizes = rng.integers(1, 3, groups)
    psizes = rng.integers(1, 4, int(gsizes.sum()))
    n = int(psizes.sum())
    return SplitData(
        meta={"vocab_size": 7, "seq_len": seq_len, "family": "toy"},
        puzzle_identifiers=rng.integers(1, 4, len(psizes)).astype(np.int32),
        puzzle_indices=np.concatenate([[0], np.cumsum(psizes)]).astype(np.int32),
        group_indices=np.concatenate([[0], np.cumsum(gsizes)]).astype(np.int32),
        inputs=rng.integers(0, 7, (n, seq_len)).astype(np.uint8),
        labels=rng.integers(0, 7, (n, seq_len)).astype(np.uint8),
    )


IDS = ["<blank>", "a", "b", "c"]


@pytest.mark.parametrize("name", ["sudoku-tiny-aug-2", "arc-tiny-aug-2"])
def test_reference_datasets_load_unchanged(reference_dir, name):
    root = reference_dir / "datasets" / name
    assert load_identifiers(root) == json.loads((root / "identifiers.json").read_text())
    for split_name in ("train", "test"):
        split = load_split(root, split_name)
        assert split.meta == json.loads((root / split_name / "dataset.json").read_text())
        arrays = split.arrays()
        for f in FIELDS:
            ref = np.load(root / split_name / f"all__{f}.npy")
            assert arrays[f].dtype == ref.dtype or f in ds.INDEX_FIELDS
            np.testing.assert_array_equal(arrays[f], ref)
        ref_in = np.load(root / split_name / "all__inputs.npy")
        ref_lab = np.load(root / split_name / "all__labels.npy")
        assert len(split) == len(ref_in)
        rows = np.arange(len(split))[::-1]
        inputs, labels = split.examples(rows)
        assert inputs.dtype == np.int32 and labels.dtype == np.int32  # int64 in the Sudoku train fixture
        np.testing.assert_array_equal(inputs, ref_in[rows])
        np.testing.assert_array_equal(labels, ref_lab[rows])
        for f in ds.INDEX_FIELDS:
            assert getattr(split, f).dtype == np.int32


def test_examples_are_memory_mapped(reference_dir):
    split = load_split(reference_dir / "datasets" / "arc-tiny-aug-2", "train")
    assert isinstance(split._inputs, np.memmap)


def test_write_then_read_round_trip(tmp_path):
    train, test = tiny_split(0), tiny_split(1)
    out = write_dataset(tmp_path / "d", IDS, {"train": train, "test": test}, {"extra.json": {"x": [1, 2]}})
    assert load_identifiers(out) == IDS
    assert json.loads((out / "extra.json").read_text()) == {"x": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no temp directory left behind
    for name, data in (("train", train), ("test", test)):
        split = load_split(out, name)
        for f in FIELDS:
            np.testing.assert_array_equal(split.arrays()[f], getattr(data, f))
        meta = split.meta
        assert meta["family"] == "toy" and meta["seq_len"] == 5 and meta["vocab_size"] == 7
        assert meta["num_puzzle_identifiers"] == len(IDS)
        assert meta["total_groups"] == len(data.group_indices) - 1
        assert meta["total_puzzles"] == len(data.puzzle_identifiers)
        assert meta["mean_puzzle_examples"] == pytest.approx(len(data.inputs) / len(data.puzzle_identifiers))
        assert (meta["pad_id"], meta["ignore_label_id"], meta["blank_identifier_id"], meta["sets"]) == (0, 0, 0, ["all"])


def test_refuses_existing_without_force(tmp_path):
    out = write_dataset(tmp_path / "d", IDS, {"train": tiny_split(0)})
    with pytest.raises(PuzzleError, match="exists; pass --force to overwrite"):
        write_dataset(out, IDS, {"train": tiny_split(1)})
    np.testing.assert_array_equal(load_split(out, "train").arrays()["inputs"], tiny_split(0).inputs)
    write_dataset(out, IDS, {"train": tiny_split(1)}, force=True)
    np.testing.assert_array_equal(load_split(out, "train").arrays()["inputs"], tiny_split(1).inputs)
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_refuses_file_and_unwritable_parent(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(PuzzleError, match="is a file"):
        write_dataset(f, IDS, {"train": tiny_split(0)}, force=True)
    assert f.read_text() == "x"
    with pytest.raises(PuzzleError, match="cannot create parent directory"):
        write_dataset(f / "d", IDS, {"train": tiny_split(0)})
    locked = tmp_path / "locked"
    locked.mkdir()
    # Root ignores permission bits, so stand in for an unwritable directory via os.access.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    with pytest.raises(PuzzleError, match="not writable"):
        write_dataset(locked / "d", IDS, {"train": tiny_split(0)})


def test_failed_write_leaves_nothing(tmp_path):
    bad = tiny_split(0)
    bad.puzzle_indices = bad.puzzle_indices.copy()
    bad.puzzle_indices[-1] += 1  # claims one example more than there is
    with pytest.raises(PuzzleError, match="inconsistent index arrays"):
        write_dataset(tmp_path / "d", IDS, {"train": tiny_split(1), "test": bad})
    assert os.listdir(tmp_path) == []


def test_not_a_dataset_errors_name_the_path(tmp_path):
    with pytest.raises(PuzzleError, match=str(tmp_path / "nope")):
        load_split(tmp_path / "nope", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PuzzleError, match="dataset.json missing"):
        load_split(tmp_path / "empty", "train")
    with pytest.raises(PuzzleError, match="identifiers.json missing"):
        load_identifiers(tmp_path / "empty")
    out = write_dataset(tmp_path / "d", IDS, {"train": tiny_split(0)})
    (out / "train" / "all__labels.npy").unlink()
    with pytest.raises(PuzzleError, match="all__labels.npy: missing"):
        load_split(out, "train")


def test_inconsistent_indices_on_disk(tmp_path):
    out = write_dataset(tmp_path / "d", IDS, {"train": tiny_split(0)})
    gi = np.load(out / "train" / "all__group_indices.npy")
    np.save(out / "train" / "all__group_indices.npy", gi[:-1])  # no longer ends at num_puzzles
    with pytest.raises(PuzzleError, match=r"train: inconsistent index arrays: group_indices"):
        load_split(out, "train")
    out2 = write_dataset(tmp_path / "e", IDS, {"train": tiny_split(0)})
    np.save(out2 / "train" / "all__inputs.npy", np.zeros((2, 5), np.uint8))
    with pytest.raises(PuzzleError, match="all__labels.npy has 6"):
        load_split(out2, "train")
    np.save(out2 / "train" / "all__inputs.npy", np.zeros((6, 4), np.uint8))
    with pytest.raises(PuzzleError, match=r"all__inputs.npy: shape \(6, 4\)"):
        load_split(out2, "train")


def _toy_expand(compact, rows):
    """A stand-in family: example r is base[src[r]] shifted by shift[r] (mod 7)."""
    base, src, shift = compact["base"], compact["src"], compact["shift"]
    inputs = (base[src[rows]] + shift[rows, None]) % 7
    return inputs.astype(np.uint8), ((inputs + 1) % 7).astype(np.uint8)


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(ds.EXPANDERS, "toy", _toy_expand)
    monkeypatch.setattr(ds, "WRITE_CHUNK", 3)  # exercise chunked materialisation


def compact_split() -> tuple[SplitData, np.ndarray, np.ndarray]:
    full = tiny_split(2, groups=4)
    n = len(full.inputs)
    rng = np.random.default_rng(5)
    compact = {"base": rng.integers(0, 7, (3, 5)).astype(np.uint8),
               "src": rng.integers(0, 3, n), "shift": rng.integers(0, 7, n)}
    inputs, labels = _toy_expand(compact, np.arange(n))
    return SplitData(meta=full.meta, puzzle_identifiers=full.puzzle_identifiers,
                     puzzle_indices=full.puzzle_indices, group_indices=full.group_indices,
                     compact=compact), inputs, labels


def test_compact_storage_and_materialize(tmp_path, toy_family):
    data, inputs, labels = compact_split()
    out = write_dataset(tmp_path / "c", IDS, {"train": data})
    files = sorted(os.listdir(out / "train"))
    assert "all__inputs.npy" not in files and "all__compact__base.npy" in files
    split = load_split(out, "train")
    assert split.meta["storage"] == "compact" and split.compact and len(split) == len(inputs)
    rows = np.array([4, 0, 2])
    got_in, got_lab = split.examples(rows)
    assert got_in.dtype == np.int32
    np.testing.assert_array_equal(got_in, inputs[rows])
    np.testing.assert_array_equal(got_lab, labels[rows])
    full = materialize(out, tmp_path / "m")
    m = load_split(full, "train")
    assert not m.compact and "storage" not in m.meta
    np.testing.assert_array_equal(np.load(full / "train" / "all__inputs.npy"), inputs)
    np.testing.assert_array_equal(np.load(full / "train" / "all__labels.npy"), labels)
    for f in ds.INDEX_FIELDS:
        np.testing.assert_array_equal(getattr(m, f), getattr(split, f))
    assert load_identifiers(full) == IDS


def test_compact_missing_array(tmp_path, toy_family):
    data, _, _ = compact_split()
    out = write_dataset(tmp_path / "c", IDS, {"train": data})
    (out / "train" / "all__compact__src.npy").unlink()
    with pytest.raises(PuzzleError, match="all__compact__src.npy: missing"):
        load_split(out, "train")
