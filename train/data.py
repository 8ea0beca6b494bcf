"""Data preparation for a run: where its dataset lives, building it when missing, the checks
that a dataset fits a model (its shape, its puzzle family and grid), and that a run continues on
(or is scored on) the very data it trained on (the dataset's content fingerprint, recorded in
every checkpoint).

    path = ensure_dataset(cfg)                    # data/<family>-<preset>, built on first use (or checked)
    shape = dataset_shape(split)                  # what the dataset dictates to the model
    check_shape(shape, split); check_family("sudoku", split, grid)
    changes = check_run_data(ckpt, payload.get("data"), path, dataset_fingerprint(path), "the run in runs/x")
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from models import DataShape
from puzzles.dataset import Split, families_of, grid_spec
from puzzles.errors import PuzzleError

from .config import TrainConfig
from .errors import TrainError


def data_dir_of(cfg: TrainConfig) -> Path:
    """data.path, else data/<family>-<preset>, with every builder option that differs from the
    preset's own appended (data/maze-quick-size11-min-path12): other options, another folder."""
    if cfg.data.path:
        return Path(cfg.data.path)
    from .presets import PRESETS
    own = PRESETS[cfg.preset](cfg.data.family, cfg.model).data.build
    changed = [(k, v) for k, v in vars(cfg.data.build).items() if v != getattr(own, k)]
    return Path(f"data/{cfg.data.family}-{cfg.preset}" + "".join(f"-{_tag(k, v)}" for k, v in changed))


def _tag(key: str, value) -> str:
    if isinstance(value, bool):
        return key.replace("_", "-") if value else "no-" + key.replace("_", "-")
    return f"{key.replace('_', '-')}{'default' if value is None else value}"


def short(fingerprint: str) -> str:
    """The first 12 hex digits: enough to tell datasets apart in a message."""
    return str(fingerprint)[:12]


def data_record(data_dir: Path, fingerprint: str) -> dict:
    """What a checkpoint records of the data its run trained on."""
    return {"path": str(data_dir), "fingerprint": fingerprint}


def require_run_data(data_dir: Path, recorded: dict | None, stored: TrainConfig, run_dir: Path) -> None:
    """Refuse, before anything is built, to continue a run whose dataset folder is missing: building
    the preset's set would make puzzles that need not be those the run trained on."""
    if data_dir.exists():
        return
    was = f"{recorded.get('path')} (fingerprint {short(recorded.get('fingerprint'))})" if recorded else \
        str(data_dir_of(stored))
    raise TrainError(f"dataset {data_dir} does not exist, and {run_dir} holds a run trained on {was}: restore "
                     f"that data or set data.path to a copy of it (a rebuild is accepted only if identical); "
                     f"for a new run choose another system.run_dir")


RESUME_ADVICE = "restore the run's data or set data.path to a copy of it; for a new run choose another system.run_dir"


def check_run_data(ckpt: Path, recorded: dict | None, data_dir: Path, fingerprint: str, what: str,
                   advice: str = RESUME_ADVICE, say: bool = True) -> list[str]:
    """Continuing or scoring a run on other puzzles than it trained on (another dataset, or the same
    folder rebuilt, whose test set may hold its training puzzles) raises a TrainError naming both;
    the same content at another path is fine and returned as a change to list. `recorded` None (the
    checkpoint `ckpt` of an older version) is accepted with a note (printed when `say`)."""
    if not recorded:
        if say:
            print(f"note: {ckpt} records no dataset fingerprint (an older version wrote it); {data_dir} is taken "
                  f"to be the data it trained on", flush=True)
        return []
    old_path, old = str(recorded.get("path")), str(recorded.get("fingerprint"))
    if fingerprint != old:
        if old_path == str(data_dir):
            raise TrainError(f"dataset {data_dir} has changed since {what} trained on it (fingerprint {short(old)} "
                             f"then, {short(fingerprint)} now: rebuilt or replaced), so its test puzzles may be "
                             f"training puzzles of the run; {advice}")
        raise TrainError(f"dataset {data_dir} (fingerprint {short(fingerprint)}) is not the data {what} trained on "
                         f"({old_path}, fingerprint {short(old)}); {advice}")
    if old_path != str(data_dir):
        return [f"data.path {old_path!r} -> {str(data_dir)!r} (the same data, fingerprint {short(old)})"]
    return []


def ensure_dataset(cfg: TrainConfig, is_main: bool = True) -> Path:
    """Build the dataset with the preset's builder options when its directory does not exist yet.
    An existing folder named after the preset (data.path empty) must have been built with the
    options this run would build it with (`check_build_options`); an explicit data.path is used as it is."""
    path = data_dir_of(cfg)
    if path.exists() and not cfg.data.path:
        check_build_options(cfg, path, say=is_main)
    if not path.exists() and is_main:
        from puzzles.builders import build_dataset
        options = cfg.data.build.options(cfg.data.family)
        flags = "".join(f" --{k.replace('_', '-')}" + ("" if v is True else f" {v}")
                        for k, v in cfg.data.build.given().items() if v is not False)
        print(f"building dataset: python -m puzzles.build {cfg.data.family} --out {shlex.quote(str(path))}{flags}",
              flush=True)
        print(build_dataset(cfg.data.family, path, options).summary())
    return path


IGNORED_OPTIONS = ("preset",)  # it only names where the values came from; the values themselves are compared


def check_build_options(cfg: TrainConfig, path: Path, say: bool = True) -> None:
    """TrainError when the dataset folder `path` records other builder options (its dataset.json
    "build") than data.build resolves to: a folder built before a preset changed, or by hand with
    other options, is not silently trained on. A folder that records none (an older version's, the
    reference builders') is accepted with a note (printed when `say`)."""
    from puzzles.build_options import BUILD, options_record
    try:
        meta = json.loads((path / "train" / "dataset.json").read_text())
    except (OSError, ValueError):
        return  # not a readable dataset: opening its splits says so in one line
    if not isinstance(meta, dict) or meta.get("family", cfg.data.family) != cfg.data.family:
        return  # another family's folder: check_family names it when the run opens it
    recorded = meta.get(BUILD)
    if not isinstance(recorded, dict):
        if say:
            print(f"note: {path} does not record the options it was built with (an older version or another "
                  f"builder wrote it); it is used as it is", flush=True)
        return
    wanted = options_record(cfg.data.build.options(cfg.data.family))
    # an option missing from the record came after the version that built the folder: not compared
    diffs = [f"{k} {_option_text(k, recorded[k])} -> {_option_text(k, v)}" for k, v in wanted.items()
             if k in recorded and k not in IGNORED_OPTIONS and recorded[k] != v]
    if diffs:
        raise TrainError(f"dataset {path} was built with other options than data.build asks for "
                         f"({', '.join(diffs)}; built -> wanted): move it aside to rebuild it, or set "
                         f"data.path={shlex.quote(str(path))} to use it as it is")


def _option_text(key: str, value) -> str:
    """An option's value as data.build (or the builder's flag) spells it: 7, 2x3, true, unset."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ("x" if key == "box" else ",").join(_option_text("", v) for v in value)
    return str(value)


def dataset_shape(split: Split) -> DataShape:
    """What the dataset dictates to a model: sequence length, vocabulary, puzzle identifiers, and
    the grid slots of an in-context ARC dataset (0 for every other)."""
    meta = split.meta
    return DataShape(seq_len=int(meta["seq_len"]), vocab_size=int(meta["vocab_size"]),
                     num_puzzle_identifiers=int(meta.get("num_puzzle_identifiers", 1)),
                     grid_slots=int(meta.get("slots", 0)))


def check_shape(shape: DataShape, split: Split, puzzle_emb: bool = True) -> None:
    """One-line error when a dataset cannot feed a model built for `shape`. `puzzle_emb`: the
    model has a puzzle-embedding table (then the dataset may not use more identifiers than it has rows)."""
    have = dataset_shape(split)
    for key in ("vocab_size", "seq_len", "grid_slots"):
        if getattr(have, key) != getattr(shape, key):
            raise TrainError(f"dataset {split.root} has {key}={getattr(have, key)} but the model expects "
                             f"{getattr(shape, key)}")
    if puzzle_emb and have.num_puzzle_identifiers > shape.num_puzzle_identifiers:
        raise TrainError(f"dataset {split.root} uses {have.num_puzzle_identifiers} puzzle identifiers but the "
                         f"model's puzzle embedding has {shape.num_puzzle_identifiers} rows")


def check_family(family: str, split: Split, grid: dict | None = None, what: str = "the model") -> None:
    """One-line error when a dataset holds another puzzle family (or grid) than the model's.

    A 4x4 Sudoku and a 4x4 maze both have 16 cells and 6 tokens, so shapes alone let a model of one
    run on the other. Datasets without a "family" field (the reference builders') are judged by
    the families their shape can describe. `grid` (a checkpoint's dataset spec) also checks the
    Sudoku box shape or maze size."""
    possible = families_of(split.meta)
    if possible and family not in possible:
        raise TrainError(f"dataset {split.root} holds {possible[0]} puzzles, not the {family} puzzles {what} "
                         f"needs; choose a {family} dataset")
    if grid and "family" in split.meta:
        have = grid_spec(split.meta)
        if grid.get("family") == "arc":  # checkpoints written before the canvas was a parameter: 30
            grid = {**grid, "canvas": int(grid.get("canvas", 30))}
        if have != grid:
            raise TrainError(f"dataset {split.root} holds {_grid_text(have)} puzzles but {what} was trained on "
                             f"{_grid_text(grid)} puzzles")


def _grid_text(spec: dict) -> str:
    if "box" in spec:
        return f"{spec['size']}x{spec['size']} {spec['family']} (boxes {spec['box'][0]}x{spec['box'][1]})"
    if "canvas" in spec:
        context = f", {spec['context']} demonstration pairs in context" if spec.get("context") else ""
        return f"{spec['family']} ({spec['canvas']}x{spec['canvas']} canvas{context})"
    return f"{spec['size']}x{spec['size']} {spec['family']}" if "size" in spec else spec["family"]


def dataset_grid(split: Split) -> dict | None:
    """The dataset's grid spec for a checkpoint, or None when it does not say."""
    try:
        return grid_spec(split.meta) if "family" in split.meta else None
    except PuzzleError:
        return None


def family_of(meta: dict) -> tuple[str, dict]:
    """Puzzle family and its geometry ("box", "size"); ("unknown", {}) for data of no known family."""
    try:
        spec = grid_spec(meta)
    except PuzzleError:
        return "unknown", {}
    return spec.pop("family"), spec
