"""Inference speed: fixed vs adaptive vs continuous halting on a held-out split, and accuracy vs threshold.

    python -m bench.inference                                    # runs/sudoku-trm-mlp-quick + its dataset
    python -m bench.inference --checkpoint runs/x/checkpoint.pt --data data/sudoku-quick --slots 256

For each mode (train/infer.py) it solves the whole split with the same slot count and reports
puzzles/s (best of --repeats timed runs, after one warm-up), mean supervision steps per puzzle,
batched step calls, exact accuracy (every labelled cell right) and the share of answers that obey
the puzzle's rules. Then `continuous` once per halting threshold (sigmoid(q_halt) >= t) and with the
model's own rule. Then test-time sampling (train/trajectories.py): for each --diversity source and
K in --samples, K trajectories per puzzle in continuous mode, one timed run each (or, with --derive,
one run of the largest K scored on its prefixes): puzzles/s, steps
per puzzle (all trajectories: the compute), exact accuracy of the single pass and of each rule,
the share with any right trajectory (an oracle, not a rule) and, apart, `checked` (which uses the
puzzle's rules). `--samples ''` skips it. Timings on a shared CPU are noisy: the modes are
interleaved, best run kept; `--threads 1` avoids thread oversubscription when other jobs load the cores.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from puzzles.check import has_checker, valid_solution
from puzzles.dataset import load_split
from puzzles.errors import UserError, atomic_write, check_output_file, run_cli
from train.data import family_of
from train.infer import MODES, Engine, SolveResult
from train.model_io import load_for_inference
from train.sampling import DIVERSITY, NOISE, PURE_RULES, check_options
from train.setup import cpu_description
from train.trajectories import rule_hits, sample


def load_examples(data: Path, split: str, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(inputs, labels (0 = ignore), puzzle identifiers per example, dataset.json) of a split."""
    s = load_split(data, split)
    rows = np.arange(len(s) if not limit else min(limit, len(s)))
    inputs, labels = s.examples(rows)
    ids = np.repeat(s.puzzle_identifiers, np.diff(s.puzzle_indices))[rows]
    return inputs, labels, ids, s.meta


def exact_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    mask = labels != 0
    return float(((preds == labels) | ~mask).all(-1)[mask.any(-1)].mean()) if len(labels) else 0.0


def timed(engine: Engine, inputs: np.ndarray, ids: np.ndarray) -> tuple[float, SolveResult, int]:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    before = engine.calls
    start = time.perf_counter()
    result = engine.solve(inputs, ids)  # returns numpy arrays: the device work is done
    return time.perf_counter() - start, result, engine.calls - before


def sampling_table(model, inputs: np.ndarray, labels: np.ndarray, ids: np.ndarray, family: str, info: dict,
                   ks: list[int], sources: list[str], args) -> list[dict]:
    """Accuracy and speed of K trajectories per puzzle, per diversity source and K (one timed run each)."""
    checker = partial(valid_solution, family, info) if has_checker(family, info) else None
    rules = [*PURE_RULES, *(["checked"] if checker else [])]
    print(f"\n| diversity | K | puzzles/s | steps/puzzle | single | {' | '.join(rules)} | any (oracle) |\n"
          f"|{'---|' * (6 + len(rules))}", flush=True)
    out = []
    for d in sources:
        engine = Engine(model, mode="continuous", slots=args.slots, device=next(model.parameters()).device,
                        compile=args.compile, noise=args.noise if d != "aug" else 0.0)
        sample(engine, inputs[:8], ids[:8], max(ks), d, family, info, args.seed)  # warm-up
        largest = None
        for k in sorted(ks, reverse=args.derive):
            if largest is None or not args.derive:  # --derive: one run of the largest K, then its prefixes
                start = time.perf_counter()
                largest = sample(engine, inputs, ids, k, d, family, info, args.seed)
                speed = len(inputs) / (time.perf_counter() - start)
            else:
                speed = float("nan")
            s = largest.first(k)
            hits = rule_hits(s, labels, 0, inputs, checker)
            row = {"diversity": d, "samples": k, "puzzles_per_s": speed,
                   "steps_per_puzzle": float(s.steps.sum(1).mean())} | {
                       f"exact_{r.replace('-', '_')}": float(v.mean()) for r, v in hits.items()}
            out.append(row)
            cells = [f"{100 * row['exact_' + r.replace('-', '_')]:.1f}%" for r in ("single", *rules, "any")]
            print(f"| {d} | {k} | {'-' if math.isnan(speed) else f'{speed:.1f}'} | {row['steps_per_puzzle']:.2f} | "
                  + " | ".join(cells) + " |", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="runs/sudoku-trm-mlp-quick/checkpoint.pt")
    p.add_argument("--data", help="dataset directory (default: the one the checkpoint was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument("--slots", type=int, default=128)
    p.add_argument("--max-examples", type=int, default=0, help="> 0: only the first N examples")
    p.add_argument("--thresholds", default="0.5,0.7,0.9,0.99")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode (best kept)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="compute dtype (auto: bf16 only where it measures faster than float32 here)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-ema", action="store_true", help="raw weights of a run trained with EMA (default: EMA, as evaluated)")
    p.add_argument("--threads", type=int, default=0, help="> 0 sets torch's CPU threads")
    p.add_argument("--samples", default="1,2,4,8,16", help="K values of the test-time sampling table ('' skips it)")
    p.add_argument("--diversity", default=",".join(DIVERSITY), help="diversity sources to sweep (aug,noise,both)")
    p.add_argument("--noise", type=float, default=NOISE, help=f"latent noise scale for noise/both (default {NOISE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentations and the noise")
    p.add_argument("--derive", action="store_true",
                   help="sampling table: run only the largest K and score smaller K on its first k trajectories "
                        "(the same answers a K=k run gives; puzzles/s then only for the largest K)")
    p.add_argument("--skip-modes", action="store_true", help="only the test-time sampling table")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    args = p.parse_args(argv)
    if args.json:  # before the timed runs: a user's file is only replaced when asked
        check_output_file(args.json, args.force, "--json", ours=lambda f: isinstance(f, dict) and {"checkpoint", "modes"} <= f.keys())
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t]
    except ValueError:
        raise UserError(f"--thresholds must be comma-separated numbers, got {args.thresholds!r}") from None
    try:
        ks = [int(k) for k in args.samples.split(",") if k]
    except ValueError:
        raise UserError(f"--samples must be comma-separated integers, got {args.samples!r}") from None
    sources = [d for d in args.diversity.split(",") if d]

    run, system = load_for_inference(args.checkpoint, ema=False if args.no_ema else None,
                                     device=args.device, dtype=args.dtype)
    model, device = run.model, system.device
    cfg = run.payload.get("config") or {}
    data = Path(args.data or (cfg.get("data") or {}).get("path")
                or f"data/{(cfg.get('data') or {}).get('family')}-{cfg.get('preset', 'quick')}")
    inputs, labels, ids, meta = load_examples(data, args.split, args.max_examples)
    mc = model.config
    if int(meta["seq_len"]) != mc.seq_len or int(meta["vocab_size"]) != mc.vocab_size:
        raise UserError(f"dataset {data} (seq_len {meta['seq_len']}, vocab {meta['vocab_size']}) does not fit "
                        f"the model (seq_len {mc.seq_len}, vocab {mc.vocab_size})")
    family, info = family_of(meta)  # the dataset's family and geometry, as the evaluator reads them
    checkable = has_checker(family, info)
    try:
        for k in ks:
            for d in sources:
                check_options(k, d, args.noise, "vote", family if checkable else f"{family} (no checker)")
    except ValueError as err:
        raise UserError(f"--{err}") from None

    def valid_rate(preds: np.ndarray) -> float:
        return float(valid_solution(family, info, inputs, preds).mean()) if checkable else float("nan")

    print("\n".join(line for line in system.lines if not line.startswith("compile")), flush=True)
    print(f"{args.checkpoint}: {run.name} ({mc.forward_dtype} compute, halt_max_steps {mc.halt_max_steps}, "
          f"rule {mc.halt_rule}) on {data}/{args.split}: {len(inputs)} puzzles, {args.slots} slots, {device}, "
          f"{torch.get_num_threads()} threads, compile {'on' if args.compile else 'off'}", flush=True)
    rows, table = [], []
    if not args.skip_modes:
        engines = {m: Engine(model, mode=m, slots=args.slots, device=device, compile=args.compile) for m in MODES}
        for engine in engines.values():  # warm-up (compilation, allocator, caches)
            engine.solve(inputs[: args.slots], ids[: args.slots])
        best: dict[str, tuple[float, SolveResult, int]] = {}
        for _ in range(max(1, args.repeats)):
            for mode, engine in engines.items():
                run = timed(engine, inputs, ids)
                if mode not in best or run[0] < best[mode][0]:
                    best[mode] = run

        rows = []
        print("\n| mode | puzzles/s | speed-up | mean steps | step calls | exact acc | valid |\n|---|---|---|---|---|---|---|")
        for mode, (seconds, result, calls) in best.items():
            row = {"mode": mode, "puzzles_per_s": len(inputs) / seconds, "mean_steps": float(result.steps.mean()),
                   "step_calls": calls, "exact_accuracy": exact_accuracy(result.preds, labels),
                   "valid": valid_rate(result.preds)}
            row["speedup"] = row["puzzles_per_s"] / (len(inputs) / best["fixed"][0])
            rows.append(row)
            print(f"| {mode} | {row['puzzles_per_s']:.1f} | {row['speedup']:.2f}x | {row['mean_steps']:.2f} | {calls} | "
                  f"{100 * row['exact_accuracy']:.2f}% | {100 * row['valid']:.2f}% |", flush=True)

        table = []
        print("\n| halting (continuous) | puzzles/s | mean steps | exact acc | valid |\n|---|---|---|---|---|")
        for t in [None, *thresholds]:
            engine = engines["continuous"] if t is None else Engine(
                model, mode="continuous", slots=args.slots, threshold=t, device=device, compile=args.compile)
            seconds, result, _ = timed(engine, inputs, ids)
            name = f"model rule ({mc.halt_rule})" if t is None else f"sigmoid(q_halt) >= {t:g}"
            row = {"halting": name, "threshold": t, "puzzles_per_s": len(inputs) / seconds,
                   "mean_steps": float(result.steps.mean()), "exact_accuracy": exact_accuracy(result.preds, labels),
                   "valid": valid_rate(result.preds)}
            table.append(row)
            print(f"| {name} | {row['puzzles_per_s']:.1f} | {row['mean_steps']:.2f} | "
                  f"{100 * row['exact_accuracy']:.2f}% | {100 * row['valid']:.2f}% |", flush=True)
    sampling = sampling_table(model, inputs, labels, ids, family, info, ks, sources, args) if ks else []
    if args.json:
        out = Path(args.json)
        atomic_write(out, json.dumps({"checkpoint": args.checkpoint, "data": str(data), "split": args.split,
                                   "puzzles": len(inputs), "slots": args.slots, "device": str(device),
                                   "dtype": str(mc.forward_dtype), "cpu": cpu_description(),
                                   "modes": rows, "thresholds": table, "noise": args.noise,
                                   "sampling": sampling}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
