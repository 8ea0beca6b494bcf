"""Evaluate a model on a dataset split: exact/cell accuracy, halting, the puzzle's own checker, ARC voting.

    python -m train.evaluate runs/sudoku-trm-mlp-quick                 # a run directory
    python -m train.evaluate runs/x/checkpoint.pt --data data/other      # another dataset
    python -m train.evaluate ref.ckpt --model hrm --data data/arc1 arch.hidden_size=512   # reference weights

Each example runs up to `halt_max_steps` supervision steps (`eval.mode=fixed`, the reference) or
stops when its halting head says so (`eval.mode=adaptive`). Metrics are means over the valid
examples: accuracy (cells), exact_accuracy (whole answers), q_halt_accuracy, steps (steps run),
halt_steps (step at which the halting head first said stop), and per family `valid_solution`
(Sudoku rules hold / the maze path is a valid shortest path) and, for ARC, pass@K after mapping every
augmented prediction back and voting, plus a Kaggle `submission.json`.
Predictions of the first `eval.save_predictions` examples go to `<out>/predictions.npz` for pictures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from puzzles.dataset import Split, load_identifiers, load_split
from puzzles.errors import run_cli

from .config import EvalConfig

IGNORE = -100


def family_of(meta: dict) -> tuple[str, dict]:
    """Puzzle family and its geometry, from dataset.json (inferred for reference-built datasets)."""
    family = meta.get("family")
    seq, vocab = int(meta["seq_len"]), int(meta["vocab_size"])
    side = int(round(seq ** 0.5))
    if family is None:
        if seq == 900 and vocab == 12:
            family = "arc"
        elif vocab == 6 and side * side == seq:
            family = "maze"
        elif side * side == seq and vocab == side + 2:
            family = "sudoku"
    info: dict = {}
    if family == "sudoku":
        box = meta.get("box") or {4: [2, 2], 6: [2, 3], 9: [3, 3], 16: [4, 4]}.get(side)
        info["box"] = list(box) if box else None
    elif family == "maze":
        info["size"] = int(meta.get("size", side))
    return family or "unknown", info


def _valid_solutions(family: str, info: dict, inputs: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Per-row: does the prediction satisfy the puzzle's own rules (not just match the label)?"""
    if family == "sudoku" and info.get("box"):
        from puzzles import sudoku
        box = tuple(info["box"])
        n = box[0] * box[1]
        filled = ((preds >= 2) & (preds <= n + 1)).all(-1)  # a blank or padding token is never a solution
        return np.array([ok and sudoku.check(sudoku.decode(p, n), box, puzzle=sudoku.decode(x, n))
                         for ok, x, p in zip(filled, inputs, preds)], dtype=bool)
    if family == "maze":
        from puzzles import maze
        n = info["size"]
        return np.array([maze.check_path(x.reshape(n, n), p.reshape(n, n)) for x, p in zip(inputs, preds)],
                        dtype=bool)
    return np.zeros(len(inputs), dtype=bool)


def _halt_rule(model, q_halt: torch.Tensor, q_continue: torch.Tensor) -> torch.Tensor:
    if model.config.halt_rule == "q_halt":
        return q_halt > 0
    return q_halt > q_continue


@torch.inference_mode()
def run_batches(model, split: Split, batch_size: int, device: torch.device, adaptive: bool,
                max_examples: int = 0, keep_steps: int = 0, rank: int = 0, world_size: int = 1) -> dict:
    """Run every example of `split` to its end; returns per-example numpy arrays (this rank's rows).

    A row finishes at its first halt (adaptive) or at halt_max_steps (fixed); its prediction then is
    frozen, even though the wrapper would restart a halted row on the next call.
    """
    from puzzles.loader import eval_batches
    model.eval()
    K = model.config.halt_max_steps
    out: dict[str, list] = {k: [] for k in ("index", "inputs", "labels", "preds", "q_halt", "steps",
                                             "halt_steps", "puzzle_identifiers", "step_preds", "step_q")}
    kept = 0
    for batch in eval_batches(split, batch_size, rank, world_size):
        valid = batch.pop("valid")
        index = batch.pop("index")
        if max_examples:
            valid &= index < max_examples
            if not valid.any():
                break
        batch = {k: v.to(device) for k, v in batch.items()}
        B = valid.shape[0]
        carry = model.initial_carry(batch)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        preds = torch.zeros_like(batch["inputs"])
        q_final = torch.zeros(B, device=device)
        steps = torch.full((B,), K, dtype=torch.int32, device=device)
        halt_at = torch.full((B,), K, dtype=torch.int32, device=device)
        step_preds, step_q = [], []
        for k in range(1, K + 1):
            carry, logits, q_halt, q_continue = model.step(carry, batch, adaptive=adaptive)
            p = logits.argmax(-1).to(preds.dtype)
            wants = _halt_rule(model, q_halt, q_continue) | (k == K)
            halt_at = torch.where((halt_at == K) & wants & (k < K), k, halt_at)
            finishing = ~done & (carry.halted if adaptive else torch.full_like(done, k == K))
            preds = torch.where(finishing[:, None], p, preds)
            q_final = torch.where(finishing, q_halt, q_final)
            steps = torch.where(finishing, k, steps)
            done |= finishing
            if keep_steps:
                step_preds.append(p.cpu())
                step_q.append(torch.sigmoid(q_halt).cpu())
            if bool(done.all()):
                break
        keep = valid.numpy()
        out["index"].append(index.numpy()[keep])
        out["inputs"].append(batch["inputs"].cpu().numpy()[keep])
        labels = batch["labels"].cpu().numpy()[keep]
        out["labels"].append(labels)
        out["preds"].append(preds.cpu().numpy()[keep])
        out["q_halt"].append(q_final.cpu().numpy()[keep])
        out["steps"].append(steps.cpu().numpy()[keep])
        out["halt_steps"].append(halt_at.cpu().numpy()[keep])
        out["puzzle_identifiers"].append(batch["puzzle_identifiers"].cpu().numpy()[keep])
        if keep_steps and kept < keep_steps:
            sp = torch.stack(step_preds).numpy()[:, keep]
            sq = torch.stack(step_q).numpy()[:, keep]
            if sp.shape[0] < K:  # finished early: repeat the last step so every row has K entries
                sp = np.concatenate([sp, np.repeat(sp[-1:], K - sp.shape[0], 0)])
                sq = np.concatenate([sq, np.repeat(sq[-1:], K - sq.shape[0], 0)])
            out["step_preds"].append(sp)
            out["step_q"].append(sq)
            kept += int(keep.sum())
    result = {}
    for k, v in out.items():
        if k in ("step_preds", "step_q"):
            result[k] = np.concatenate(v, axis=1) if v else np.zeros((K, 0) + ((split.meta["seq_len"],) if k == "step_preds" else ()))
        else:
            result[k] = np.concatenate(v) if v else np.zeros((0,))
    return result


def score(res: dict, family: str, info: dict) -> dict[str, float]:
    """Sums (not means) of the per-example metrics, so ranks can add them before dividing."""
    labels, preds = res["labels"], res["preds"]
    mask = labels != IGNORE
    n = mask.sum(-1)
    counted = n > 0
    correct = (mask & (preds == labels)).sum(-1)
    exact = counted & (correct == n)
    q_right = counted & ((res["q_halt"] >= 0) == exact)
    sums = {"count": float(counted.sum()), "accuracy": float((correct / np.maximum(n, 1))[counted].sum()),
            "exact_accuracy": float(exact.sum()), "q_halt_accuracy": float(q_right.sum()),
            "steps": float(res["steps"][counted].sum()), "halt_steps": float(res["halt_steps"][counted].sum())}
    if family in ("sudoku", "maze"):
        sums["valid_solution"] = float(_valid_solutions(family, info, res["inputs"], preds)[counted].sum())
    return sums


def evaluate_split(model, split: Split, cfg: EvalConfig, system, data_dir: Path, out_dir: Path | None,
                   batch_size: int) -> dict[str, float]:
    """Evaluate, reduce across ranks, write predictions (rank 0); returns the metrics (means)."""
    family, info = family_of(split.meta)
    res = run_batches(model, split, batch_size, system.device, adaptive=cfg.mode == "adaptive",
                      max_examples=cfg.max_examples, keep_steps=cfg.save_predictions,
                      rank=system.rank, world_size=system.world_size)
    sums = score(res, family, info)
    names = sorted(sums)
    if system.distributed:
        t = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=system.device)
        dist.all_reduce(t)
        sums = dict(zip(names, t.cpu().tolist()))
    count = max(sums.pop("count"), 1.0)
    metrics = {k: v / count for k, v in sums.items()} | {"count": count}
    if family == "arc":
        metrics |= _arc_vote(res, split, data_dir, out_dir, system)
    if out_dir is not None and system.is_main:
        write_predictions(out_dir, res, cfg.save_predictions, family, info, data_dir, split.name, metrics)
    return metrics


def _arc_vote(res: dict, split: Split, data_dir: Path, out_dir: Path | None, system) -> dict[str, float]:
    from puzzles.arc_vote import ArcVoter
    path = Path(data_dir) / "test_puzzles.json"
    if not path.exists():
        return {}
    voter = ArcVoter(json.loads(path.read_text()), load_identifiers(data_dir))
    voter.add(res["puzzle_identifiers"], res["inputs"], np.where(res["labels"] == IGNORE, 0, res["preds"]),
              1.0 / (1.0 + np.exp(-res["q_halt"].astype(np.float64))))
    if system.distributed:
        states = [None] * system.world_size
        dist.all_gather_object(states, voter.state())
        for i, state in enumerate(states):
            if i != system.rank:
                voter.merge(state)
    if out_dir is not None and system.is_main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        _atomic_json(Path(out_dir) / "submission.json", voter.submission())
    return voter.pass_at()


def write_predictions(out_dir: Path, res: dict, n: int, family: str, info: dict, data_dir: Path,
                      split: str, metrics: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = min(n, len(res["preds"]))
    labels = np.where(res["labels"][:n] == IGNORE, 0, res["labels"][:n])
    tmp = out_dir / "predictions.tmp.npz"
    np.savez_compressed(tmp, inputs=res["inputs"][:n], labels=labels, preds=res["preds"][:n],
                        step_preds=res["step_preds"][:, :n], q_halt=res["step_q"][:, :n].astype(np.float32),
                        steps=res["halt_steps"][:n].astype(np.int32), steps_run=res["steps"][:n].astype(np.int32),
                        puzzle_identifiers=res["puzzle_identifiers"][:n].astype(np.int32),
                        index=res["index"][:n])
    os.replace(tmp, out_dir / "predictions.npz")
    _atomic_json(out_dir / "meta.json", {"family": family, **info, "dataset": str(Path(data_dir).resolve()),
                                         "split": split, "metrics": metrics})


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def write_summary(path: Path, summary: dict) -> None:
    _atomic_json(Path(path), summary)
