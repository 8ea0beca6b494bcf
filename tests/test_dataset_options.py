"""A dataset records the builder options it was built with, and a trainer refuses a preset-named
folder built with other options (an older preset, a build by hand) instead of silently training on it.

Run: python -m pytest -q tests/test_dataset_options.py
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from puzzles.build_options import CONCEPT_ARC, PRESETS, ArcOptions, MazeOptions, SudokuOptions
from puzzles.build_options import options_record
from puzzles.builders import build_dataset
from puzzles.dataset import load_split
from train.data import data_dir_of, ensure_dataset
from train.errors import TrainError
from train.overrides import apply_overrides
from train.presets import PRESETS as TRAIN_PRESETS

TINY_MAZE = {"preset": "tiny", "seed": 0, "size": 8, "train": 20, "test": 10, "min_path": 0, "aug": 2,
             "from_csv": None, "test_csv": None, "on_bad": "skip"}


def files(root: Path) -> dict:
    """Every file under `root` with its bytes and modification time: what a rebuild would change."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_cfg(*overrides: str):
    """The quick maze trainer on the tiny builder preset: a folder of its own under data/."""
    return apply_overrides(TRAIN_PRESETS["quick"]("maze", "trm"), ["data.build.preset=tiny", *overrides])


@pytest.fixture
def built(tmp_path, monkeypatch, capsys):
    """The tiny maze set built by the trainer into its preset-named folder, in a scratch directory."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg()
    path = ensure_dataset(cfg)
    assert path == data_dir_of(cfg) and not path.is_absolute() and "building dataset" in capsys.readouterr().out
    return cfg, path


def test_a_built_dataset_records_its_resolved_options(tmp_path):
    out = build_dataset("maze", tmp_path / "m", MazeOptions(preset="tiny"), progress=False).out
    for split in ("train", "test"):
        meta = json.loads((out / split / "dataset.json").read_text())
        assert meta["build"] == TINY_MAZE and list(meta["build"]) == list(TINY_MAZE)
        assert load_split(out, split).meta["build"] == TINY_MAZE
    sudoku = options_record(SudokuOptions(preset="tiny", clues=(5, 9), from_csv=Path("/any/where/train.csv")))
    assert sudoku["box"] == [2, 2] and sudoku["clues"] == [5, 9] and sudoku["from_csv"] == "train.csv"
    arc = options_record(ArcOptions(preset="quick"))  # the bundled ConceptARC, not this machine's path to it
    assert arc["concept"] == "<bundled>" and arc["test_set"] == ["training", "evaluation"] and "materialize" not in arc
    assert options_record(ArcOptions(concept=CONCEPT_ARC.parent / "arc"))["concept"] == "<bundled>"
    assert options_record(ArcOptions(concept=Path("/data/ConceptARC")))["concept"] == "ConceptARC"
    assert options_record(ArcOptions(source="/data/kaggle/arc-agi"))["source"] == "arc-agi"
    for record in (sudoku, arc):
        assert json.loads(json.dumps(record)) == record


def test_a_folder_built_with_the_same_options_is_reused(built, capsys):
    cfg, path = built
    before = files(path)
    assert ensure_dataset(cfg) == path
    assert capsys.readouterr().out == "" and files(path) == before


def test_a_folder_built_before_its_preset_changed_is_a_one_line_error(built, monkeypatch, capsys):
    cfg, path = built
    before = files(path)
    monkeypatch.setitem(PRESETS["maze"], "tiny", {**PRESETS["maze"]["tiny"], "train": 16, "aug": 0})
    with pytest.raises(TrainError) as err:
        ensure_dataset(cfg)
    message = str(err.value)
    assert "\n" not in message and f"dataset {path} " in message, message
    assert "train 20 -> 16, aug 2 -> 0" in message and "size" not in message, message
    assert "move it aside to rebuild" in message and f"data.path={path} to use it as it is" in message
    assert files(path) == before and capsys.readouterr().out == ""  # nothing rebuilt, nothing printed
    # the folder the user chose is used as it is, without a look at its options
    assert ensure_dataset(apply_overrides(cfg, [f"data.path={path}"])) == path
    assert capsys.readouterr().out == "" and files(path) == before


def test_a_folder_built_by_hand_with_other_options_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg()
    build_dataset("maze", data_dir_of(cfg), MazeOptions(preset="tiny", aug=1, seed=4), progress=False)
    with pytest.raises(TrainError, match=r"\(seed 4 -> 0, aug 1 -> 2; built -> wanted\)"):
        ensure_dataset(cfg)
    other_preset = MazeOptions(preset="cpu", size=8, train=20, test=10, aug=2)  # the same values: accepted
    build_dataset("maze", data_dir_of(cfg), other_preset, force=True, progress=False)
    assert ensure_dataset(cfg) == data_dir_of(cfg)


def test_a_folder_without_recorded_options_is_used_with_a_note(built, monkeypatch, capsys):
    cfg, path = built
    for split in ("train", "test"):  # as an older version or the reference builders wrote it
        meta_file = path / split / "dataset.json"
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "build"}))
    before = files(path)
    monkeypatch.setitem(PRESETS["maze"], "tiny", {**PRESETS["maze"]["tiny"], "aug": 0})
    assert ensure_dataset(cfg) == path and files(path) == before
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"note: {path} does not record the options it was built with (an older version or another "
                   f"builder wrote it); it is used as it is"]
    assert ensure_dataset(cfg, is_main=False) == path and capsys.readouterr().out == ""  # one note per run


def test_options_an_older_record_lacks_are_not_compared(built, monkeypatch, capsys):
    cfg, path = built

    def edit(change):
        for split in ("train", "test"):
            meta_file = path / split / "dataset.json"
            meta = json.loads(meta_file.read_text())
            change(meta["build"])
            meta_file.write_text(json.dumps(meta))

    edit(lambda record: record.pop("min_path"))  # an option added after the version that built it
    monkeypatch.setitem(PRESETS["maze"], "tiny", {**PRESETS["maze"]["tiny"], "min_path": 3})
    assert ensure_dataset(cfg) == path and capsys.readouterr().out == ""
    edit(lambda record: record.update(aug=1))  # the options it records still are
    with pytest.raises(TrainError, match=r"\(aug 1 -> 2; built -> wanted\)"):
        ensure_dataset(cfg)
