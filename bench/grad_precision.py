"""How far a compute mode's gradient sits from float32's, at a checkpoint, on its own training data.

    python -m bench.grad_precision runs/maze-trm-quick                       # bf16 eager against float32
    python -m bench.grad_precision RUN --modes bfloat16,bfloat16-compiled,bf16-weights --batches 4

Why: a bf16 run can learn differently from a float32 run of the same recipe, on any device. A
learning run shows that only after thousands of steps; this shows the cause at one point of a run:
the gradient of the training loss of one supervision step from the initial carry (what the trainer
backpropagates first for every new example), on `--batches` batches of the run's train split, in
each mode, against the same gradient in float32 eager. Per batch it prints the relative error
||g - g32|| / ||g32|| and the cosine; the last line is the median over batches.

Modes: `bfloat16` / `bfloat16-compiled` (the trainer's bf16, eager / torch.compile),
`float32-compiled`, and `bf16-weights`: float32 compute with the weights rounded to bf16. The last one
asks how sensitive this checkpoint's gradient is to a perturbation of bf16's size at all: when it
moves the gradient far, no single bf16 operation is to blame; the recursion amplifies any rounding.

The raw weights are used (the ones the optimiser steps), not the EMA average; the halting
exploration is off so every mode sees the same computation. CPU only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models import build_model
from puzzles.dataset import load_split
from puzzles.errors import UserError, run_cli
from train.data import check_shape, data_dir_of
from train.evaluation import examples
from train.model_io import load_run

MODES = ("float32-compiled", "bfloat16", "bfloat16-compiled", "bf16-weights")
_SETTINGS = {  # mode -> (compute dtype, torch.compile, weights rounded to bf16)
    "float32": ("float32", False, False), "float32-compiled": ("float32", True, False),
    "bfloat16": ("bfloat16", False, False), "bfloat16-compiled": ("bfloat16", True, False),
    "bf16-weights": ("float32", False, True),
}


def gradient(model, forward, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The flat float64 gradient of one supervision step's loss (per example) from the initial carry;
    `forward` is the model itself or its compiled wrapper."""
    model.zero_grad(set_to_none=True)
    _, loss, _, _, _ = forward(model.initial_carry(batch), batch)
    (loss / batch["inputs"].shape[0]).backward()
    return torch.cat([p.grad.double().flatten() if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64)
                      for p in model.parameters()])


def compare(run_path: str, data: str | None, modes: Sequence[str], batches: int, batch_size: int,
            seed: int) -> dict:
    """Per mode: the relative error and cosine against float32 eager, one value per batch."""
    run = load_run(run_path, ema=False)
    state = run.model.state_dict()
    data_dir = Path(data) if data else data_dir_of(run.cfg) if run.cfg is not None else None
    if data_dir is None or not data_dir.is_dir():
        raise UserError(f"the run's dataset {data_dir} is not here; pass --data DIR")
    split = load_split(data_dir, "train")
    check_shape(run.shape, split, run.arch.puzzle_emb_ndim > 0)
    arch = dataclasses.replace(run.arch, halt_exploration_prob=0.0)  # no random draws: one computation
    models = {}

    def model_for(mode: str):
        """(model, forward) of a mode, built and compiled once."""
        if mode not in models:
            dtype, compile, rounded = _SETTINGS[mode]
            m = build_model(run.name, arch, run.shape, dtype)
            m.load_state_dict({k: v.bfloat16().float() if rounded and v.is_floating_point() else v
                               for k, v in state.items()})
            models[mode] = (m.train(), torch.compile(m) if compile else m)
        return models[mode]

    rng = np.random.default_rng(seed)
    n = len(split)
    if n < batch_size:
        raise UserError(f"--batch {batch_size} is larger than the train split ({n} examples)")
    out = {mode: {"rel_err": [], "cosine": []} for mode in modes}
    for _ in range(batches):
        rows = rng.choice(n, batch_size, replace=False)
        batch = {k: torch.from_numpy(v) for k, v in examples(split, rows).items() if k != "index"}
        ref = gradient(*model_for("float32"), batch)
        for mode in modes:
            g = gradient(*model_for(mode), batch)
            out[mode]["rel_err"].append(((g - ref).norm() / ref.norm()).item())
            out[mode]["cosine"].append(torch.nn.functional.cosine_similarity(g, ref, dim=0).item())
    return {"run": run_path, "step": run.payload.get("step"), "batches": batches, "batch": batch_size, "modes": out}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grad_precision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder or checkpoint file")
    p.add_argument("--data", help="dataset directory (default: the run's own)")
    p.add_argument("--modes", default="bfloat16", help=f"comma-separated, from {', '.join(MODES)} (default bfloat16)")
    p.add_argument("--batches", type=int, default=2, help="train batches to compare on (default 2)")
    p.add_argument("--batch", type=int, default=64, help="examples per batch (default 64)")
    p.add_argument("--seed", type=int, default=0, help="which batches (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise UserError(f"--modes: unknown mode {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    if args.batches < 1 or args.batch < 1:
        raise UserError("--batches and --batch must be at least 1")
    if not Path(args.run).exists():
        raise UserError(f"{args.run} does not exist")
    result = compare(args.run, args.data, modes, args.batches, args.batch, args.seed)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.run} (step {result['step']}): gradient of one supervision step against float32 eager, "
          f"{args.batches} batches of {args.batch}")
    for mode, r in result["modes"].items():
        per = " ".join(f"{e:.4f}" for e in r["rel_err"])
        print(f"  {mode:18s} relative error {statistics.median(r['rel_err']):.4f} (per batch {per}), "
              f"cosine {statistics.median(r['cosine']):.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
