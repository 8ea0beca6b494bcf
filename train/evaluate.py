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
Predictions of the first `eval.save_predictions` examples go to `<out>/predictions.npz` for pictures,
with `meta.json` and `metrics.json` beside them.

The command line evaluates a saved run (a run directory or its checkpoint.pt: the run's config,
its EMA weights when it used EMA unless --no-ema, its dataset unless --data) or a bare reference
state dict (keys `inner.*`, `model.inner.*`, `_orig_mod.model.inner.*`; --model and --data are then
required and the architecture is the paper preset's for that model, changed with `arch.key=value`).
Default output: `<run>/eval/<split>`; predictions already there (the trainer's own evaluation
included) are replaced only with --force. `key=value` overrides any config key (eval.batch_size=64, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from models import ModelConfig, build_model, load_reference_state_dict
from models.config import dtype_name
from puzzles.dataset import Split, grid_spec, load_identifiers, load_split
from puzzles.errors import PuzzleError, atomic_write, run_cli

from .checkpoint import ema_shadow, load_checkpoint, use_ema_weights
from .config import MODEL_NAMES, PRESETS, EvalConfig
from .overrides import ConfigError, config_from_dict
from .run import (CHECKPOINT, TrainError, apply_user_overrides, check_dataset_matches, check_family,
                  config_from_checkpoint, data_dir_of, model_config_for)
from .setup import setup_system, teardown_system
from .trajectories import DIVERSITY, RULES, check_options

IGNORE = -100


def family_of(meta: dict) -> tuple[str, dict]:
    """Puzzle family and its geometry ("box", "size"); ("unknown", {}) for data of no known family."""
    try:
        spec = grid_spec(meta)
    except PuzzleError:
        return "unknown", {}
    return spec.pop("family"), spec


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


@torch.inference_mode()
def run_batches(model, split: Split, batch_size: int, device: torch.device, adaptive: bool,
                max_examples: int = 0, keep_steps: int = 0, rank: int = 0, world_size: int = 1,
                threshold: float = 0.0) -> dict:
    """Run every example of `split` to its end; returns per-example numpy arrays (this rank's rows).

    A row finishes at its first halt (adaptive: the model's rule, or sigmoid(q_halt) >= `threshold`)
    or at halt_max_steps (fixed); its prediction is then frozen. The wrapper itself never halts a
    row early here, so rows run on unchanged until the batch is done (rows are independent).
    """
    from train.loader import eval_batches
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
            carry, logits, q_halt, q_continue = model.step(carry, batch, adaptive=False)
            p = logits.argmax(-1).to(preds.dtype)
            wants = model.wants_halt(q_halt, q_continue, threshold) | (k == K)
            halt_at = torch.where((halt_at == K) & wants & (k < K), k, halt_at)
            finishing = ~done & (wants if adaptive else torch.full_like(done, k == K))
            preds = torch.where(finishing[:, None], p, preds)
            q_final = torch.where(finishing, q_halt, q_final)
            steps = torch.where(finishing, k, steps)
            done |= finishing
            if keep_steps:  # rows that finished keep showing their final answer
                step_preds.append(torch.where(done[:, None], preds, p).cpu())
                step_q.append(torch.sigmoid(torch.where(done, q_final, q_halt)).cpu())
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
    S = int(split.meta["seq_len"])
    empty = {"step_preds": (K, 0, S), "step_q": (K, 0), "inputs": (0, S), "labels": (0, S), "preds": (0, S)}
    return {k: np.concatenate(v, axis=1 if k.startswith("step_") else 0) if v else np.zeros(empty.get(k, (0,)))
            for k, v in out.items()}


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
    try:
        check_options(cfg.samples, cfg.diversity, cfg.noise, cfg.select, family)
    except ValueError as err:
        raise TrainError(f"eval.{err}") from None
    if cfg.mode == "continuous" or cfg.samples > 1:
        res = run_continuous(model, split, batch_size, system, cfg.max_examples, cfg.save_predictions, cfg.threshold,
                             sampling=cfg if cfg.samples > 1 else None, family_info=(family, info))
    else:
        res = run_batches(model, split, batch_size, system.device, adaptive=cfg.mode == "adaptive",
                          max_examples=cfg.max_examples, keep_steps=cfg.save_predictions,
                          rank=system.rank, world_size=system.world_size, threshold=cfg.threshold)
    sums = score(res, family, info) | res.pop("sample_sums", {})
    names = sorted(sums)
    if system.distributed:
        t = torch.tensor([sums[k] for k in names], dtype=torch.float64, device=system.device)
        dist.all_reduce(t)
        sums = dict(zip(names, t.cpu().tolist()))
    count = max(sums.pop("count"), 1.0)
    metrics = {k: v / count for k, v in sums.items()} | {"count": count}
    if family == "arc" and split.name == "test":  # test_puzzles.json describes the test split only
        metrics |= _arc_vote(res, split, data_dir, out_dir, system)
    rows = _first_rows(res, cfg.save_predictions, system)  # collective: every rank takes part
    if out_dir is not None and system.is_main:
        write_predictions(out_dir, rows, family, info, data_dir, split.name, metrics)
    return metrics


def run_continuous(model, split: Split, batch_size: int, system, max_examples: int = 0,
                   keep_steps: int = 0, threshold: float = 0.0, sampling: EvalConfig | None = None,
                   family_info: tuple[str, dict] = ("unknown", {})) -> dict:
    """`run_batches`' result computed by the slot engine (train/infer.py): adaptive halting, and a
    halted puzzle's slot refilled at once. Per-step records (for pictures) come from an adaptive
    batch run over the first `keep_steps` examples, which gives the same numbers per puzzle.
    With `sampling` (eval.samples > 1) each puzzle runs eval.samples trajectories in eval.mode
    (train/trajectories.py): the answer is eval.select's, and `sample_sums` holds the exact counts
    of every rule (exact_single, exact_vote, ..., exact_checked apart, exact_any = an oracle) and
    the steps of all trajectories (steps_all, the compute). Pictures show the single pass."""
    from train.loader import IGNORE_LABEL_ID
    from .infer import Engine, SolveResult
    from .trajectories import chosen, rule_hits, sample, select
    n = min(len(split), max_examples) if max_examples else len(split)
    local = batch_size // system.world_size
    rows = np.arange(n)
    rows = rows[(rows % batch_size) // local == system.rank]  # the rows eval_batches gives this rank
    inputs, labels = split.examples(rows)
    ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))[rows]
    labels = np.where(labels == int(split.meta.get("ignore_label_id", 0)), IGNORE_LABEL_ID, labels)
    mode = sampling.mode if sampling is not None else "continuous"
    noise = sampling.noise if sampling is not None and sampling.diversity != "aug" else 0.0
    engine = Engine(model, mode=mode, slots=local, device=system.device, threshold=threshold or None, noise=noise)
    sums = {}
    if sampling is None:
        out = engine.solve(inputs, ids)
    else:
        family, info = family_info
        s = sample(engine, inputs, ids, sampling.samples, sampling.diversity, family, info, sampling.seed,
                   keys=rows)  # seeded by the example's index in the split: the same on any number of ranks
        checker = (lambda x, p: _valid_solutions(family, info, x, p)) if family in ("sudoku", "maze") else None
        hits = rule_hits(s, labels, IGNORE_LABEL_ID, inputs, checker)
        sums = {f"exact_{k.replace('-', '_')}": float(v.sum()) for k, v in hits.items()}
        sums["steps_all"] = float(s.steps.sum())
        out = chosen(s, select(s, sampling.select, inputs, checker))
        out = SolveResult(out.preds[:, 0], out.steps[:, 0], out.q_halt_prob[:, 0], out.q_halt_logit[:, 0])
    res = {"index": rows.astype(np.int64), "inputs": inputs, "labels": labels,
           "preds": out.preds, "q_halt": out.q_halt_logit, "steps": out.steps, "halt_steps": out.steps,
           "puzzle_identifiers": ids, "sample_sums": sums}
    first = run_batches(model, split, batch_size, system.device, adaptive=True,
                        max_examples=max(1, min(n, keep_steps)), keep_steps=keep_steps,
                        rank=system.rank, world_size=system.world_size, threshold=threshold)
    res["step_preds"], res["step_q"] = first["step_preds"], first["step_q"]
    return res


def _first_rows(res: dict, n: int, system) -> dict:
    """The first `n` examples (by index) of the whole split, gathered from every rank."""
    part = {k: v[:, :n] if k.startswith("step_") else v[:n] for k, v in res.items()}
    if not system.distributed:
        return part
    parts = [None] * system.world_size
    dist.all_gather_object(parts, part)  # each rank's first n rows hold the global first n
    merged = {k: np.concatenate([p[k] for p in parts], axis=1 if k.startswith("step_") else 0) for k in part}
    order = np.argsort(merged["index"], kind="stable")[:n]
    return {k: v[:, order] if k.startswith("step_") else v[order] for k, v in merged.items()}


def _arc_vote(res: dict, split: Split, data_dir: Path, out_dir: Path | None, system) -> dict[str, float]:
    from puzzles.arc import ArcVoter
    path = Path(data_dir) / "test_puzzles.json"
    if not path.exists():
        return {}
    voter = ArcVoter(json.loads(path.read_text()), load_identifiers(data_dir))
    # The raw predictions: the voter crops each one itself (masking with the labels would leak
    # the true answer's shape into the prediction).
    voter.add(res["puzzle_identifiers"], res["inputs"], res["preds"],
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


def write_predictions(out_dir: Path, res: dict, family: str, info: dict, data_dir: Path,
                      split: str, metrics: dict) -> None:
    """predictions.npz (dataset token space, labels 0 = ignore), meta.json and metrics.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "predictions.npz", lambda f: np.savez_compressed(
                        f, inputs=res["inputs"], labels=np.where(res["labels"] == IGNORE, 0, res["labels"]),
                        preds=res["preds"], step_preds=res["step_preds"], q_halt=res["step_q"].astype(np.float32),
                        steps=res["halt_steps"].astype(np.int32), steps_run=res["steps"].astype(np.int32),
                        puzzle_identifiers=res["puzzle_identifiers"].astype(np.int32), index=res["index"]))
    _atomic_json(out_dir / "meta.json", {"family": family, **info, "dataset": str(Path(data_dir).resolve()),
                                         "split": split, "metrics": metrics})
    _atomic_json(out_dir / "metrics.json", metrics)


def _atomic_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def write_summary(path: Path, summary: dict) -> None:
    _atomic_json(Path(path), summary)


# --- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT", help="run directory, its checkpoint.pt, or a reference state dict")
    p.add_argument("--data", help="dataset directory (default: the run's own); must fit the model")
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
    p.add_argument("--out", help="output directory (default RUN/eval/SPLIT)")
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
    """(model, cfg, split, system) for a trainer checkpoint or a reference state dict."""
    payload = load_checkpoint(ckpt)
    if "config" in payload and "model" in payload:  # written by train.loop
        stored = config_from_checkpoint(payload)
        if args.model and args.model != stored.model:
            raise TrainError(f"{ckpt} holds a {stored.model} model, not {args.model}")
        cfg = apply_user_overrides(stored, args.overrides)
        data_dir = Path(args.data) if args.data else data_dir_of(cfg)
        if not args.data and not data_dir.is_dir():
            raise TrainError(f"the run's dataset {data_dir} does not exist here (paths are relative to where "
                             f"it was trained); pass --data DIR")
        split = load_split(data_dir, args.split)
        check_family(stored.data.family, split, payload.get("grid"), what=f"the model in {ckpt}")
        system = system_for(cfg)
        try:
            model_cfg = config_from_dict(ModelConfig, payload["model_config"])
        except (KeyError, ConfigError):  # older checkpoints: derive it from the run's dataset instead
            model_cfg = model_config_for(stored.arch, split, system.dtype)
        changed = {f.name: getattr(cfg.arch, f.name) for f in dataclasses.fields(ModelConfig)
                   if getattr(cfg.arch, f.name) != getattr(stored.arch, f.name)}  # arch.* overrides
        try:
            model_cfg = dataclasses.replace(model_cfg, **changed,
                                            forward_dtype=dtype_name(system.dtype))
        except ValueError as err:
            raise TrainError(f"arch overrides do not fit the checkpoint's model: {err}") from None
        check_dataset_matches(model_cfg, split)
        model = build_model(cfg.model, model_cfg)
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as err:  # e.g. an arch override that changes a weight's shape
            lines = [x.strip() for x in str(err).splitlines() if x.strip()]
            raise TrainError(f"{ckpt}: weights do not fit the model ({lines[min(1, len(lines) - 1)][:300]})") from None
        if cfg.optim.ema and ema_shadow(payload) and not args.no_ema:
            use_ema_weights(model, payload)
            print("weights: EMA (--no-ema for the raw ones)", flush=True)
        return model.to(system.device), cfg, split, system

    if not _is_reference(payload):
        raise TrainError(f"{ckpt} is neither a checkpoint of this trainer nor a reference state dict")
    if not args.model or not args.data:
        raise TrainError(f"{ckpt} holds bare reference weights: pass --model NAME and --data DIR (the "
                         f"architecture is the paper preset's, changed with arch.key=value)")
    split = load_split(args.data, args.split)
    family = args.family or family_of(split.meta)[0]
    if family not in ("sudoku", "maze", "arc"):
        raise TrainError(f"dataset {args.data} does not say its puzzle family; pass --family sudoku|maze|arc")
    cfg = apply_user_overrides(PRESETS["paper"](family, args.model), args.overrides)
    system = system_for(cfg)
    model = build_model(args.model, model_config_for(cfg.arch, split, system.dtype))
    try:
        warnings = load_reference_state_dict(model, payload)
    except ValueError as err:
        msg = str(err) if len(str(err)) < 400 else str(err)[:400] + "..."
        raise TrainError(f"{ckpt}: {msg} (architecture: paper preset for {family}/{args.model} with "
                         f"{' '.join(args.overrides) or 'no overrides'})") from None
    for w in warnings:
        print(f"warning: {w}", flush=True)
    return model.to(system.device), cfg, split, system


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    systems = []

    def system_for(cfg):
        if cfg.system.threads:
            torch.set_num_threads(cfg.system.threads)
        systems.append(setup_system(cfg.system.device, cfg.system.dtype, "off", width=cfg.arch.hidden_size))
        return systems[-1]

    target = Path(args.target)
    ckpt = target / CHECKPOINT if target.is_dir() else target
    out = Path(args.out) if args.out else ckpt.parent / "eval" / args.split
    try:
        model, cfg, split, system = _load(args, ckpt, system_for)
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
    finally:
        for s in systems:
            teardown_system(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
