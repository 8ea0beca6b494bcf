"""A model in and out of a checkpoint: what a checkpoint says about its model, and `load_run`.

    run = load_run("runs/sudoku-trm-mlp-quick")          # a run folder or a checkpoint file
    run.model, run.name, run.arch, run.shape, run.cfg    # cfg: the run's TrainConfig (None if absent)

A trainer checkpoint stores the model's name, its architecture (`arch`: what the user chose), the
data shape (`shape`: what the dataset dictated), the compute dtype and the dataset's grid, beside
the run's config and the weights: the model is recorded once (`stored_config` puts it together).
`load_run` rebuilds the model with `models.build_model`,
the same call the trainer made, for evaluate, solve, the benchmarks and resume alike.

Older checkpoints load too: those without `arch`/`shape` (written before they were stored apart,
and the bare {"model_name", "model_config", "model"} files the tests write) are read from their
`model_config`, and a stored config whose `arch` still holds the dataset fields is trimmed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from models import ArchConfig, DataShape, HaltingModel, ModelConfig, build_model
from puzzles.errors import PuzzleError

from .checkpoint import ema_shadow, load_checkpoint, use_ema_weights
from .config import BuildConfig, TrainConfig
from .errors import ConfigError, TrainError
from .overrides import config_from_dict, config_to_dict
from .run import CHECKPOINT
from .setup import System, setup_system

# Fields the architecture held before it was split from the data shape (and a retired switch).
_OLD_ARCH_KEYS = ("seq_len", "vocab_size", "num_puzzle_identifiers", "forward_dtype", "eval_adaptive")


@dataclass
class Run:
    """A model rebuilt from a checkpoint, and what it was built from."""

    model: HaltingModel
    name: str  # models.MODELS key
    arch: ArchConfig
    shape: DataShape
    cfg: TrainConfig | None  # the training config (None for files written outside the trainer)
    payload: dict  # the whole checkpoint (optimiser state, loader position, grid, ...)


def model_record(name: str, model: HaltingModel, grid: dict | None) -> dict:
    """The checkpoint entries that describe a built model (see the module docstring)."""
    cfg = model.config
    return {"model_name": name, "arch": config_to_dict(cfg.arch), "shape": config_to_dict(cfg.shape),
            "dtype": cfg.forward_dtype, "grid": grid}


def config_from_checkpoint(payload: dict) -> TrainConfig:
    """The run's TrainConfig; an `arch` written before the split loses its dataset fields."""
    try:
        stored = dict(payload["config"])
        if isinstance(stored.get("arch"), dict):
            stored["arch"] = {k: v for k, v in stored["arch"].items() if k not in _OLD_ARCH_KEYS}
        data = stored.get("data")
        if isinstance(data, dict) and isinstance(data.get("build"), str):  # older: a command string
            stored["data"] = data | {"build": config_to_dict(
                BuildConfig.from_text(data.get("family", "sudoku"), data["build"]))}
        return config_from_dict(TrainConfig, stored)
    except (KeyError, ConfigError, PuzzleError, TypeError, ValueError) as err:
        raise TrainError(f"checkpoint holds no usable config ({err})") from None


def stored_model(payload: dict, path) -> tuple[str, ArchConfig, DataShape, str]:
    """(name, arch, shape, dtype) of the model a checkpoint holds."""
    try:
        if "shape" in payload:
            return (payload["model_name"], config_from_dict(ArchConfig, payload["arch"]),
                    DataShape(**payload["shape"]), payload.get("dtype", "float32"))
        if "model_config" in payload:  # the older format
            old = {k: v for k, v in payload["model_config"].items() if k != "eval_adaptive"}
            cfg = config_from_dict(ModelConfig, old)
            return payload["model_name"], cfg.arch, cfg.shape, cfg.forward_dtype
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise TrainError(f"checkpoint {path} does not describe a model of this version ({err})") from None
    raise TrainError(f"checkpoint {path} does not say its data shape (seq_len, vocab_size): not written by "
                     f"this trainer; to convert, save it with the entries model_name, arch and shape")


def stored_config(payload: dict, path="checkpoint") -> ModelConfig:
    """The ModelConfig of the model a checkpoint holds (arch + shape + compute dtype)."""
    return ModelConfig.of(*stored_model(payload, path)[1:])


def load_run(path: str | os.PathLike, ema: bool | None = None, dtype: str | torch.dtype | None = None,
             arch: ArchConfig | None = None, payload: dict | None = None) -> Run:
    """The model a checkpoint (or a run folder's checkpoint.pt) describes, weights loaded, on the CPU.

    `ema`: None = the weights its trainer evaluated (the EMA average when the run kept one), True =
    the EMA average (error if none), False = the raw weights (what resume continues from).
    `dtype`: the compute dtype (default: the one it was trained in). `arch`: another architecture
    for the same weights (the evaluator's `arch.key=value` overrides); the weights must fit it.
    `payload`: the checkpoint already read from `path`."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    payload = load_checkpoint(path) if payload is None else payload
    name, stored_arch, shape, stored_dtype = stored_model(payload, path)
    cfg = config_from_checkpoint(payload) if "config" in payload else None
    arch = arch or stored_arch
    try:
        model = build_model(name, arch, shape, dtype or stored_dtype)
    except ValueError as err:
        raise TrainError(f"checkpoint {path}: the architecture does not fit its data shape ({err})") from None
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as err:  # e.g. an arch override that changes a weight's shape
        lines = [x.strip() for x in str(err).splitlines() if x.strip()] or [repr(err)]
        raise TrainError(f"{path}: weights do not fit the model ({lines[min(1, len(lines) - 1)][:300]})") from None
    has_ema = ema_shadow(payload) is not None
    if ema and not has_ema:
        raise TrainError(f"checkpoint {path} holds no EMA weights (trained with optim.ema=false)")
    if has_ema and ema is not False:
        use_ema_weights(model, payload)
    return Run(model, name, arch, shape, cfg, payload)


def load_for_inference(path: str | os.PathLike, ema: bool | None = None, device: str = "auto",
                       dtype: str = "auto", payload: dict | None = None) -> tuple[Run, System]:
    """`load_run` on the device and in the compute dtype `setup_system` picks on this machine for
    the model's width (a checkpoint trained in bf16 runs in float32 on a CPU without bf16).
    `payload`: the checkpoint already read from `path`."""
    path = Path(path)
    payload = load_checkpoint(path / CHECKPOINT if path.is_dir() else path) if payload is None else payload
    width = stored_model(payload, path)[1].hidden_size
    system = setup_system(device=device, dtype=dtype, compile="off", verbose=False, width=width)
    run = load_run(path, ema, system.dtype, payload=payload)
    run.model.to(system.device)
    return run, system

