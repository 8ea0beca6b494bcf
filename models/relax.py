"""Convert a trained *untied* TRM run into a Relaxed Recursive Transformer run (Bae et al. 2024).

    python -m models.relax RUN --init average|stepwise|lower --rank R --out RUN2 [--layers M] [--order cycle]
    # then uptrain with the normal trainer (the command is printed), e.g.
    python -m train.sudoku --model rrt --resume system.run_dir=RUN2 arch.unique_layers=10 ...

RUN holds a `trm` (or `trm-mlp`) run trained untied: `arch.unique_layers` = (L_cycles + 1) * L_layers,
one distinct block per layer position of the H-cycle. The M shared blocks of the new model
(`--layers`, default L_layers, laid out in `--order`, models/share.py) start from
    stepwise  the untied blocks at evenly spaced positions (p = k * N / M)
    average   the mean of the untied blocks at the positions that share block k
    lower     the untied blocks at the first M positions
and every position's LoRA from the truncated SVD of its residual W_p - W_shared, rank R, with the
LoRA scale divided out of B so the initial correction *is* the truncated residual (at full rank the
new model computes the untied one). Block parameters that are not linear maps (the grid conv of
`ffn_conv`, the score bias of `attn_bias=pairwise`) get no LoRA: they are shared by the same rule. RUN2/checkpoint.pt starts at step 0 with fresh optimiser
moments and the old run's data position. RUN2 must be a new or empty folder; --force replaces only
an earlier models.relax output there (its checkpoint carries `relaxed_from`), never a training run.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path
from typing import Sequence

import torch

from puzzles.errors import UserError, run_cli

from .config import ModelConfig
from .lora import lora_key, lora_scale
from .share import layer_order

INITS = ("stepwise", "average", "lower")
MARK = "relaxed_from"  # payload field of a checkpoint written by models.relax (a trainer's never has it)
_BLOCK = re.compile(r"^core\.L_level\.layers\.(\d+)\.(.+)$")


def shared_positions(order: list[int], unique: int, init: str) -> list[list[int]]:
    """For each shared block k, the layer positions whose untied weights initialise it."""
    positions = len(order)
    if init == "stepwise":
        return [[k * positions // unique] for k in range(unique)]
    if init == "lower":
        return [[k] for k in range(unique)]
    if init == "average":
        return [[p for p in range(positions) if order[p] == k] for k in range(unique)]
    raise ValueError(f"--init {init!r}: choose one of {INITS}")


def relax_state_dict(untied: ModelConfig, state: dict[str, torch.Tensor], init: str, rank: int,
                     unique: int = 0, order: str = "cycle") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(rrt config, rrt state dict) from an untied TRM's config and state dict (see module doc)."""
    positions = (untied.L_cycles + 1) * untied.L_layers
    if (untied.unique_layers or untied.L_layers) != positions:
        raise UserError(f"the run is not untied: arch.unique_layers={untied.unique_layers} but an untied model has "
                        f"one block per layer position, (L_cycles + 1) * L_layers = {positions}")
    unique = unique or untied.L_layers
    config = dataclasses.replace(untied, unique_layers=unique if unique != untied.L_layers else 0,
                                 share_order=order, rrt_rank=rank)  # validates rank, order, M
    old_order = layer_order(positions, positions, untied.share_order)
    new_order = layer_order(unique, positions, order)
    per_block: dict[str, dict[int, torch.Tensor]] = {}  # linear name -> untied block -> weight
    out = {}
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match:
            per_block.setdefault(match.group(2), {})[int(match.group(1))] = value.float()
        else:
            out[key] = value
    scale = lora_scale(config)
    sources = shared_positions(new_order, unique, init)
    for name, blocks in per_block.items():
        W = torch.stack([blocks[old_order[p]] for p in range(positions)])  # (N, out, in) by position
        shared = torch.stack([W[src].mean(0) for src in sources])  # (M, out, in)
        for k in range(unique):
            out[f"core.L_level.layers.{k}.{name}"] = shared[k].clone()
        if rank == 0 or not name.endswith("_proj.weight"):  # LoRAs are for the linear layers only;
            continue  # other block parameters (grid conv, pairwise score bias) are shared as they are
        U, S, Vh = torch.linalg.svd(W - shared[new_order], full_matrices=False)  # (N, out, q), (N, q), (N, q, in)
        keep = min(rank, S.shape[-1])
        root = S[:, :keep].sqrt()
        A = torch.zeros(positions, rank, W.shape[2])
        B = torch.zeros(positions, W.shape[1], rank)
        A[:, :keep] = root[:, :, None] * Vh[:, :keep]
        B[:, :, :keep] = U[:, :, :keep] * root[:, None, :] / scale  # scale * B A = the truncated residual
        lin = name.removesuffix(".weight")
        out[f"core.lora_A.{lora_key(lin)}"], out[f"core.lora_B.{lora_key(lin)}"] = A, B
    return config, out


def check_out(out: Path, force: bool) -> None:
    """OUT must be new, empty, or (with --force) hold only an earlier models.relax checkpoint: a
    training run's checkpoint, metrics or anything else of the user's is never replaced."""
    from train.checkpoint import load_checkpoint
    from train.errors import CheckpointError
    from train.run import CHECKPOINT

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
        raise UserError(f"--out {out} is {what}; models.relax writes only into a new or empty folder (or, with "
                        f"--force, over its own earlier output): choose another --out")
    if not force:
        raise UserError(f"{target} exists (an earlier models.relax output); pass --force to replace it")


def main(argv: Sequence[str] | None = None) -> int:
    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.config import PRESETS, OptimConfig
    from train.model_io import config_from_checkpoint, model_record, stored_model
    from train.overrides import config_leaves, config_to_dict, diff_configs
    from train.run import CHECKPOINT
    from train.step import TrainStep

    from .registry import MODELS

    p = argparse.ArgumentParser(prog="python -m models.relax", description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder of an untied trm / trm-mlp run (holds checkpoint.pt)")
    p.add_argument("--init", choices=INITS, default="average", help="how the shared blocks start (default average)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r per layer position (0 = plain tying)")
    p.add_argument("--layers", type=int, help="M >= 1 shared blocks (default: L_layers, as TRM)")
    p.add_argument("--order", choices=("sequence", "cycle", "cycle_rev"), default="cycle",
                   help="share order of the M blocks over the positions (default cycle, as TRM)")
    p.add_argument("--out", type=Path, required=True, help="folder for the new run")
    p.add_argument("--force", action="store_true", help="replace an earlier models.relax output in OUT")
    args = p.parse_args(argv)
    if args.layers is not None and args.layers < 1:  # 0 once meant "the default": say so instead
        raise UserError(f"--layers must be >= 1 (leave it out for L_layers), got {args.layers}")
    target = args.out / CHECKPOINT
    check_out(args.out, args.force)
    payload = load_checkpoint(args.run / CHECKPOINT)
    cfg = config_from_checkpoint(payload)
    if payload.get("model_name") not in ("trm", "trm-mlp"):
        raise UserError(f"{args.run}: models.relax converts a trm or trm-mlp run, this is a "
                        f"{payload.get('model_name')!r} run")
    model_cfg = ModelConfig.of(*stored_model(payload, args.run)[1:])
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
