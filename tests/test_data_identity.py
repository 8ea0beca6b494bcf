"""A run knows its data: every dataset carries a content fingerprint (stored at build time, computed
on load for older and reference datasets), every checkpoint records the fingerprint and path of
the data it trained on, and resuming or evaluating a run on other puzzles is refused with one line
before anything is built, written or evaluated. `train.evaluate --data` scores other data on
purpose, into a folder of its own.
Run: python -m pytest -q tests/test_data_identity.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from puzzles.dataset import compute_fingerprint, dataset_fingerprint
from puzzles.errors import run_cli
from train.checkpoint import load_checkpoint
from train.data import short

from .test_bad_inputs import base, evaluate, fails, snapshot, trainer
from .test_train import _keep_threads, build_sudoku, sudoku_data  # noqa: F401  (fixtures)

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference" / "datasets"


def fingerprint(data: Path) -> str:
    return short(dataset_fingerprint(data))


@pytest.fixture
def run_on_copy(tmp_path, sudoku_data):
    """A finished 3-step run (with its eval/test) trained on a private copy of the tiny Sudoku set."""
    data = Path(shutil.copytree(sudoku_data, tmp_path / "data"))
    run = tmp_path / "run"
    assert run_cli(trainer(), base(data, run)) == 0
    return data, run


def test_fingerprint_stored_at_build_and_computed_for_older_sets(tmp_path, sudoku_data):
    metas = [json.loads((sudoku_data / s / "dataset.json").read_text()) for s in ("train", "test")]
    stored = metas[0]["fingerprint"]
    assert metas[1]["fingerprint"] == stored == compute_fingerprint(sudoku_data) == dataset_fingerprint(sudoku_data)
    # a dataset of an older version stores none: the same value is computed on load
    old = Path(shutil.copytree(sudoku_data, tmp_path / "old"))
    for split, meta in zip(("train", "test"), metas):
        (old / split / "dataset.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "fingerprint"}))
    assert dataset_fingerprint(old) == stored
    # the same options and seed build the same content; another seed another
    assert dataset_fingerprint(build_sudoku(tmp_path / "same")) == stored
    assert dataset_fingerprint(build_sudoku(tmp_path / "other", "--seed", "1")) != stored
    # the reference fixtures get one too, and stay byte-identical
    before = snapshot(REFERENCE)
    values = {dataset_fingerprint(REFERENCE / name) for name in ("sudoku-tiny-aug-2", "arc-tiny-aug-2")}
    assert len(values) == 2 and all(len(v) == 64 for v in values)
    assert snapshot(REFERENCE) == before


def test_checkpoint_records_its_data(run_on_copy):
    data, run = run_on_copy
    assert load_checkpoint(run / "checkpoint.pt")["data"] == {"path": str(data),
                                                              "fingerprint": dataset_fingerprint(data)}


def test_rebuilt_dataset_is_refused_on_resume(tmp_path, run_on_copy, capsys):
    data, run = run_on_copy
    old = fingerprint(data)
    build_sudoku(data, "--seed", "1", "--force")  # the same path, other puzzles
    new = fingerprint(data)
    assert new != old
    for extra in ([], ["optim.max_steps=5", "--resume"]):  # auto-resume and --resume
        fails(trainer(), base(data, run, *extra), capsys, data, "has changed since", f"{old} then", f"{new} now",
              roots=(tmp_path,))


def test_other_data_path_is_refused_and_an_identical_copy_accepted(tmp_path, run_on_copy, capsys):
    data, run = run_on_copy
    other = build_sudoku(tmp_path / "other", "--seed", "1")
    for extra in ([], ["optim.max_steps=5", "--resume"]):
        fails(trainer(), base(other, run, *extra), capsys, other, fingerprint(other), data, fingerprint(data),
              "is not the data", roots=(tmp_path,))
    # the same content at another path is the same data: resumed, the new path listed among the changes
    copy = Path(shutil.copytree(data, tmp_path / "copy"))
    capsys.readouterr()
    assert run_cli(trainer(), base(copy, run, "optim.max_steps=5", "--resume")) == 0
    out = capsys.readouterr().out
    assert f"data.path {str(data)!r} -> {str(copy)!r} (the same data, fingerprint {fingerprint(data)})" in out, out
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["step"] == 5 and payload["data"]["path"] == str(copy)
    # and without --resume (nothing else changed): listed too
    assert run_cli(trainer(), base(data, run, "optim.max_steps=5")) == 0
    assert f"data.path {str(copy)!r} -> {str(data)!r}" in capsys.readouterr().out


def test_deleted_dataset_is_refused_before_any_build(tmp_path, run_on_copy, capsys, monkeypatch):
    data, run = run_on_copy
    old = fingerprint(data)
    shutil.rmtree(data)
    fails(trainer(), base(data, run, "optim.max_steps=5", "--resume"), capsys, data, "does not exist", old,
          roots=(tmp_path,))
    # without data.path the preset's default set (data/sudoku-quick, 101k puzzles) is not built either
    monkeypatch.chdir(tmp_path)
    argv = [a for a in base(data, run, "--resume") if not a.startswith("data.path=")]
    fails(trainer(), argv, capsys, "data/sudoku-quick does not exist", data, old, roots=(tmp_path,))
    # another model config in the folder is refused first, still before anything is built
    fails(trainer(), base(data, run, "arch.hidden_size=64"), capsys, run, "another config", "arch.hidden_size",
          roots=(tmp_path,))
    assert not data.exists() and not (tmp_path / "data").exists()


def test_evaluate_refuses_a_rebuilt_dataset_and_scores_other_data_apart(tmp_path, run_on_copy, capsys):
    data, run = run_on_copy
    old = fingerprint(data)
    build_sudoku(data, "--seed", "1", "--force")
    new = fingerprint(data)
    fails(evaluate, [str(run), "--force"], capsys, data, "has changed since", f"{old} then", f"{new} now", "--data",
          roots=(tmp_path,))
    # --data: other data on purpose, into a folder of its own; the run's own evaluation stays as it was
    own = snapshot(run / "eval" / "test", run / "summary.json")
    assert run_cli(evaluate, [str(run), "--data", str(data)]) == 0
    assert (run / "eval" / "data-test" / "predictions.npz").is_file()
    assert run_cli(evaluate, [str(run), "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "predictions.npz").is_file()
    assert snapshot(run / "eval" / "test", run / "summary.json") == own


def test_checkpoints_without_a_record_keep_working(tmp_path, run_on_copy, capsys):
    """Written before checkpoints recorded their data: accepted with a note, recorded from then on."""
    data, run = run_on_copy
    payload = load_checkpoint(run / "checkpoint.pt")
    del payload["data"]
    torch.save(payload, run / "checkpoint.pt")
    capsys.readouterr()
    assert run_cli(evaluate, [str(run), "--out", str(tmp_path / "o")]) == 0
    assert "records no dataset fingerprint" in capsys.readouterr().out
    assert run_cli(trainer(), base(data, run, "optim.max_steps=4", "--resume")) == 0
    assert "records no dataset fingerprint" in capsys.readouterr().out
    assert load_checkpoint(run / "checkpoint.pt")["data"]["fingerprint"] == dataset_fingerprint(data)
