"""The training loop: deep supervision with the carry kept across steps, for every model and puzzle.

    summary = train(cfg, resume=False)      # setup (train/run_state.py: open_run), loop, final evaluation

One optimiser step = one supervision step for every row of the global batch: rows that halted
are replaced by fresh examples from the loader, the others keep thinking about theirs (the carry
survives across steps and is saved in checkpoints). The loss is scaled by 1/global_batch_size
and gradients are summed across ranks, so any number of processes computes the same update.
Evaluation runs every `eval.interval` epochs and at the end; checkpoints are atomic and a killed
run resumes bit-identically on CPU.

Nothing lost, nothing non-finite: a step whose loss or update is not finite is skipped (TrainStep's
guard), so the weights are always the last finite ones and so is every checkpoint; after
`optim.max_bad_steps` in a row the run stops, to be resumed with `--resume optim.lr=<lower>`.
Metrics stay on the device until a log line; a sync-free step (`system.sync_free`) also leaves its
verdict there, so bad steps are counted (and the stop decided) at log lines and checkpoints only.
Ctrl-C or SIGTERM stops after the current step with a checkpoint there (a second one stops at once;
SIGTERM exits with 143), and `run_dir/.lock` keeps a second trainer out of a folder in use.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import collectives, curriculum
from .config import TrainConfig
from .errors import TrainError
from .evaluation import write_summary
from .logger import require_logger
from .memory import check_memory
from .run import StopRequest, run_dir_of
from .run_state import RunState, open_run
from .scoring import arc_copy_baseline, collapse_warning
from .setup import setup_system, teardown_system


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Set up, train to the end (or to a stop request), evaluate; returns the run's summary."""
    require_logger(cfg.log.logger)
    check_memory(cfg)  # before anything is built: the precision probe already allocates at the model's width
    if cfg.system.threads:  # before setup: the precision probe measures with these threads
        torch.set_num_threads(cfg.system.threads)
    system = setup_system(cfg.system.device, cfg.system.dtype, cfg.system.compile, width=cfg.arch.hidden_size,
                          malloc=cfg.system.malloc)
    lock = []  # the run folder's lock, held until the run ends
    try:
        state = open_run(cfg, system, run_dir_of(cfg), resume, lock)
        run_steps(state)
        summary = finish(state)
    except BaseException:
        teardown_system(system, finished=False)
        raise
    finally:
        for f in lock:
            f.close()
    teardown_system(system)
    return summary


def run_steps(s: RunState) -> None:
    """The loop: step, log, evaluate, checkpoint, stop; a checkpoint at the step a stop asks for."""
    cfg = s.cfg
    bar = tqdm(total=s.total_steps, initial=s.step, disable=not (s.system.is_main and cfg.log.progress),
               desc=f"{cfg.model}/{cfg.data.family}", dynamic_ncols=True)
    s.model.train()
    window = MetricWindow()
    try:
        with StopRequest() as stop:
            while s.step < s.total_steps:
                lr = optimiser_step(s, window)
                if s.step % cfg.log.interval == 0 or s.step == s.total_steps:
                    log_training(s, window, lr, bar)
                bar.update(1)
                # the final evaluation always runs; a periodic one less than half an interval
                # before it would repeat it at nearly the same weights
                if s.eval_every and s.step % s.eval_every == 0 and s.total_steps - s.step >= s.eval_every / 2:
                    s.last_eval = s.evaluate()
                    log_evaluation(s, s.last_eval)
                    bar.write(f"step {s.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in s.last_eval.items()
                                                             if k in ("exact_accuracy", "accuracy", "halt_steps")))
                if collectives.any_rank(stop.requested, s.system.device) and s.step < s.total_steps:
                    settle(s, window)
                    s.save()
                    raise stop.stopped(f"checkpoint at step {s.step} saved in {s.ckpt_path}; run the same "
                                       f"command again to continue")
                if s.step % cfg.system.checkpoint_interval == 0 and s.step < s.total_steps:
                    s.save()
    except BaseException:
        s.logger.close()
        raise
    finally:
        bar.close()
        s.loader.close()


def optimiser_step(s: RunState, window: MetricWindow) -> float:
    """One supervision step for every row of the global batch; returns its learning rate."""
    t0 = time.perf_counter()
    batch = {k: v.to(s.system.device, non_blocking=True) for k, v in next(s.loader).items()}
    if s.carry is None:
        s.carry = s.model.initial_carry(batch)
    s.step += 1
    if s.stages:
        curriculum.apply_depth(s.model, curriculum.depth_at(s.stages, s.step, s.total_steps))
    result = s.trainer(s.carry, batch, s.step)
    s.carry = result.carry
    window.add(result.metrics, result.finite)
    s.elapsed += time.perf_counter() - t0
    cfg = s.cfg
    if (not isinstance(result.finite, torch.Tensor) or s.step % cfg.log.interval == 0 or s.step == s.total_steps
            or s.step % cfg.system.checkpoint_interval == 0):
        settle(s, window)
    return result.lr


def settle(s: RunState, window: MetricWindow) -> None:
    """Count the verdicts of the steps since the last call (sync-free: one host read for all of
    them); stop, with a checkpoint, when the last `optim.max_bad_steps` steps were all skipped."""
    verdicts = window.take_verdicts()
    for step, finite in enumerate(verdicts, s.step - len(verdicts) + 1):
        if finite:
            s.bad_in_row, s.last_good = 0, step
        else:
            s.bad_in_row, s.bad_total = s.bad_in_row + 1, s.bad_total + 1
    if s.bad_in_row >= s.cfg.optim.max_bad_steps:
        s.save()
        raise TrainError(f"{s.bad_in_row} non-finite steps in a row at step {s.step}; stopped. The checkpoint "
                         f"{s.ckpt_path} holds the last finite weights (step {s.last_good}); to continue with "
                         f"a lower lr, run the same command with --resume optim.lr=<lower>")


class MetricWindow:
    """Metric sums and step verdicts since the last log line (kept on the device until read)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.verdicts: list[bool | torch.Tensor] = []

    def add(self, metrics: dict[str, torch.Tensor], finite: bool | torch.Tensor = True) -> None:
        self.sums = ({k: v.detach() + self.sums[k] for k, v in metrics.items()} if self.sums else
                     {k: v.detach().clone() for k, v in metrics.items()})
        self.steps += 1
        self.verdicts.append(finite)

    def take_verdicts(self) -> list[bool]:
        verdicts, self.verdicts = self.verdicts, []
        if verdicts and isinstance(verdicts[0], torch.Tensor):  # sync-free: 0-dim bool tensors
            return torch.stack(verdicts).tolist()
        return verdicts

    def take(self, global_batch_size: int) -> dict[str, float]:
        stats = reduce_metrics(self.sums, global_batch_size, self.steps)
        self.sums, self.steps = {}, 0
        return stats


def reduce_metrics(metrics: dict[str, torch.Tensor], global_batch_size: int, num_steps: int = 1) -> dict[str, float]:
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


def log_training(s: RunState, window: MetricWindow, lr: float, bar: tqdm) -> None:
    stats = {f"train/{k}": v for k, v in window.take(s.cfg.optim.global_batch_size).items()} | {
        "train/lr": lr, "train/skipped_steps": s.bad_total, "time/train_seconds": s.elapsed}
    s.logger.log(s.step, stats)
    loss = stats.get("train/lm_loss", math.nan)
    warning = s.loss_watch.check(loss, s.step)
    if warning and s.system.is_main:
        bar.write(warning)
    bar.set_postfix(loss=f"{loss:.3f}",
                    acc=f"{stats.get('train/accuracy', float('nan')):.3f}",
                    exact=f"{stats.get('train/exact_accuracy', float('nan')):.3f}", refresh=False)


def log_evaluation(s: RunState, metrics: dict) -> None:
    s.logger.log(s.step, {f"eval/{k}": v for k, v in metrics.items()} | {
        "time/train_seconds": s.elapsed, "time/eval_seconds": s.eval_seconds})


def arc_line(final: dict, data_dir: Path, run_dir: Path) -> str:
    """The held-out ARC figures beside the copy-the-input floor, and where the other baselines come from."""
    copy = arc_copy_baseline(data_dir)
    floor = "" if copy is None else f" (copying the input: {copy:.3f})"
    line = (f"ARC held-out test inputs, voted: pass@1 {final.get('pass@1', 0):.3f}, pass@2 {final['pass@2']:.3f}{floor}; "
            f"an untrained model of this shape: python -m bench.arc_baselines {data_dir} --checkpoint {run_dir}")
    warning = collapse_warning(final, run_dir)
    return line + (f"\n{warning}" if warning else "")


def finish(s: RunState) -> dict:
    """The last checkpoint, the final evaluation at the architecture's own depth, the summary."""
    s.save()  # before the final evaluation: a Ctrl-C during it loses no training
    if s.stages:  # the architecture's own depth for the final evaluation (where the curriculum ends)
        curriculum.apply_depth(s.model, {st.field: getattr(s.cfg.arch, st.field) for st in s.stages})
    final = s.evaluate()
    log_evaluation(s, final)
    s.logger.close()
    cfg = s.cfg
    summary = {"run_dir": str(s.run_dir), "model": cfg.model, "family": cfg.data.family, "preset": cfg.preset,
               "steps": s.step, "train_seconds": round(s.elapsed, 2), "skipped_steps": s.bad_total,
               "eval": final}
    if s.system.is_main:
        write_summary(s.run_dir / "summary.json", summary)
        print(f"done: {s.step} steps in {s.elapsed:.0f} s; test exact_accuracy {final.get('exact_accuracy', 0):.4f}"
              f" (summary: {s.run_dir / 'summary.json'})", flush=True)
        if "pass@2" in final:
            print(arc_line(final, s.data_dir, s.run_dir), flush=True)
    return summary
