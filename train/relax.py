"""Convert a trained *untied* TRM run into a Relaxed Recursive Transformer run (Bae et al. 2024).

    python -m train.relax RUN --init average|stepwise|lower --rank R --out RUN2 [--layers M] [--order cycle]
    # then uptrain with the normal trainer (the command is printed), e.g.
    python -m train.sudoku --model rrt --resume system.run_dir=RUN2 arch.unique_layers=10 ...

The weights are converted by models/relax.py (`relax_state_dict`, which says how). RUN2/checkpoint.pt
starts at step 0 with fresh optimiser moments and the old run's data position. RUN2 must be a new or
empty folder; --force replaces only an earlier train.relax output there (its checkpoint carries
`relaxed_from`), never a training run.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
from pathlib import Path
from typing import Sequence

from models.config import ModelConfig
from models.registry import MODELS
from models.relax import INITS, relax_state_dict
from puzzles.errors import UserError, run_cli

from .checkpoint import load_checkpoint, save_checkpoint
from .config import OptimConfig
from .errors import CheckpointError
from .model_io import config_from_checkpoint, model_record, stored_config
from .overrides import config_leaves, config_to_dict, diff_configs
from .presets import PRESETS
from .run import CHECKPOINT
from .step import TrainStep

MARK = "relaxed_from"  # payload field of a checkpoint written by train.relax (a trainer's never has it)


def check_out(out: Path, force: bool) -> None:
    """OUT must be new, empty, or (with --force) hold only an earlier train.relax checkpoint: a
    training run's checkpoint, metrics or anything else of the user's is never replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the new run")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not names:
        return
    target = out / CHECKPOINT
    try:
        ours = names == [CHECKPOINT] and MARK in load_checkpoint(target)
    except CheckpointError:
        ours = False
    if not ours:
        what = "a training run" if CHECKPOINT in names or "metrics.jsonl" in names else "a folder that is not empty"
        raise UserError(f"--out {out} is {what}; train.relax writes only into a new or empty folder (or, with "
                        f"--force, over its own earlier output): choose another --out")
    if not force:
        raise UserError(f"{target} exists (an earlier train.relax output); pass --force to replace it")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.relax", description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder of an untied trm / trm-mlp run (holds checkpoint.pt)")
    p.add_argument("--init", choices=INITS, default="average", help="how the shared blocks start (default average)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r per layer position (0 = plain tying)")
    p.add_argument("--layers", type=int, help="M >= 1 shared blocks (default: L_layers, as TRM)")
    p.add_argument("--order", choices=("sequence", "cycle", "cycle_rev"), default="cycle",
                   help="share order of the M blocks over the positions (default cycle, as TRM)")
    p.add_argument("--out", type=Path, required=True, help="folder for the new run")
    p.add_argument("--force", action="store_true", help="replace an earlier train.relax output in OUT")
    args = p.parse_args(argv)
    if args.layers is not None and args.layers < 1:  # 0 once meant "the default": say so instead
        raise UserError(f"--layers must be >= 1 (leave it out for L_layers), got {args.layers}")
    target = args.out / CHECKPOINT
    check_out(args.out, args.force)
    payload = load_checkpoint(args.run / CHECKPOINT)
    cfg = config_from_checkpoint(payload)
    if payload.get("model_name") not in ("trm", "trm-mlp"):
        raise UserError(f"{args.run}: train.relax converts a trm or trm-mlp run, this is a "
                        f"{payload.get('model_name')!r} run")
    model_cfg = stored_config(payload, args.run)
    try:
        rrt_cfg, state = relax_state_dict(model_cfg, payload["model"], args.init, args.rank, args.layers or 0,
                                          args.order)
    except ValueError as err:
        raise UserError(f"{err} (--rank / --layers / --order)") from None
    model = MODELS["rrt"](rrt_cfg)
    model.load_state_dict(state)
    changed = {f.name: getattr(rrt_cfg, f.name) for f in dataclasses.fields(ModelConfig)
               if f.name in ("unique_layers", "share_order", "rrt_rank")}
    new = dataclasses.replace(cfg, model="rrt", arch=dataclasses.replace(cfg.arch, **changed),
                              system=dataclasses.replace(cfg.system, run_dir=str(args.out)))
    fresh = TrainStep(model, new.optim if isinstance(new.optim, OptimConfig) else OptimConfig(), total_steps=1)
    save_checkpoint(target, {
        "config": config_to_dict(new), "model": model.state_dict(), "optim": fresh.state_dict(),
        "loader": payload["loader"], "rng": payload["rng"], "carry": None, "step": 0, MARK: str(args.run),
        **model_record("rrt", model, payload.get("grid"))})
    base = PRESETS[new.preset](new.data.family, "rrt")
    leaves = config_leaves(new)
    overrides = [shlex.quote(f"{k}={leaves[k]}") for k in diff_configs(base, new) if k not in ("model", "preset")]
    print(f"wrote {target}: rrt with {rrt_cfg.unique_layers or rrt_cfg.L_layers} shared blocks ({args.order}), "
          f"rank {args.rank}, {args.init} init, from {args.run}")
    print(f"uptrain: python -m train.{new.data.family} --model rrt --preset {new.preset} --resume "
          + " ".join(overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
