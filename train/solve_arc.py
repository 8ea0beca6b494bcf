"""Answer ARC tasks from a Kaggle challenges file with a trained ARC checkpoint (`train.solve`).

    python -m train.solve runs/arc-trm-quick/checkpoint.pt tasks.json --solutions solutions.json
    python -m train.solve runs/arc-trm-quick tasks.json --aug 7 --fit-steps 50 --out answers

`train.solve` hands every checkpoint whose grid is ARC to `solve_tasks`. Each task of the file
(`{task id: {"train": [{"input", "output"}...], "test": [{"input"}...]}}`) is answered on its own:

1. the dataset builder itself (`puzzles.arc.build.build_arc`, on the model's canvas) makes the
   original and `--aug` augmented copies: dihedral transform and colour permutation (0 kept) per
   copy, the demonstration pairs translated inside the canvas;
2. a model with a puzzle embedding gets a new vector for the task, fitted on those demonstration
   pairs (`train/arc_fit.py`); a model without one answers directly;
3. the slot engine answers every test input in every copy, and `puzzles.arc.ArcVoter` maps the
   answers back through their copy's augmentation and votes: two attempts per test input.

The answers of a task depend on that task and the options only (each task starts from the
checkpoint's weights, seeded by `--seed`), so a bad task cannot shift another's. Output, one folder:
`submission.json` (Kaggle format, every task id of the file in file order; a bad task's test inputs
get the placeholder [[0]]) and `summary.json` (per task in file order: test inputs, seconds, fit
losses, pass@1/pass@2 with `--solutions`, or its one-line error).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from models.config import dtype_name
from puzzles.arc import VOCAB_SIZE, ArcVoter, Task, copy_keys, parse_task, read_solutions, read_task_file
from puzzles.arc.build import build_arc, task_fits
from puzzles.errors import PuzzleError, UserError, atomic_dir, check_output_dir, one_line

from .arc_fit import FitOptions, NewTask, fit
from .infer import Engine, SolveResult
from .model_io import load_for_inference
from .sampling import NOISE

SUBMISSION, SUMMARY = "submission.json", "summary.json"
AUG, FIT_STEPS, FIT_LR, FIT_BATCH = 7, 50, 1e-2, 32
PLACEHOLDER = [[0]]  # a bad task's attempts, as the voter answers a test input it has no answer for
NOT_FOR_ARC = {"samples": 1, "diversity": "aug", "select": "vote", "noise": NOISE}  # Sudoku/maze only


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ARC models (FILE: a Kaggle challenges JSON file)")
    g.add_argument("--solutions", metavar="FILE", help="Kaggle solutions JSON file: also report pass@1 and pass@2")
    g.add_argument("--aug", type=int, metavar="K", help=f"augmented copies of each task besides the original, all voted (default {AUG})")
    g.add_argument("--fit-steps", type=int, metavar="N", help=f"optimiser steps fitting a new task's puzzle vector (default {FIT_STEPS})")
    g.add_argument("--fit-lr", type=float, metavar="X", help=f"Adam learning rate of the puzzle vectors (default {FIT_LR:g}); with "
                                               "--fit-all the network's is scaled by the run's optim.lr / optim.puzzle_emb_lr")
    g.add_argument("--fit-batch", type=int, metavar="B", help=f"demonstration examples per fitting step (default {FIT_BATCH})")
    g.add_argument("--fit-all", action="store_true", help="fine-tune every weight as well (a copy; the checkpoint is never changed)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def arc_options_given(args: argparse.Namespace) -> list[str]:
    """The ARC-only options set on the command line (a Sudoku or maze model refuses them)."""
    named = ("solutions", "aug", "fit_steps", "fit_lr", "fit_batch")
    return [f"--{k.replace('_', '-')}" for k in named if getattr(args, k) is not None] + ["--fit-all"] * args.fit_all


def checkpoint_family(payload: dict) -> str | None:
    """The puzzle family of a checkpoint: its recorded grid's, else its training config's."""
    grid, config = payload.get("grid"), payload.get("config")
    if isinstance(grid, dict) and grid.get("family"):
        return grid["family"]
    data = config.get("data") if isinstance(config, dict) else None
    return data.get("family") if isinstance(data, dict) else None


class CopyRows(NamedTuple):
    """The test inputs of one task in all its copies, as the engine takes them."""
    inputs: np.ndarray  # (R, canvas**2) tokens
    copy_ids: np.ndarray  # (R,) the copy of each row, in the task's numbering (`names`)
    model_ids: np.ndarray  # (R,) the puzzle identifier the model reads for that copy
    names: list[str]  # copy number -> its augmented name ("<task>|||t<t>|||<colours>"); 0 = <blank>


def answer(engine: Engine, rows: CopyRows) -> SolveResult:
    """The model's answer to every row (one seam, so a test can stand in an oracle)."""
    return engine.solve(rows.inputs, rows.model_ids)


def _example_ids(split) -> np.ndarray:
    return np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices)).astype(np.int64)


def _check(args: argparse.Namespace, model, canvas: int, slots: int) -> None:
    for name, default in NOT_FOR_ARC.items():
        if getattr(args, name) != default:
            raise UserError(f"--{name} applies to Sudoku and maze models; an ARC model votes over --aug copies")
    for flag, value, low in (("--aug", args.aug, 0), ("--fit-steps", args.fit_steps, 0), ("--fit-batch", args.fit_batch, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be an integer >= {low}, got {value}")
    if args.fit_lr is not None and not (math.isfinite(args.fit_lr) and args.fit_lr > 0):
        raise UserError(f"--fit-lr must be a finite number > 0, got {args.fit_lr}")
    if model.puzzle_emb is None and (args.fit_all or args.fit_steps is not None):
        raise UserError("the model has no puzzle embedding: it answers new tasks directly; drop --fit-steps/--fit-all")
    if max(slots, 1) * canvas * canvas != model.config.seq_len or model.config.vocab_size != VOCAB_SIZE:
        what = f"{slots} ARC canvases" if slots else "an ARC canvas"  # slots: an in-context model's grids
        raise UserError(f"checkpoint {args.checkpoint}: rows of {model.config.seq_len} tokens from a vocabulary of "
                        f"{model.config.vocab_size} are not {what} ({canvas}x{canvas} tokens of {VOCAB_SIZE})")


def _out_dir(args: argparse.Namespace, path: Path) -> Path:
    """The output folder; an existing one only with --force, and only an earlier output of ours."""
    out = Path(args.out) if args.out else path.with_name(f"{path.stem}-answers")
    return check_output_dir(out, args.force, lambda d: not {p.name for p in d.iterdir()} - {SUBMISSION, SUMMARY},
                            f"an earlier output of train.solve ({SUBMISSION}, {SUMMARY})")


def _read(path: Path, solutions: str | None) -> tuple[list[tuple[str, Task | str, int]], dict]:
    """[(task id, Task or its one-line error, test inputs)] in file order, and the solutions."""
    entries = []
    for tid, raw in read_task_file(path).items():
        tests = len(raw["test"]) if isinstance(raw, dict) and isinstance(raw.get("test"), list) else 0
        try:
            task = parse_task(raw, f"task {tid}", require_outputs=False)
            task = Task(task.train, [(i, None) for i, _ in task.test], task.test_first, task.source)  # answer blind
            entries.append((tid, task, tests))
        except PuzzleError as err:
            entries.append((tid, one_line(str(err)), tests))
    sols = read_solutions(solutions) if solutions else {}
    for tid, task, tests in entries:
        if tid in sols and not isinstance(task, str) and len(sols[tid]) != tests:
            raise PuzzleError(f"{solutions}: task {tid}: expected {tests} solution grid(s), got {len(sols[tid])}")
    return entries, sols


def _solve_one(tid: str, task: Task, sols: list | None, new: NewTask | None, engine: Engine, canvas: int,
               aug: int, opt: FitOptions, context: int = 0) -> tuple[dict, list[dict]]:
    """(its summary entry, its submission entries) for one good task; `context` K > 0 for a model
    that reads K demonstration pairs with each test input (puzzles/arc/context.py)."""
    start = time.perf_counter()
    if not task_fits(task, canvas):
        h, w = max((g.shape for pair in task.train + task.test for g in pair if g is not None), key=max)
        raise PuzzleError(f"task {tid}: a {h}x{w} grid, larger than the model's {canvas}x{canvas} canvas")
    built = build_arc({"file": {tid: task}}, "file", aug, opt.seed, materialize=True, canvas=canvas, context=context)
    train, test = built.splits["train"], built.splits["test"]
    copy_ids = _example_ids(test)
    losses: list[float] = []
    if new is not None:
        keys = copy_keys(built.identifiers)
        new.start(keys.dihedral[1:], keys.perm[1:])
        losses = fit(new, train.inputs, train.labels, _example_ids(train), opt)
    model_ids = new.ids(copy_ids) if new is not None else np.zeros(len(copy_ids), np.int32)
    rows = CopyRows(test.inputs, copy_ids, model_ids, built.identifiers)
    result = answer(engine, rows)
    tests = [{"input": i.tolist(), **({"output": s.tolist()} if sols else {})}
             for (i, _), s in zip(task.test, sols or [None] * len(task.test))]
    voter = ArcVoter({tid: {"test": tests}}, built.identifiers, test.meta.get("slots", 0))
    voter.add(copy_ids, rows.inputs, result.preds, result.q_halt_prob)
    entry = {"task": tid, "test_inputs": len(task.test), "copies": len(built.identifiers) - 1,
             "mean_steps": float(result.steps.mean()) if len(result) else 0.0}
    if losses:
        entry["fit_loss"] = {"first": losses[0], "last": losses[-1], "steps": len(losses)}
    if sols:
        entry |= voter.pass_at((1, 2))
    entry["seconds"] = time.perf_counter() - start
    return entry, voter.submission()[tid]


def solve_tasks(args: argparse.Namespace, payload: dict) -> int:
    """`python -m train.solve` for an ARC checkpoint (options checked, then every task answered)."""
    path = Path(args.file)
    run, system = load_for_inference(args.checkpoint, ema=False if args.no_ema else None, device=args.device,
                                     dtype=args.dtype, payload=payload)
    model = run.model
    grid = payload.get("grid") or {}
    canvas = grid.get("canvas") or math.isqrt(model.config.seq_len)
    context = int(grid.get("context", 0))  # an in-context model: its demonstrations go in with each input
    _check(args, model, canvas, int(grid.get("slots", 0)))
    out = _out_dir(args, path)
    entries, solutions = _read(path, args.solutions)
    aug = AUG if args.aug is None else args.aug
    opt = FitOptions(steps=FIT_STEPS if args.fit_steps is None else args.fit_steps,
                     lr=FIT_LR if args.fit_lr is None else args.fit_lr, batch=args.fit_batch or FIT_BATCH,
                     all=args.fit_all, seed=args.seed)
    optim = run.cfg.optim if run.cfg is not None else None
    opt.network_lr = opt.lr * (optim.lr / optim.puzzle_emb_lr if optim and optim.puzzle_emb_lr else 1e-2)
    new = NewTask(model, run.name, aug + 1) if model.puzzle_emb is not None else None
    model = run.model = new.model if new else model  # the checkpoint's own copy is no longer needed
    engine = Engine(model, mode=args.mode, slots=args.slots, max_steps=args.max_steps,
                    threshold=args.threshold, device=system.device, compile=args.compile)
    print(next(line for line in system.lines if line.startswith("precision")), file=sys.stderr, flush=True)

    summary, submission, bad = [], {}, 0
    for tid, task, tests in tqdm(entries, desc="ARC tasks", unit="task", disable=args.no_progress, file=sys.stderr):
        try:
            if isinstance(task, str):
                raise PuzzleError(task)
            entry, submission[tid] = _solve_one(tid, task, solutions.get(tid), new, engine, canvas, aug, opt,
                                                context)
        except PuzzleError as err:
            bad += 1
            tqdm.write(f"error: {path}: {one_line(str(err))}", file=sys.stderr)
            entry, submission[tid] = {"task": tid, "error": one_line(str(err))}, [
                {"attempt_1": PLACEHOLDER, "attempt_2": PLACEHOLDER} for _ in range(tests)]
        summary.append(entry)

    good = [e for e in summary if "error" not in e]
    scored = [e for e in good if "pass@1" in e]
    totals = {"tasks": len(summary), "bad_tasks": bad, "test_inputs": sum(e["test_inputs"] for e in good),
              "seconds_per_task": float(np.mean([e["seconds"] for e in good])) if good else 0.0,
              "copies": aug + 1, "fit": None if new is None else {
                  "steps": opt.steps, "lr": opt.lr, "batch": opt.batch, "all": opt.all,
                  **({"network_lr": opt.network_lr} if opt.all else {})},
              "mode": args.mode, "dtype": dtype_name(system.dtype), "seed": args.seed}
    if scored:
        totals |= {"scored_tasks": len(scored), **{k: float(np.mean([e[k] for e in scored])) for k in ("pass@1", "pass@2")}}
    with atomic_dir(out) as tmp:
        (tmp / SUBMISSION).write_text(json.dumps(submission), encoding="utf-8")
        (tmp / SUMMARY).write_text(json.dumps({**totals, "per_task": summary}, indent=1), encoding="utf-8")
    line = [f"{len(good)} of {len(summary)} tasks answered ({totals['test_inputs']} test inputs, "
            f"{totals['seconds_per_task']:.2f} s per task, {aug + 1} copies each)"]
    line.append("no puzzle embedding: answered directly" if new is None else
                f"fitted {opt.steps} steps ({'all weights' if opt.all else 'the new puzzle vectors only'})")
    if scored:
        line.append(f"pass@1 {totals['pass@1']:.3f}, pass@2 {totals['pass@2']:.3f} over {len(scored)} tasks with solutions")
    if bad:
        line.append(f"{bad} bad tasks (errors in {SUMMARY})")
    print("; ".join(line) + f"; wrote {out / SUBMISSION}", file=sys.stderr)
    return 1 if bad else 0
