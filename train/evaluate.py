"""Evaluate a model on a dataset split: exact/cell accuracy, halting, the puzzle's own checker, ARC voting.

    python -m train.evaluate runs/sudoku-trm-mlp-quick                 # a run directory
    python -m train.evaluate runs/x/checkpoint.pt --data data/other      # another dataset
    python -m train.evaluate ref.ckpt --model hrm --data data/arc1 arch.hidden_size=512   # reference weights

Each example runs up to `halt_max_steps` supervision steps (`eval.mode=fixed`, the reference) or
stops when its halting head says so (`eval.mode=adaptive`, `continuous`). Metrics are means over the
valid examples: accuracy (cells), exact_accuracy (whole answers), q_halt_accuracy, steps (steps run),
halt_steps (step at which the halting head first said stop), and per family `valid_solution`
(Sudoku rules hold / the maze path is a valid shortest path) and, for ARC, pass@K after mapping every
augmented prediction back and voting, plus a Kaggle `submission.json`.
Predictions of the first `eval.save_predictions` examples go to `<out>/predictions.npz` for pictures,
with `meta.json` and `metrics.json` beside them. The evaluation itself: train/evaluation.py.

The command line evaluates a saved run (a run directory or its checkpoint.pt: the run's config,
its EMA weights when it used EMA unless --no-ema, its dataset unless --data) or a bare reference
state dict (keys `inner.*`, `model.inner.*`, `_orig_mod.model.inner.*`; --model and --data are then
required and the architecture is the paper preset's for that model, changed with `arch.key=value`).
A run is scored on its own dataset only if that is still the data it trained on (the content
fingerprint its checkpoint records): a rebuilt or replaced dataset is refused. `--data DIR` scores
other data on purpose, into `<run>/eval/<DIR's name>-<split>` unless --out says where.
Default output: `<run>/eval/<split>`; predictions already there (the trainer's own evaluation
included) are replaced only with --force. `key=value` overrides any config key (eval.batch_size=64, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from models import build_model, load_reference_state_dict
from puzzles.dataset import dataset_fingerprint, load_split
from puzzles.errors import run_cli

from .checkpoint import ema_shadow, load_checkpoint
from .config import MODEL_NAMES
from .data import check_family, check_run_data, check_shape, data_dir_of, dataset_shape, family_of
from .errors import TrainError
from .evaluation import evaluate_split
from .model_io import config_from_checkpoint, load_run
from .overrides import apply_overrides
from .presets import PRESETS
from .run import CHECKPOINT
from .sampling import DIVERSITY, RULES, check_options
from .scoring import collapse_warning
from .setup import setup_system, teardown_system


# --- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT", help="run directory, its checkpoint.pt, or a reference state dict")
    p.add_argument("--data", help="dataset directory (default: the run's own); must fit the model; output "
                   "then goes to RUN/eval/<its name>-SPLIT")
    p.add_argument("--split", default="test", help="dataset split to evaluate (default test)")
    p.add_argument("--mode", choices=("fixed", "adaptive", "continuous"), help="fixed: halt_max_steps for every "
                   "example; adaptive: stop at the halting head's decision; continuous: adaptive with halted "
                   "slots refilled at once (train/infer.py) (default: the run's eval.mode)")
    p.add_argument("--threshold", type=float, help="adaptive/continuous: halt once sigmoid(q_halt) >= THRESHOLD "
                   "(default: the run's eval.threshold; 0 = the model's own rule)")
    p.add_argument("--samples", type=int, metavar="K", help="trajectories per puzzle, one answer chosen by --select "
                   "(train/trajectories.py; default: the run's eval.samples, 1 = one pass)")
    p.add_argument("--diversity", choices=DIVERSITY, help="aug (puzzle symmetries), noise (on the latent), both")
    p.add_argument("--select", choices=RULES, help="vote | confidence | first-halt | checked (Sudoku/maze only)")
    p.add_argument("--noise", type=float, help="latent noise scale for --diversity noise|both")
    p.add_argument("--seed", type=int, help="seed of the augmentations and the noise")
    p.add_argument("--out", help="output directory (default RUN/eval/SPLIT, with --data RUN/eval/<data name>-SPLIT)")
    p.add_argument("--force", action="store_true", help="replace predictions already in --out")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights of a run trained with EMA")
    p.add_argument("--model", choices=MODEL_NAMES, help="model of a reference state dict (required for those; checked for runs)")
    p.add_argument("--family", choices=("sudoku", "maze", "arc"),
                   help="puzzle family for the paper preset of a reference state dict (default: the dataset's)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. eval.batch_size=64")
    return p


def _is_reference(payload: dict) -> bool:
    state = payload["state_dict"] if isinstance(payload.get("state_dict"), dict) else payload
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def _load(args, ckpt: Path, system_for):
    """(model, cfg, split, system, name of the default output folder under eval/) for a trainer
    checkpoint or a reference state dict. A run scored on other data (--data) gets a folder of its
    own, `<data name>-<split>`, so the run's own evaluation is never replaced by it."""
    payload = load_checkpoint(ckpt)
    if "config" in payload and "model" in payload:  # written by train.loop
        stored = config_from_checkpoint(payload)
        if args.model and args.model != stored.model:
            raise TrainError(f"{ckpt} holds a {stored.model} model, not {args.model}")
        cfg = apply_overrides(stored, args.overrides)
        data_dir = Path(args.data) if args.data else data_dir_of(cfg)
        if not args.data and not data_dir.is_dir():
            raise TrainError(f"the run's dataset {data_dir} does not exist here (paths are relative to where "
                             f"it was trained); pass --data DIR")
        split = load_split(data_dir, args.split)
        check_family(stored.data.family, split, payload.get("grid"), what=f"the model in {ckpt}")
        if not args.data:  # its own data must still be the data it trained on; --data is a choice
            check_run_data(ckpt, payload.get("data"), data_dir, dataset_fingerprint(data_dir), f"the model in {ckpt}",
                           "to score other data on purpose pass --data DIR (written to its own folder)")
        system = system_for(cfg)
        ema = cfg.optim.ema and ema_shadow(payload) is not None and not args.no_ema
        run = load_run(ckpt, ema=ema, dtype=system.dtype, arch=cfg.arch, payload=payload)
        check_shape(run.shape, split, run.arch.puzzle_emb_ndim > 0)
        if ema:
            print("weights: EMA (--no-ema for the raw ones)", flush=True)
        name = f"{Path(args.data).resolve().name}-{args.split}" if args.data else args.split
        return run.model.to(system.device), cfg, split, system, name

    if not _is_reference(payload):
        raise TrainError(f"{ckpt} is neither a checkpoint of this trainer nor a reference state dict")
    if not args.model or not args.data:
        raise TrainError(f"{ckpt} holds bare reference weights: pass --model NAME and --data DIR (the "
                         f"architecture is the paper preset's, changed with arch.key=value)")
    split = load_split(args.data, args.split)
    family = args.family or family_of(split.meta)[0]
    if family not in ("sudoku", "maze", "arc"):
        raise TrainError(f"dataset {args.data} does not say its puzzle family; pass --family sudoku|maze|arc")
    cfg = apply_overrides(PRESETS["paper"](family, args.model), args.overrides)
    system = system_for(cfg)
    try:
        model = build_model(args.model, cfg.arch, dataset_shape(split), system.dtype)
    except ValueError as err:
        raise TrainError(f"arch does not fit dataset {args.data}: {err}") from None
    try:
        warnings = load_reference_state_dict(model, payload)
    except ValueError as err:
        msg = str(err) if len(str(err)) < 400 else str(err)[:400] + "..."
        raise TrainError(f"{ckpt}: {msg} (architecture: paper preset for {family}/{args.model} with "
                         f"{' '.join(args.overrides) or 'no overrides'})") from None
    for w in warnings:
        print(f"warning: {w}", flush=True)
    return model.to(system.device), cfg, split, system, args.split


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    systems = []

    def system_for(cfg):
        if cfg.system.threads:
            torch.set_num_threads(cfg.system.threads)
        systems.append(setup_system(cfg.system.device, cfg.system.dtype, "off", width=cfg.arch.hidden_size,
                                    malloc=cfg.system.malloc))
        return systems[-1]

    target = Path(args.target)
    ckpt = target / CHECKPOINT if target.is_dir() else target
    try:
        model, cfg, split, system, name = _load(args, ckpt, system_for)
        out = Path(args.out) if args.out else ckpt.parent / "eval" / name
        if out.exists() and not out.is_dir():
            raise TrainError(f"--out {out} is a file, not a folder; choose another --out")
        if (out / "predictions.npz").exists() and not args.force:  # the run's own evaluation included
            raise TrainError(f"{out} already holds predictions; pass --force to replace them, or --out DIR")
        try:
            flags = {k: getattr(args, k) for k in ("samples", "diversity", "select", "noise", "seed")}
            cfg.eval = dataclasses.replace(cfg.eval, mode=args.mode or cfg.eval.mode, threshold=cfg.eval.threshold
                                           if args.threshold is None else args.threshold,
                                           **{k: v for k, v in flags.items() if v is not None})
            check_options(cfg.eval.samples, cfg.eval.diversity, cfg.eval.noise, cfg.eval.select,
                          family_of(split.meta)[0])
        except ValueError as err:
            msg = str(err).replace("eval.mode", "--mode").replace("eval.threshold", "--threshold")
            for k in flags:
                msg = msg.replace(f"eval.{k}", f"--{k}")
            raise TrainError(msg if msg.startswith("--") else f"--{msg}") from None
        n = min(len(split), cfg.eval.max_examples or len(split))
        if system.is_main:
            note = f" (eval.max_examples={cfg.eval.max_examples}; eval.max_examples=0 for all)" if n < len(split) else ""
            print(f"evaluating {cfg.model} on {n} of {len(split)} examples of {split.root}/{split.name}, "
                  f"{cfg.eval.mode} mode{f', threshold {cfg.eval.threshold:g}' if cfg.eval.threshold else ''}{note}"
                  + (f", {cfg.eval.samples} trajectories per puzzle ({cfg.eval.diversity}), select {cfg.eval.select}"
                     if cfg.eval.samples > 1 else ""),
                  flush=True)
        metrics = evaluate_split(model, split, cfg.eval, system, split.root, out_dir=out,
                                 batch_size=cfg.eval.batch_size or cfg.optim.global_batch_size)
        if system.is_main:
            for k, v in metrics.items():
                print(f"{k:>18} {v:.4f}" if k != "count" else f"{k:>18} {int(v)}")
            print(f"wrote {out}", flush=True)
            if warning := collapse_warning(metrics, args.target):
                print(warning, flush=True)
    finally:
        for s in systems:
            teardown_system(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
