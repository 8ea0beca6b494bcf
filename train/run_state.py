"""The state of one training run: made in one place (`open_run`: fresh, or from one read of the
checkpoint in its folder), saved from one place (`RunState.save`), evaluated from one place
(`RunState.evaluate`). The loop (train/loop.py) only advances it.

Opening judges the run already in the folder first (its config, then its data), so a refusal leaves
everything as it was: nothing built, nothing written, nothing evaluated. Resume is decided once,
here; the payload is read once and every part of the state is restored from it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models import Carry, DataShape, HaltingModel, build_model
from puzzles.dataset import Split, dataset_fingerprint, load_identifiers, load_split
from puzzles.errors import PuzzleError
from puzzles.splits import SplitRows

from . import collectives, curriculum
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainConfig
from .data import (check_family, check_run_data, check_shape, data_dir_of, data_record, dataset_grid, dataset_shape,
                   ensure_dataset, require_run_data)
from .errors import ConfigError, TrainError
from .evaluation import evaluate_split
from .guard import LossWatch
from .loader import TrainLoader
from .logger import MetricsLogger
from .model_io import config_from_checkpoint, load_run, model_record
from .overrides import config_to_dict
from .run import CHECKPOINT, carry_from, carry_state, check_run_dir, lock_run_dir, resume_decision
from .setup import System
from .step import TrainStep


def steps_per_epoch(split: Split, global_batch_size: int) -> float:
    """Reference: one epoch draws one puzzle per group, i.e. groups x mean examples per puzzle."""
    examples = split.num_groups * float(split.meta.get("mean_puzzle_examples", 1.0))
    return max(examples / global_batch_size, 1e-9)


def schedule(cfg: TrainConfig, split: Split) -> tuple[int, int]:
    """(optimiser steps of the run, steps between evaluations; 0 = only the final one)."""
    opt, per_epoch = cfg.optim, steps_per_epoch(split, cfg.optim.global_batch_size)
    total_steps = max(1, int(opt.epochs * per_epoch))
    if opt.max_steps:
        total_steps = min(total_steps, opt.max_steps)
    eval_every = max(1, round(cfg.eval.interval * per_epoch)) if cfg.eval.interval else 0
    return total_steps, cfg.eval.interval_steps or eval_every


def copy_keys_of(family: str, data_dir: Path):
    """The task and augmentation of every puzzle identifier (`puzzles.arc.copy_keys`), which
    arch.puzzle_emb_keying=per_task needs; a one-line error for a dataset that does not name them."""
    if family != "arc":
        raise ConfigError(f"arch.puzzle_emb_keying=per_task needs an ARC dataset (its identifiers name each "
                          f"augmented copy's task); {data_dir} holds {family} puzzles: use per_copy")
    from puzzles.arc import copy_keys
    try:
        return copy_keys(load_identifiers(data_dir))
    except PuzzleError as err:
        raise TrainError(f"arch.puzzle_emb_keying=per_task: {data_dir}: {err}") from None


def new_model(cfg: TrainConfig, shape: DataShape, system: System, data_dir: Path) -> HaltingModel:
    """The run's model, freshly initialised: the same weights on every rank and every rerun. Keyed
    per task, its puzzle table gets one row per task of the dataset and the keys of every copy."""
    torch.manual_seed(cfg.system.seed)
    keys = copy_keys_of(cfg.data.family, data_dir) if cfg.arch.puzzle_emb_keying == "per_task" else None
    if keys is not None:
        shape = dataclasses.replace(shape, num_puzzle_tasks=len(keys.tasks))
    try:
        model = build_model(cfg.model, cfg.arch, shape, system.dtype)
    except ValueError as err:
        raise ConfigError(f"arch does not fit dataset {data_dir}: {err}") from None
    if keys is not None:
        model.puzzle_emb.set_keys(keys.task, keys.dihedral, keys.perm)
    return model.to(system.device)


TRAIN_METRICS = ("exact_accuracy", "accuracy", "changed_cell_accuracy")  # logged for eval.train_examples


def _carry_is_finite(carry: Carry | None) -> bool:
    return carry is None or bool(torch.isfinite(carry.z_H).all() and torch.isfinite(carry.z_L).all())


@dataclass
class RunState:
    cfg: TrainConfig
    system: System
    run_dir: Path
    data_dir: Path
    data: dict  # what every checkpoint records of the data (path, content fingerprint)
    test_split: Split
    model: HaltingModel  # the raw weights (the EMA lives in trainer)
    trainer: TrainStep  # optimisers, EMA, the non-finite undo
    loader: TrainLoader
    logger: MetricsLogger
    record: dict  # the model record every checkpoint carries (the arch's depth, not a curriculum stage's)
    stages: list  # the depth curriculum (empty: none)
    total_steps: int
    eval_every: int
    step: int = 0
    carry: Carry | None = None
    bad_in_row: int = 0  # non-finite steps in a row
    bad_total: int = 0
    last_good: int = 0  # the last step whose update was applied
    elapsed: float = 0.0  # training seconds (evaluation excluded)
    eval_seconds: float = 0.0  # of the last evaluation
    last_eval: dict = field(default_factory=dict)
    train_rows: SplitRows | None = None  # eval.train_examples rows of the train split, scored at every evaluation
    loss_watch: LossWatch = field(default_factory=LossWatch)  # warns once if the logged loss stays far up

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save(self) -> None:
        """The checkpoint of the current step (rank 0 writes it); never with non-finite values."""
        if not (self.trainer.state_is_finite() and _carry_is_finite(self.carry)):  # TrainStep skips such updates
            raise TrainError(f"refusing to write non-finite weights to {self.ckpt_path} at step {self.step}")
        if self.system.is_main:
            save_checkpoint(self.ckpt_path, {
                "config": config_to_dict(self.cfg), "model": self.model.state_dict(),
                "optim": self.trainer.state_dict(), "loader": self.loader.state_dict(), "rng": capture_rng_state(),
                "carry": carry_state(self.carry), "step": self.step, "bad_steps": self.bad_total,
                "elapsed": self.elapsed, "eval": self.last_eval, "last_good_step": self.last_good,
                "loss_watch": self.loss_watch.state_dict(), "data": self.data, **self.record})

    def evaluate(self) -> dict:
        """Held-out metrics of the EMA weights (the raw ones without EMA); writes eval/test on rank 0."""
        t0 = time.perf_counter()
        model = self.trainer.ema.averaged_copy(self.model) if self.trainer.ema is not None else self.model
        batch_size = self.cfg.eval.batch_size or self.cfg.optim.global_batch_size
        metrics = evaluate_split(model, self.test_split, self.cfg.eval, self.system, self.data_dir,
                                 out_dir=self.run_dir / "eval" / "test" if self.system.is_main else None,
                                 batch_size=batch_size)
        if self.train_rows is not None:  # does it solve what it trains on (ARC: the demonstration pairs)?
            plain = dataclasses.replace(self.cfg.eval, max_examples=0, samples=1, save_predictions=0)
            train = evaluate_split(model, self.train_rows, plain, self.system, self.data_dir, None, batch_size)
            metrics |= {f"train_{k}": v for k, v in train.items() if k in TRAIN_METRICS}
        self.model.train()
        self.eval_seconds = time.perf_counter() - t0  # logged apart from training seconds (bench.learn)
        return metrics


def open_run(cfg: TrainConfig, system: System, run_dir: Path, resume: bool, lock: list) -> RunState:
    """The run in `run_dir`: resumed from its checkpoint (one read) or fresh. `lock` receives the
    folder's lock file, held by the caller until the run ends."""
    if cfg.optim.global_batch_size % system.world_size:
        raise TrainError(f"optim.global_batch_size={cfg.optim.global_batch_size} must be a multiple of the "
                         f"{system.world_size} processes")
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"system.run_dir {run_dir} is a file, not a run folder; choose another system.run_dir")
    check_run_dir(run_dir)  # a user's folder (system.run_dir=.) is never written into
    ckpt_path = run_dir / CHECKPOINT
    payload, changes = None, []
    if ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        stored = config_from_checkpoint(payload)
        changes = resume_decision(stored, cfg, resume, run_dir)
        require_run_data(data_dir_of(cfg), payload.get("data"), stored, run_dir)
    elif resume:
        raise TrainError(f"--resume given but {ckpt_path} does not exist")
    data_dir = ensure_dataset(cfg, system.is_main)
    collectives.barrier()  # rank 0 built the dataset
    train_split, test_split = load_split(data_dir, "train"), load_split(data_dir, "test")
    for split in (train_split, test_split):
        check_family(cfg.data.family, split, what=f"train.{cfg.data.family}")
    shape = dataset_shape(train_split)
    check_shape(shape, test_split, cfg.arch.puzzle_emb_ndim > 0)
    data = data_record(data_dir, dataset_fingerprint(data_dir))
    if payload is not None:
        check_family(cfg.data.family, train_split, payload.get("grid"), what=f"the run in {run_dir}")
        changes += check_run_data(ckpt_path, payload.get("data"), data_dir, data["fingerprint"],
                                  f"the run in {run_dir}", say=system.is_main)
        # the raw weights the run stopped at, rebuilt as it was built
        model = load_run(ckpt_path, ema=False, dtype=system.dtype, payload=payload).model.to(system.device)
        check_shape(model.config.shape, train_split, cfg.arch.puzzle_emb_ndim > 0)
    else:
        model = new_model(cfg, shape, system, data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if system.is_main:
        lock.append(lock_run_dir(run_dir))
    if system.distributed:  # identical start on every rank, whatever the local RNG did
        for tensor in list(model.parameters()) + list(model.buffers()):
            collectives.broadcast_(tensor.data)
    opt = cfg.optim
    loader = TrainLoader(train_split, opt.global_batch_size, seed=cfg.system.seed, rank=system.rank,
                         world_size=system.world_size, pin_memory=system.device.type == "cuda")
    total_steps, eval_every = schedule(cfg, train_split)
    trainer = TrainStep(model, opt, total_steps, compile=system.compile, sync_free=cfg.system.sync_free)
    state = RunState(cfg, system, run_dir, data_dir, data, test_split, model, trainer, loader, logger=None,
                     record=model_record(cfg.model, model, dataset_grid(train_split)),
                     stages=curriculum.parse(opt.curriculum), total_steps=total_steps, eval_every=eval_every)
    if cfg.eval.train_examples:
        state.train_rows = SplitRows.spread(train_split, cfg.eval.train_examples)
    if payload is not None:
        trainer.load_state_dict(payload["optim"])
        loader.load_state_dict(payload["loader"])
        restore_rng_state(payload["rng"])
        state.carry = carry_from(payload["carry"], system.device)
        if state.carry is not None and model.puzzle_emb is not None:
            model.puzzle_emb.prepare(state.carry.steps.shape[0])  # scratch rows for a hand-built carry
        state.step, state.bad_total = payload["step"], payload.get("bad_steps", 0)
        state.elapsed, state.last_eval = payload.get("elapsed", 0.0), payload.get("eval", {})
        state.last_good = payload.get("last_good_step", state.step)
        if "loss_watch" in payload:  # older checkpoints lack it: the watch starts afresh
            state.loss_watch.load_state_dict(payload["loss_watch"])
        if system.is_main:
            print(f"resuming {run_dir} at step {state.step}/{total_steps}"
                  + (f" with changed {'; '.join(changes)}" if changes else ""), flush=True)
    else:
        torch.manual_seed(cfg.system.seed + 1 + system.rank)  # exploration draws; differs per rank
    if system.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{cfg.model} on {cfg.data.family}: {n_params / 1e6:.2f}M parameters, {len(train_split)} train "
              f"examples, {total_steps} steps of batch {opt.global_batch_size} -> {run_dir}", flush=True)
    state.logger = MetricsLogger(run_dir, cfg, enabled=system.is_main,
                                 resume_step=state.step if payload is not None else None)
    return state
