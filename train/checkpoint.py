"""Atomic checkpoint files and RNG-state capture for exact resume.

    save_checkpoint(run_dir / "checkpoint.pt", {"step": step, "model": model.state_dict(), ...,
                                                "rng": capture_rng_state()})
    payload = load_checkpoint(run_dir / "checkpoint.pt")
    restore_rng_state(payload["rng"])

A payload is a dict of tensors and plain python (dicts, lists, str, numbers, None) so it loads with
`torch.load(weights_only=True)`: configs go in as `train.overrides.config_to_dict`, RNG states as
tensors. Writes go to a temporary file in the same directory, are fsync'ed, then `os.replace`d over
the target, so a crash never leaves half a checkpoint. Reading a missing, truncated or corrupt file
raises `CheckpointError` (a `puzzles.errors.UserError`) with one line naming the file.
Tests: python -m pytest -q tests/test_checkpoint.py
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from puzzles.errors import atomic_write

from .errors import CheckpointError


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` atomically (temp file + fsync + os.replace). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint

    atomic_write(path, write)
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors land on `map_location`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, garbage bytes, disallowed pickled types, ...
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:160]
        reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a checkpoint dict")
    weights = {**(payload.get("model") or {}), **{f"EMA {k}": v for k, v in (ema_shadow(payload) or {}).items()}}
    bad = next((k for k, v in weights.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
                and not bool(torch.isfinite(v).all())), None)
    if bad is not None:  # written by an older version: answering with it would be meaningless
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({bad}); retrain or resume from "
                              f"an earlier checkpoint")
    step = payload.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:  # a resumed run would count from it
        raise CheckpointError(f"checkpoint {path} has step {step!r}; a step count is an integer >= 0 "
                              f"(the file was edited or not written by this project)")
    return payload


def capture_rng_state() -> dict[str, Any]:
    """States of python `random`, numpy's global generator, torch CPU and every CUDA device."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`. CUDA states are restored for the devices present (a run
    resumed on fewer GPUs restores the first ones; on a CPU-only machine they are ignored)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        for device, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), device)


def ema_shadow(payload: dict) -> dict | None:
    """The EMA weights a training checkpoint holds, if its run kept them."""
    return ((payload.get("optim") or {}).get("ema") or {}).get("shadow") or None


@torch.no_grad()
def use_ema_weights(model: torch.nn.Module, payload: dict) -> None:
    """Overwrite the model's parameters with the checkpoint's EMA weights."""
    params = dict(model.named_parameters())
    for name, value in ema_shadow(payload).items():
        params[name].copy_(value)
