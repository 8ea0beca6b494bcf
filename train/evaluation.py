"""Evaluate a model on a dataset split: shard -> engine -> score -> reduce -> vote -> write.

    metrics = evaluate_split(model, split, cfg.eval, system, data_dir, out_dir, batch_size)

shard   this rank's examples: the first `eval.max_examples` of the split (all when 0), and with
        several ranks each takes its share of every global batch of `batch_size`.
engine  each example runs once through the slot engine (train/infer.py) in `eval.mode`: fixed
        (halt_max_steps steps, the reference), adaptive (it stops when its halting head says so;
        whole batches) or continuous (adaptive, with a halted slot refilled at once), as
        `eval.samples` trajectories (train/trajectories.py; 1 = one pass) of which `eval.select`
        picks one answer.
score   per-example sums (train/scoring.py); reduce: summed over ranks, then means.
vote    ARC: pass@K over the augmented copies and a Kaggle submission.json.
write   predictions.npz for the first `eval.save_predictions` examples (with the answer after
        every step, for pictures), meta.json and metrics.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.losses import IGNORE_LABEL_ID as IGNORE
from puzzles.check import has_checker, valid_solution
from puzzles.dataset import Split
from puzzles.errors import atomic_write

from . import collectives
from .config import EvalConfig
from .data import family_of
from .errors import TrainError
from .infer import Engine
from .sampling import check_options
from .scoring import arc_vote, reduce, score
from .trajectories import rule_hits, sample, select


def shard(split: Split, batch_size: int, max_examples: int, system) -> np.ndarray:
    """Example rows of this rank: rank r takes rows [r * local, (r + 1) * local) of every global batch."""
    n = min(len(split), max_examples) if max_examples else len(split)
    local = batch_size // system.world_size
    rows = np.arange(n)
    return rows[(rows % batch_size) // local == system.rank]


def examples(split: Split, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs, labels (the dataset's ignore label -> IGNORE, as the loss reads them) and puzzle
    identifiers of `rows`."""
    inputs, labels = split.examples(rows)
    labels = labels.astype(np.int64)
    ignore = split.meta.get("ignore_label_id")
    if ignore is not None:
        labels[labels == ignore] = IGNORE
    ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))[rows].astype(np.int32)
    return {"index": rows.astype(np.int64), "inputs": inputs, "labels": labels, "puzzle_identifiers": ids}


# The evaluation record: one dict of numpy arrays, named and laid out as predictions.npz stores them.
# Per example (N, ...): index, inputs, labels, puzzle_identifiers, preds, steps (the step at which the
# halting head first said stop), steps_run, q_halt_logit (the halting logit of the answer given).
# The trace of the first `eval.save_predictions` examples (M of them), step-major (T, M, ...):
# step_preds (the answer after every supervision step) and q_halt (its halting probability).
TRACE = ("step_preds", "q_halt")


def run_engine(model, res: dict, cfg: EvalConfig, slots: int, device, family: str,
               info: dict) -> tuple[dict, dict[str, float]]:
    """Every example of `res` through the engine: the evaluation record (above) and, with several
    trajectories, the per-rule exact counts (sums)."""
    inputs, labels, rows = res["inputs"], res["labels"], res["index"]
    noise = cfg.noise if cfg.diversity != "aug" else 0.0
    engine = Engine(model, mode=cfg.mode, slots=slots, device=device, threshold=cfg.threshold or None, noise=noise)
    s = sample(engine, inputs, res["puzzle_identifiers"], cfg.samples, cfg.diversity, family, info, cfg.seed,
               keys=rows, record=rows < cfg.save_predictions)  # seeded by the example's index: any rank count
    sample_sums: dict[str, float] = {}
    if cfg.samples == 1:
        choice, halt_steps, freeze = np.zeros(len(rows), dtype=np.int64), s.halt_steps[:, 0], s.steps[:, 0]
    else:
        checker = (lambda x, p: valid_solution(family, info, x, p)) if has_checker(family, info) else None
        hits = rule_hits(s, labels, IGNORE, inputs, checker)
        sample_sums = {f"exact_{k.replace('-', '_')}": float(v.sum()) for k, v in hits.items()}
        sample_sums["steps_all"] = float(s.steps.sum())
        choice = select(s, cfg.select, inputs, checker)
        # steps: the chosen trajectory's steps; the pictures show the plain pass stopped where its
        # halting head said stop (in fixed mode too)
        halt_steps, freeze = s.steps[np.arange(len(rows)), choice], s.halt_steps[:, 0]
    picked = np.arange(len(rows))
    step_preds, step_q = s.trace_preds.copy(), s.trace_q.copy()
    for m, k in enumerate(freeze[rows < cfg.save_predictions]):  # after it stopped: its answer then
        step_preds[m, k:], step_q[m, k:] = step_preds[m, k - 1], step_q[m, k - 1]
    record = res | {"preds": s.preds[picked, choice], "q_halt_logit": s.q_halt_logit[picked, choice],
                    "steps": halt_steps.astype(np.int32), "steps_run": s.steps[picked, choice].astype(np.int32),
                    "step_preds": step_preds.transpose(1, 0, 2), "q_halt": step_q.T.astype(np.float32)}
    return record, sample_sums


def evaluate_split(model, split: Split, cfg: EvalConfig, system, data_dir: Path, out_dir: Path | None,
                   batch_size: int) -> dict[str, float]:
    """Evaluate, reduce across ranks, write predictions (rank 0); returns the metrics (means)."""
    family, info = family_of(split.meta)
    try:
        check_options(cfg.samples, cfg.diversity, cfg.noise, cfg.select, family)
    except ValueError as err:
        raise TrainError(f"eval.{err}") from None
    rows = shard(split, batch_size, cfg.max_examples, system)
    record, sample_sums = run_engine(model, examples(split, rows), cfg, batch_size // system.world_size,
                                     system.device, family, info)
    metrics = reduce(score(record, family, info) | sample_sums, system)
    if family == "arc" and split.name == "test":  # test_puzzles.json describes the test split only
        metrics |= arc_vote(record, data_dir, out_dir, system, info.get("slots", 0))
    kept = gather_first(record, cfg.save_predictions, system)  # collective: every rank takes part
    if out_dir is not None and system.is_main:
        write_predictions(out_dir, kept, family, info, data_dir, split.name, metrics)
    return metrics


def _first(record: dict, n: int | np.ndarray) -> dict:
    """The record's rows `n` (a count: the first n; an array: those rows): per-example arrays on
    axis 0, the trace on axis 1."""
    pick = slice(None, n) if isinstance(n, int) else n
    return {k: v[:, pick] if k in TRACE else v[pick] for k, v in record.items()}


def gather_first(record: dict, n: int, system) -> dict:
    """The first `n` examples (by index) of the whole split, from every rank (each holds its rows in
    index order, so its first n hold its share of the global first n)."""
    part = _first(record, n)
    if not system.distributed:
        return part
    parts = collectives.gather_objects(part)
    merged = {k: np.concatenate([p[k] for p in parts], axis=1 if k in TRACE else 0) for k in part}
    return _first(merged, np.argsort(merged["index"], kind="stable")[:n])


# predictions.npz: the record but q_halt_logit; labels in the dataset's token space (0 = ignore)
SAVED = ("inputs", "labels", "preds", "step_preds", "q_halt", "steps", "steps_run", "puzzle_identifiers", "index")


def write_predictions(out_dir: Path, record: dict, family: str, info: dict, data_dir: Path,
                      split: str, metrics: dict) -> None:
    """predictions.npz, meta.json and metrics.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: record[k] for k in SAVED} | {"labels": np.where(record["labels"] == IGNORE, 0, record["labels"]),
                                             "puzzle_identifiers": record["puzzle_identifiers"].astype(np.int32)}
    atomic_write(out_dir / "predictions.npz", lambda f: np.savez_compressed(f, **arrays))
    _atomic_json(out_dir / "meta.json", {"family": family, **info, "dataset": str(Path(data_dir).resolve()),
                                         "split": split, "metrics": metrics})
    _atomic_json(out_dir / "metrics.json", metrics)


def _atomic_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def write_summary(path: Path, summary: dict) -> None:
    _atomic_json(Path(path), summary)
