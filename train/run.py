"""The run folder: its name, its lock, the carry and the config rules for resuming a run in it, and
Ctrl-C/SIGTERM handling. Used by the training loop (train/loop.py); `CHECKPOINT` and `TrainError` by every
tool that reads a run.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import torch

from models import Carry

from .config import TrainConfig
from .errors import TrainError
from .overrides import config_leaves, diff_configs

CHECKPOINT = "checkpoint.pt"


def run_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.system.run_dir or f"runs/{cfg.data.family}-{cfg.model}-{cfg.preset}")


# What a trainer (and train.relax) puts in a run folder: a folder holding anything else is a user's.
RUN_FILES = (CHECKPOINT, "summary.json", "metrics.jsonl", ".lock", "eval", "wandb", "curves.png")


def check_run_dir(run_dir: Path) -> None:
    """Refuse, before anything is written, a system.run_dir that holds things that are not a run's
    (system.run_dir=. would write checkpoints into the working folder and append to a foreign
    metrics.jsonl). New, empty and this project's run folders pass."""
    if not run_dir.is_dir():
        return
    names = [p.name for p in run_dir.iterdir()]
    if CHECKPOINT in names or "summary.json" in names:
        return
    foreign = sorted(n for n in names if n not in RUN_FILES and not n.startswith("metrics.jsonl.bak")
                     and not (n.startswith(".") and n.endswith(".tmp")))  # the logger's backups, temp files
    if foreign:
        raise TrainError(f"system.run_dir {run_dir} is not a run folder (it holds {', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}, but no {CHECKPOINT} or summary.json); "
                         f"choose a new or empty system.run_dir")


# Keys that may differ between a run and its resumption: how long, how often, where it runs, and
# the optimiser's rates (after a non-finite stop, continue with a lower lr).
RESUMABLE_CHANGES = ("optim.epochs", "optim.max_steps", "eval.", "log.", "system.checkpoint_interval",
                     "system.threads", "system.device", "system.compile", "system.sync_free", "system.run_dir",
                     "data.path", "data.build", "optim.lr", "optim.lr_warmup_steps", "optim.lr_min_ratio",
                     "optim.weight_decay", "optim.puzzle_emb_lr", "optim.puzzle_emb_weight_decay",
                     "optim.max_bad_steps")
# Keys that never make two configs "different" for automatic resumption.
RUNTIME_KEYS = ("log.progress", "system.threads", "system.run_dir", "system.device", "data.path")


def resume_decision(stored: TrainConfig, cfg: TrainConfig, resume: bool, run_dir: Path) -> list[str]:
    """The changes ("optim.lr 0.1 -> 0.001") if the checkpoint in `run_dir` may be resumed with `cfg`;
    raise when it belongs to another config."""
    diffs = [k for k in diff_configs(stored, cfg) if not k.startswith(RUNTIME_KEYS)]
    if not diffs:
        return []
    if not resume:
        raise TrainError(f"{run_dir} holds a run with another config (differs in {', '.join(diffs)}); "
                         f"pass --resume to continue it, or choose another system.run_dir")
    fixed = [k for k in diffs if not k.startswith(RESUMABLE_CHANGES)]
    if fixed:
        raise TrainError(f"cannot resume {run_dir} with a changed {', '.join(fixed)}; only training length, "
                         f"optimiser rates, evaluation, logging and system keys may change")
    old, new = config_leaves(stored), config_leaves(cfg)
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in diffs]


def carry_state(carry: Carry | None) -> dict | None:
    if carry is None:
        return None
    return {"z_H": carry.z_H, "z_L": carry.z_L, "steps": carry.steps, "halted": carry.halted,
            "current_data": dict(carry.current_data)}


def carry_from(state: dict | None, device: torch.device) -> Carry | None:
    if state is None:
        return None
    return Carry(z_H=state["z_H"].to(device), z_L=state["z_L"].to(device), steps=state["steps"].to(device),
                 halted=state["halted"].to(device),
                 current_data={k: v.to(device) for k, v in state["current_data"].items()})


def lock_run_dir(run_dir: Path):
    """Hold `run_dir/.lock` (with our pid) for the whole run, so a second trainer on the same folder
    is refused instead of interleaving metrics and checkpoints. flock: the lock dies with the
    process, so a killed run leaves no stale lock. Returns the open file (close it to release)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return None
    path = run_dir / ".lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise TrainError(f"{run_dir} is in use by another trainer (pid {pid}, lock file {path}); "
                         f"wait for it to finish or choose another system.run_dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


class Terminated(KeyboardInterrupt):
    """A stop asked for by SIGTERM (a scheduler, `timeout`, `docker stop`): handled like Ctrl-C, but the
    process exits with 128 + 15 = 143, as a process killed by SIGTERM does, so callers see why."""
    exit_code = 128 + signal.SIGTERM


class StopRequest:
    """Ctrl-C or SIGTERM during training: the first asks the loop to stop after the current step (it
    saves a checkpoint there), a second one stops at once. Active only in the main thread, inside `with`."""

    SIGNALS = {signal.SIGINT: ("Ctrl-C", KeyboardInterrupt), signal.SIGTERM: ("SIGTERM", Terminated)}

    def __init__(self):
        self.requested, self.signum, self._old = False, None, {}

    def _handler(self, signum, frame):
        name, kind = self.SIGNALS[signum]
        if self.requested:
            raise kind(f"second {name}: stopped at once, without a checkpoint")
        self.requested, self.signum = True, signum
        again = "Ctrl-C again" if signum == signal.SIGINT else "send it again"
        print(f"\n{name}: stopping after this step and saving a checkpoint ({again} to quit at once)", flush=True)

    def stopped(self, message: str) -> KeyboardInterrupt:
        """The exception that ends the run once the checkpoint is saved: its type gives the exit code."""
        if self.signum == signal.SIGTERM:
            return Terminated(f"SIGTERM received; {message}")
        return KeyboardInterrupt(message)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)  # None: not set from Python
        self._old = {}
