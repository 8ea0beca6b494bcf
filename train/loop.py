"""The training loop: deep supervision with the carry kept across steps, for every model and puzzle.

    summary = train(cfg, resume=False)

One optimiser step = one supervision step for every row of the global batch: rows that halted
are replaced by fresh examples from the loader, the others keep thinking about theirs (the carry
survives across steps and is saved in checkpoints). The loss is scaled by 1/global_batch_size
and gradients are summed across ranks, so any number of processes computes the same update.
Evaluation runs every `eval.interval` epochs and at the end; checkpoints are atomic and a killed
run resumes bit-identically on CPU.

Nothing lost, nothing non-finite: a step whose loss or update is not finite is skipped (TrainStep
undoes it), so the weights are always the last finite ones and so is every checkpoint; after
`optim.max_bad_steps` in a row the run stops, to be resumed with `--resume optim.lr=<lower>`.
Ctrl-C or SIGTERM stops after the current step with a checkpoint there (a second one stops at once;
SIGTERM exits with 143), and `run_dir/.lock` keeps a second trainer out of a folder in use.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from models import Carry, DataShape, HaltingModel, build_model
from puzzles.dataset import dataset_fingerprint, load_split
from train.loader import TrainLoader

from . import collectives, curriculum
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainConfig
from .data import (check_family, check_run_data, check_shape, data_dir_of, data_record, dataset_grid, dataset_shape,
                   ensure_dataset, require_run_data, unrecorded_note)
from .errors import ConfigError, TrainError
from .evaluation import evaluate_split, write_summary
from .logger import MetricsLogger, require_logger
from .memory import check_memory
from .model_io import config_from_checkpoint, load_run, model_record
from .overrides import config_to_dict
from .run import (CHECKPOINT, StopRequest, carry_from, carry_state, check_run_dir, lock_run_dir, resume_decision,
                  run_dir_of)
from .setup import setup_system, teardown_system
from .step import TrainStep


def steps_per_epoch(split, global_batch_size: int) -> float:
    """Reference: one epoch draws one puzzle per group, i.e. groups x mean examples per puzzle."""
    examples = split.num_groups * float(split.meta.get("mean_puzzle_examples", 1.0))
    return max(examples / global_batch_size, 1e-9)


def schedule(cfg: TrainConfig, split) -> tuple[int, int]:
    """(optimiser steps of the run, steps between evaluations; 0 = only the final one)."""
    opt, per_epoch = cfg.optim, steps_per_epoch(split, cfg.optim.global_batch_size)
    total_steps = max(1, int(opt.epochs * per_epoch))
    if opt.max_steps:
        total_steps = min(total_steps, opt.max_steps)
    eval_every = max(1, round(cfg.eval.interval * per_epoch)) if cfg.eval.interval else 0
    return total_steps, cfg.eval.interval_steps or eval_every


def _carry_is_finite(carry: Carry | None) -> bool:
    return carry is None or bool(torch.isfinite(carry.z_H).all() and torch.isfinite(carry.z_L).all())


def new_model(cfg: TrainConfig, shape: DataShape, system, data_dir: Path) -> HaltingModel:
    """The run's model, freshly initialised: the same weights on every rank and every rerun."""
    torch.manual_seed(cfg.system.seed)
    try:
        model = build_model(cfg.model, cfg.arch, shape, system.dtype)
    except ValueError as err:
        raise ConfigError(f"arch does not fit dataset {data_dir}: {err}") from None
    return model.to(system.device)


def reduce_metrics(metrics: dict[str, torch.Tensor], global_batch_size: int, distributed: bool,
                   num_steps: int = 1) -> dict[str, float]:
    """Sum over ranks, then losses and "mean_*" statistics / (global batch x steps) and everything else
    / count (reference rule).

    `metrics` may hold sums over `num_steps` steps: rows halt in waves (all rows of a fresh run halt
    together at halt_max_steps), so one step's halted rows are often none at all.
    """
    names = sorted(metrics)
    values = torch.stack([metrics[k].detach().float() for k in names])
    values = collectives.sum_(values).cpu().tolist()
    out = dict(zip(names, values))
    count = max(out.get("count", 0.0), 1.0)
    # losses and a core's "mean_*" statistics (batch sums, models/halting.py think) are per row
    per_row = {k for k in out if k.endswith("loss") or k.startswith("mean_")}
    return {k: (v / (global_batch_size * num_steps) if k in per_row else v / count)
            for k, v in out.items() if k != "count"} | {"count": out.get("count", 0.0)}


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    require_logger(cfg.log.logger)
    check_memory(cfg)  # before anything is built: the precision probe already allocates at the model's width
    if cfg.system.threads:  # before setup: the precision probe measures with these threads
        torch.set_num_threads(cfg.system.threads)
    system = setup_system(cfg.system.device, cfg.system.dtype, cfg.system.compile, width=cfg.arch.hidden_size)
    run_dir = run_dir_of(cfg)
    lock = []  # the run folder's lock, held until the run ends
    try:
        summary = _train(cfg, system, run_dir, resume, lock)
    except BaseException:
        teardown_system(system, finished=False)
        raise
    finally:
        for f in lock:
            f.close()
    teardown_system(system)
    return summary


def _train(cfg: TrainConfig, system, run_dir: Path, resume: bool, lock: list) -> dict:
    if cfg.optim.global_batch_size % system.world_size:
        raise TrainError(f"optim.global_batch_size={cfg.optim.global_batch_size} must be a multiple of the "
                         f"{system.world_size} processes")
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"system.run_dir {run_dir} is a file, not a run folder; choose another system.run_dir")
    check_run_dir(run_dir)  # a user's folder (system.run_dir=.) is never written into
    # The run already in the folder is judged first (its config, then its data), so a refusal
    # leaves everything as it was: nothing built, nothing written, nothing evaluated.
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
    data = data_record(data_dir, dataset_fingerprint(data_dir))  # recorded in every checkpoint
    if payload is not None:
        check_family(cfg.data.family, train_split, payload.get("grid"), what=f"the run in {run_dir}")
        changes += check_run_data(payload.get("data"), data_dir, data["fingerprint"], f"the run in {run_dir}")
        if payload.get("data") is None and system.is_main:
            print(unrecorded_note(ckpt_path, data_dir), flush=True)
    if payload is not None:  # the raw weights the run stopped at, rebuilt as it was built
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
    trainer = TrainStep(model, opt, total_steps, compile=system.compile, distributed=system.distributed)
    stages = curriculum.parse(opt.curriculum)  # depth as a pure function of the step
    record = model_record(cfg.model, model, dataset_grid(train_split))  # the arch's depth, not a stage's

    step, carry, bad_in_row, bad_total, elapsed, last_eval = 0, None, 0, 0, 0.0, {}
    last_good = 0  # the last step whose update was applied
    if payload is not None:
        trainer.load_state_dict(payload["optim"])
        loader.load_state_dict(payload["loader"])
        restore_rng_state(payload["rng"])
        carry = carry_from(payload["carry"], system.device)
        if carry is not None and model.puzzle_emb is not None:
            model.puzzle_emb.prepare(carry.steps.shape[0])  # scratch rows for a hand-built carry
        step, bad_total, elapsed = payload["step"], payload.get("bad_steps", 0), payload.get("elapsed", 0.0)
        last_good = payload.get("last_good_step", step)
        last_eval = payload.get("eval", {})
        if system.is_main:
            print(f"resuming {run_dir} at step {step}/{total_steps}"
                  + (f" with changed {'; '.join(changes)}" if changes else ""), flush=True)
    else:
        torch.manual_seed(cfg.system.seed + 1 + system.rank)  # exploration draws; differs per rank
    if system.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{cfg.model} on {cfg.data.family}: {n_params / 1e6:.2f}M parameters, {len(train_split)} train "
              f"examples, {total_steps} steps of batch {opt.global_batch_size} -> {run_dir}", flush=True)

    logger = MetricsLogger(run_dir, cfg, enabled=system.is_main, resume_step=step if payload is not None else None)

    def checkpoint() -> None:
        if not (trainer.state_is_finite() and _carry_is_finite(carry)):  # TrainStep undoes such updates
            raise TrainError(f"refusing to write non-finite weights to {ckpt_path} at step {step}")
        if system.is_main:
            save_checkpoint(ckpt_path, {
                "config": config_to_dict(cfg), "model": model.state_dict(), "optim": trainer.state_dict(),
                "loader": loader.state_dict(), "rng": capture_rng_state(), "carry": carry_state(carry),
                "step": step, "bad_steps": bad_total, "elapsed": elapsed, "eval": last_eval,
                "last_good_step": last_good, "data": data, **record})

    eval_seconds = [0.0]

    def run_eval() -> dict:
        t0 = time.perf_counter()
        eval_model = trainer.ema.averaged_copy(model) if trainer.ema is not None else model
        metrics = evaluate_split(eval_model, test_split, cfg.eval, system, data_dir,
                                 out_dir=run_dir / "eval" / "test" if system.is_main else None,
                                 batch_size=cfg.eval.batch_size or opt.global_batch_size)
        model.train()
        eval_seconds[0] = time.perf_counter() - t0  # logged apart from training seconds (bench.learn)
        return metrics

    bar = tqdm(total=total_steps, initial=step, disable=not (system.is_main and cfg.log.progress),
               desc=f"{cfg.model}/{cfg.data.family}", dynamic_ncols=True)
    model.train()
    window, window_steps = {}, 0  # metric sums since the last log line
    try:
        with StopRequest() as stop:
            while step < total_steps:
                t0 = time.perf_counter()
                batch = {k: v.to(system.device, non_blocking=True) for k, v in next(loader).items()}
                if carry is None:
                    carry = model.initial_carry(batch)
                step += 1
                if stages:
                    curriculum.apply_depth(model, curriculum.depth_at(stages, step, total_steps))
                result = trainer(carry, batch, step)
                carry, lr = result.carry, result.lr
                window = {k: v.detach() + window[k] for k, v in result.metrics.items()} if window else \
                    {k: v.detach().clone() for k, v in result.metrics.items()}
                window_steps += 1
                if result.finite:
                    bad_in_row, last_good = 0, step
                else:
                    bad_in_row, bad_total = bad_in_row + 1, bad_total + 1
                elapsed += time.perf_counter() - t0
                if bad_in_row >= opt.max_bad_steps:
                    checkpoint()
                    raise TrainError(f"{bad_in_row} non-finite steps in a row at step {step}; stopped. The checkpoint "
                                     f"{ckpt_path} holds the last finite weights (step {last_good}); to continue with "
                                     f"a lower lr, run the same command with --resume optim.lr=<lower>")

                if step % cfg.log.interval == 0 or step == total_steps:
                    stats = reduce_metrics(window, opt.global_batch_size, system.distributed, window_steps)
                    window, window_steps = {}, 0
                    stats = {f"train/{k}": v for k, v in stats.items()} | {
                        "train/lr": lr, "train/skipped_steps": bad_total, "time/train_seconds": elapsed}
                    logger.log(step, stats)
                    bar.set_postfix(loss=f"{stats.get('train/lm_loss', float('nan')):.3f}",
                                    acc=f"{stats.get('train/accuracy', float('nan')):.3f}",
                                    exact=f"{stats.get('train/exact_accuracy', float('nan')):.3f}", refresh=False)
                bar.update(1)
                # the final evaluation always runs; a periodic one less than half an interval
                # before it would repeat it at nearly the same weights
                if eval_every and step % eval_every == 0 and total_steps - step >= eval_every / 2:
                    last_eval = run_eval()
                    logger.log(step, {f"eval/{k}": v for k, v in last_eval.items()} | {
                        "time/train_seconds": elapsed, "time/eval_seconds": eval_seconds[0]})
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items()
                                                           if k in ("exact_accuracy", "accuracy", "halt_steps")))
                if collectives.any_rank(stop.requested, system.device) and step < total_steps:
                    checkpoint()
                    raise stop.stopped(f"checkpoint at step {step} saved in {ckpt_path}; run the same "
                                       f"command again to continue")
                if step % cfg.system.checkpoint_interval == 0 and step < total_steps:
                    checkpoint()
    except BaseException:
        logger.close()
        raise
    finally:
        bar.close()
        loader.close()

    checkpoint()  # before the final evaluation: a Ctrl-C during it loses no training
    if stages:  # the architecture's own depth for the final evaluation (where the curriculum ends)
        curriculum.apply_depth(model, {s.field: getattr(cfg.arch, s.field) for s in stages})
    final = run_eval()
    logger.log(step, {f"eval/{k}": v for k, v in final.items()} | {"time/train_seconds": elapsed,
                                                                   "time/eval_seconds": eval_seconds[0]})
    logger.close()
    summary = {"run_dir": str(run_dir), "model": cfg.model, "family": cfg.data.family, "preset": cfg.preset,
               "steps": step, "train_seconds": round(elapsed, 2), "skipped_steps": bad_total,
               "eval": final}
    if system.is_main:
        write_summary(run_dir / "summary.json", summary)
        print(f"done: {step} steps in {elapsed:.0f} s; test exact_accuracy {final.get('exact_accuracy', 0):.4f}"
              f" (summary: {run_dir / 'summary.json'})", flush=True)
    return summary
