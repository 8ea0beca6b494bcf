"""The build CLI end to end (subprocess, tiny sizes): `python -m pytest -q tests/test_build.py`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puzzles import maze, sudoku
from puzzles.build import make_parser
from puzzles.dataset import load_identifiers, load_split

ROOT = Path(__file__).resolve().parents[1]


def build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "puzzles.build", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def ok(*args: str) -> subprocess.CompletedProcess:
    r = build(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("wrote "), r.stdout
    return r


def refused(*args: str) -> str:
    r = build(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def example_rows(root: Path, split: str) -> np.ndarray:
    return load_split(root, split).examples(slice(None))[0]


def test_every_option_has_help():
    parser = make_parser()
    subs = next(a for a in parser._actions if a.dest == "family").choices
    assert set(subs) == {"sudoku", "maze", "arc"}
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"


@pytest.mark.parametrize("shape_args,box", [(["--size", "4"], (2, 2)), (["--box", "2x3"], (2, 3))])
def test_sudoku_generated(tmp_path, shape_args, box):
    out = tmp_path / "s"
    r = ok("sudoku", *shape_args, "--train", "12", "--test", "6", "--aug", "3", "--seed", "1", "--out", str(out))
    assert "train 48 puzzles / 48 examples, test 6 puzzles / 6 examples" in r.stdout
    n = box[0] * box[1]
    train, test = load_split(out, "train"), load_split(out, "test")
    assert load_identifiers(out) == ["<blank>"]
    for s in (train, test):
        assert s.meta["family"] == "sudoku" and s.meta["box"] == list(box)
        assert (s.meta["vocab_size"], s.meta["seq_len"], s.meta["num_puzzle_identifiers"]) == (n + 2, n * n, 1)
        assert (s.puzzle_identifiers == 0).all() and (np.diff(s.puzzle_indices) == 1).all()
    assert (np.diff(train.group_indices) == 4).all() and (np.diff(test.group_indices) == 1).all()
    for s in (train, test):
        inputs, labels = s.examples(slice(None))
        q, a = sudoku.decode(inputs, n), sudoku.decode(labels, n)
        for x, y in zip(q, a):
            assert sudoku.check(y, box, x) and sudoku.count_solutions(x, box) == 1
    originals = example_rows(out, "train")[train.group_indices[:-1]]
    assert len({x.tobytes() for x in originals}) == 12
    train_keys = {x.tobytes() for x in example_rows(out, "train")}
    assert not any(x.tobytes() in train_keys for x in example_rows(out, "test"))
    # deterministic for a seed
    ok("sudoku", *shape_args, "--train", "12", "--test", "6", "--aug", "3", "--seed", "1", "--out", str(tmp_path / "t"))
    for split in ("train", "test"):
        assert np.array_equal(example_rows(out, split), example_rows(tmp_path / "t", split))


def test_refuses_existing_and_file(tmp_path):
    out = tmp_path / "s"
    ok("sudoku", "--preset", "tiny", "--out", str(out))
    before = example_rows(out, "train")
    msg = refused("sudoku", "--preset", "tiny", "--seed", "5", "--out", str(out))
    assert msg == f"error: {out} exists; pass --force to overwrite"
    assert np.array_equal(example_rows(out, "train"), before)
    ok("sudoku", "--preset", "tiny", "--seed", "5", "--out", str(out), "--force")
    assert not np.array_equal(example_rows(out, "train"), before)
    f = tmp_path / "file"
    f.write_text("keep me")
    assert "is a file" in refused("sudoku", "--preset", "tiny", "--out", str(f), "--force")
    assert f.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["file", "s"]  # no temp directories left


def _write_lines(path: Path, grids: list[np.ndarray]) -> None:
    path.write_text("".join(sudoku.to_text(g) + "\n" for g in grids))


def test_sudoku_text_import_bad_puzzles(tmp_path):
    q, a = sudoku.generate(6, box=(2, 2), seed=3)
    unsolvable = q[0].copy()
    unsolvable[0, :2] = 1  # two 1s in the first row
    several = np.zeros((4, 4), np.uint8)
    train_txt, test_txt = tmp_path / "train.txt", tmp_path / "test.txt"
    _write_lines(train_txt, [q[0], q[1], unsolvable, q[2], several])
    _write_lines(test_txt, [q[3], q[4], q[5]])
    out = tmp_path / "imp"
    r = ok("sudoku", "--size", "4", "--from-text", str(train_txt), "--test-text", str(test_txt), "--aug", "1",
           "--out", str(out))
    assert f"skipped {train_txt}:3: puzzle has no solution" in r.stderr
    assert f"skipped {train_txt}:5: puzzle has more than one solution" in r.stderr
    train = load_split(out, "train")
    originals = sudoku.decode(train.examples(train.group_indices[:-1])[0], 4)
    assert np.array_equal(originals, q[:3])
    labels = sudoku.decode(train.examples(train.group_indices[:-1])[1], 4)
    assert np.array_equal(labels, a[:3])
    assert np.array_equal(sudoku.decode(example_rows(out, "test"), 4), q[3:])
    msg = refused("sudoku", "--size", "4", "--from-text", str(train_txt), "--test-text", str(test_txt),
                  "--on-bad", "fail", "--out", str(tmp_path / "fail"))
    assert f"{train_txt}:3: puzzle has no solution" in msg
    assert not (tmp_path / "fail").exists()


def test_malformed_import_line(tmp_path):
    q, _ = sudoku.generate(2, box=(2, 2), seed=4)
    bad = tmp_path / "bad.txt"
    bad.write_text(sudoku.to_text(q[0]) + "\n" + "12x4" + "." * 12 + "\n")
    good = tmp_path / "good.txt"
    good.write_text(sudoku.to_text(q[1]) + "\n")
    msg = refused("sudoku", "--size", "4", "--from-text", str(bad), "--test-text", str(good),
                  "--out", str(tmp_path / "out"))
    assert f"{bad}:2" in msg
    assert not (tmp_path / "out").exists() and sorted(os.listdir(tmp_path)) == ["bad.txt", "good.txt"]


def test_sudoku_csv_import_matches_reference_layout(tmp_path, reference_dir):
    inputs = reference_dir / "datasets" / "inputs" / "sudoku"
    ref = reference_dir / "datasets" / "sudoku-tiny-aug-2"
    out = tmp_path / "csv"
    # The fixture's synthetic rows have several solutions each; "keep" imports them as the reference does.
    r = ok("sudoku", "--from-csv", str(inputs / "train.csv"), "--test-csv", str(inputs / "test.csv"),
           "--aug", "2", "--on-bad", "keep", "--out", str(out))
    assert r.stderr.count("puzzle has more than one solution") == 10
    for split in ("train", "test"):
        ours, theirs = load_split(out, split), load_split(ref, split)
        for name in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
            assert np.array_equal(getattr(ours, name), getattr(theirs, name))
        firsts = ours.group_indices[:-1]  # augmentations are random, the originals come first
        for a, b in zip(ours.examples(firsts), theirs.examples(firsts)):
            assert np.array_equal(a, b)
        assert ours.meta["vocab_size"] == theirs.meta["vocab_size"] and ours.meta["seq_len"] == theirs.meta["seq_len"]
    assert "error: " in refused("sudoku", "--from-csv", str(inputs / "train.csv"), "--test-csv",
                                str(inputs / "test.csv"), "--on-bad", "fail", "--out", str(tmp_path / "f"))


@pytest.mark.parametrize("size,aug", [(8, 2), (10, 7), (9, 0)])  # aug 0: every train maze its own
def test_maze_generated(tmp_path, size, aug):
    out = tmp_path / "m"
    ok("maze", "--size", str(size), "--train", "10", "--test", "5", "--aug", str(aug), "--min-path", "4",
       "--out", str(out))
    train, test = load_split(out, "train"), load_split(out, "test")
    for s in (train, test):
        assert s.meta["family"] == "maze" and s.meta["size"] == size
        assert (s.meta["vocab_size"], s.meta["seq_len"]) == (6, size * size)
        inputs, labels = s.examples(slice(None))
        for x, y in zip(inputs.reshape(-1, size, size), labels.reshape(-1, size, size)):
            assert maze.check_path(x, y)
    assert (np.diff(train.group_indices) == aug + 1).all() and len(test) == 5
    train_rows = example_rows(out, "train").reshape(-1, aug + 1, size, size)
    for group in train_rows:  # the copies are distinct dihedral transforms of the original
        assert len({g.tobytes() for g in group}) == aug + 1
        assert all(any(np.array_equal(maze.augment(group[0], t), g) for t in range(8)) for g in group)
    train_keys = {x.tobytes() for x in example_rows(out, "train")}
    assert not any(x.tobytes() in train_keys for x in example_rows(out, "test"))


def test_maze_size_and_augmentation_options_are_checked_in_one_line(tmp_path):
    for args, words in [(("--aug", "8"), "aug (--aug) must be 0..7"), (("--size", "1"), "error: "),
                        (("--train", "0"), "must be >= 1"),
                        (("--size", "7", "--min-path", "40"), "min_path=40 too long for size 7")]:
        message = refused("maze", "--preset", "tiny", *args, "--out", str(tmp_path / "x"))
        assert words in message and len(message.strip().splitlines()) == 1, message
        assert not (tmp_path / "x").exists()


def test_maze_csv_import(tmp_path):
    x, y = maze.generate(4, size=8, seed=2)
    broken = y[3].copy()
    broken[broken == maze.PATH] = maze.OPEN  # label without its path
    rows = [(x[i], y[i]) for i in range(3)] + [(x[3], broken)]
    csv_path = tmp_path / "mazes.csv"
    csv_path.write_text("source,question,answer,rating\n" +
                        "".join(f"gen,{maze.decode(i)},{maze.decode(o)},0\n" for i, o in rows))
    held_out = tmp_path / "test.csv"  # the same file for both splits is refused (tests/test_refusals.py)
    tx, ty = maze.generate(2, size=8, seed=5)
    held_out.write_text("source,question,answer,rating\n" +
                        "".join(f"gen,{maze.decode(i)},{maze.decode(o)},0\n" for i, o in zip(tx, ty)))
    out = tmp_path / "m"
    r = ok("maze", "--from-csv", str(csv_path), "--test-csv", str(held_out), "--out", str(out))
    assert f"skipped {csv_path}:5: label is not a shortest S-G path" in r.stderr
    assert np.array_equal(example_rows(out, "train").reshape(-1, 8, 8), x[:3])


@pytest.mark.parametrize("materialize", [False, True])
def test_arc_fixture_inputs_reproduce_reference(tmp_path, reference_dir, materialize):
    prefix = reference_dir / "datasets" / "inputs" / "arc" / "arc-tiny"
    ref = reference_dir / "datasets" / "arc-tiny-aug-2"
    out = tmp_path / "arc"
    ok("arc", "--prefix", str(prefix), "--aug", "2", "--out", str(out), *(["--materialize"] if materialize else []))
    assert load_identifiers(out) == load_identifiers(ref)
    assert json.loads((out / "test_puzzles.json").read_text()) == json.loads((ref / "test_puzzles.json").read_text())
    for split in ("train", "test"):
        ours, theirs = load_split(out, split), load_split(ref, split)
        assert ours.compact != materialize
        a, b = ours.arrays(), theirs.arrays()
        for name in b:
            assert np.array_equal(a[name], b[name]), (split, name)
        if materialize:
            assert np.array_equal(np.load(out / split / "all__inputs.npy"), np.load(ref / split / "all__inputs.npy"))


def test_arc_concept_folder(tmp_path, reference_dir):
    # The fixture prefix stands in for a Kaggle folder: copy one subset under the concept name.
    src = reference_dir / "datasets" / "inputs" / "arc"
    concept = tmp_path / "kaggle"
    concept.mkdir()
    for kind in ("challenges", "solutions"):
        (concept / f"arc-agi_concept_{kind}.json").write_text(
            (src / f"arc-tiny_training_{kind}.json").read_text().replace('"6150a2bd"', '"c6150a2bd"')
            .replace('"49d1d64f"', '"c49d1d64f"'))
    out = tmp_path / "arc"
    ok("arc", "--prefix", str(src / "arc-tiny"), "--concept", str(concept), "--aug", "1", "--out", str(out))
    names = load_identifiers(out)
    assert "c6150a2bd" in names and "c49d1d64f" in names and "25ff71a9" in names
    assert load_split(out, "train").num_groups == 5
    assert "error: " in refused("arc", "--prefix", str(src / "arc-tiny"), "--concept", str(tmp_path / "nope"),
                                "--out", str(tmp_path / "x"))
