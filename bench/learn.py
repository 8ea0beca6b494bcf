"""Time to accuracy: the training seconds and steps a run needed to first reach held-out accuracies.

    python -m bench.learn runs/sudoku-trm-mlp-quick runs/other --targets 0.5,0.9,0.95,0.99
    python -m bench.learn runs/a --json                          # one JSON object per run
    python -m bench.learn --run sudoku trm-mlp optim.optimizer=muon --out runs/muon   # train, then the row

Per-step speed is not what a user feels; the time until the model is good is. Each row reads a
run's `metrics.jsonl`: its evaluation lines (`eval/<metric>` with `time/train_seconds`, the
trainer's clock of optimiser steps only: evaluation, checkpoints and start-up are not in it; the
first step's compilation is) give, per target, the first evaluated step at which the metric was
>= the target and the training seconds at that step. Also: the final value, the evaluation
seconds (`time/eval_seconds`, summed), and s/step measured between the first and the last
training log line (so compilation is left out). The targets are only seen at evaluations: make
them frequent and cheap for a curve, e.g. `eval.interval_steps=100 eval.max_examples=200`.

`--run FAMILY MODEL [key=value ...] --out DIR` trains `python -m train.FAMILY --model MODEL --preset
quick` (or `--preset paper`) with those overrides into DIR (a subprocess, so the trainer's command
line checks them), then prints that run's row. A run that already finished in DIR is only read.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from puzzles.errors import UserError, atomic_write, check_output_file, run_cli

DEFAULT_TARGETS = (0.5, 0.9, 0.95, 0.99)


@dataclass
class Reached:
    target: float
    step: int | None  # None: never reached in this run
    train_seconds: float | None


@dataclass
class LearnRow:
    run: str
    metric: str
    reached: list[Reached]
    final: float | None  # the metric at the last evaluation
    steps: int  # the last step logged
    train_seconds: float
    eval_seconds: float | None  # None: a run logged before evaluation time was recorded
    evaluations: int
    s_per_step: float | None
    command: str = ""
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (step, train s, metric)


def read_metrics(path: Path) -> list[dict]:
    """The JSON lines of a metrics.jsonl (a run folder or the file itself)."""
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{path}: no metrics.jsonl here (give a run folder or its metrics.jsonl)")
    lines = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip():
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                raise UserError(f"{path}:{i}: not a JSON line") from None
    return lines


def learn_row(records: list[dict], targets: Sequence[float], metric: str = "exact_accuracy",
              run: str = "", command: str = "") -> LearnRow:
    """Time to each target from a run's metrics records (see the module docstring)."""
    key = f"eval/{metric}"
    evals = [r for r in records if key in r]
    curve = [(int(r["step"]), float(r.get("time/train_seconds", float("nan"))), float(r[key])) for r in evals]
    reached = []
    for target in targets:
        hit = next(((s, t) for s, t, v in curve if v >= target), None)
        reached.append(Reached(target, hit[0] if hit else None, hit[1] if hit else None))
    train = [r for r in records if "time/train_seconds" in r and not any(k.startswith("eval/") for k in r)]
    s_per_step = None
    if len(train) >= 2 and train[-1]["step"] > train[0]["step"]:
        s_per_step = ((train[-1]["time/train_seconds"] - train[0]["time/train_seconds"])
                      / (train[-1]["step"] - train[0]["step"]))
    timed = [r["time/eval_seconds"] for r in evals if "time/eval_seconds" in r]
    last = records[-1] if records else {}
    return LearnRow(run=run, metric=metric, reached=reached, final=curve[-1][2] if curve else None,
                    steps=int(last.get("step", 0)), train_seconds=float(last.get("time/train_seconds", 0.0)),
                    eval_seconds=sum(timed) if timed else None, evaluations=len(evals),
                    s_per_step=s_per_step, command=command, curve=curve)


def _cell(r: Reached) -> str:
    return "-" if r.step is None else f"{r.step} / {r.train_seconds:.0f}"


def table(rows: list[LearnRow]) -> str:
    """A markdown table: per target 'steps / training seconds' at the first evaluation reaching it."""
    targets = [r.target for r in rows[0].reached] if rows else []
    head = ["run"] + [f"{t:g}: steps / s" for t in targets] + [f"final {rows[0].metric if rows else ''}",
                                                               "steps", "train s", "eval s", "s/step"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.run] + [_cell(r) for r in row.reached] + [
            "-" if row.final is None else f"{row.final:.3f}", str(row.steps), f"{row.train_seconds:.0f}",
            "-" if row.eval_seconds is None else f"{row.eval_seconds:.0f}",
            "-" if row.s_per_step is None else f"{row.s_per_step:.3f}"]
        out.append("| " + " | ".join(cells) + " |")
    commands = [f"- {row.run}: `{row.command}`" for row in rows if row.command]
    return "\n".join(out + ([""] + commands if commands else []))


def parse_targets(text: str) -> list[float]:
    try:
        targets = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--targets {text!r}: expected comma-separated numbers such as 0.5,0.9,0.95,0.99") from None
    if not targets or not all(0.0 < t <= 1.0 for t in targets):
        raise UserError(f"--targets {text!r}: every target must be in (0, 1]")
    return targets


def train_command(family: str, model: str, overrides: Sequence[str], out: Path, preset: str = "quick") -> list[str]:
    """The trainer's own command line for one row (the overrides are checked by it)."""
    return [sys.executable, "-m", f"train.{family}", "--model", model, "--preset", preset, *overrides,
            f"system.run_dir={out}"]


def run_one(family: str, model: str, overrides: Sequence[str], out: Path, preset: str = "quick") -> str:
    """Train into `out` unless a finished run is there; returns the command as a user would type it."""
    cmd = train_command(family, model, overrides, out, preset)
    shown = shlex.join(["python", *cmd[1:]])
    if not (out / "summary.json").exists():
        print(f"training: {shown}", flush=True)
        done = subprocess.run(cmd)
        if done.returncode != 0:
            raise UserError(f"--run: the trainer exited with status {done.returncode} ({shown})")
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.learn", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", help="run folders (or metrics.jsonl files); with --run: FAMILY MODEL "
                                           "[key=value ...]")
    p.add_argument("--targets", default=",".join(f"{t:g}" for t in DEFAULT_TARGETS),
                   help="held-out accuracies to time, comma-separated (default %(default)s)")
    p.add_argument("--metric", default="exact_accuracy", help="eval metric (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    p.add_argument("--write", metavar="FILE", help="also write the JSON rows (a list) to FILE")
    p.add_argument("--force", action="store_true", help="overwrite an existing --write file")
    p.add_argument("--run", action="store_true", help="train FAMILY MODEL [key=value ...] into --out first")
    p.add_argument("--out", help="with --run: the run folder")
    p.add_argument("--preset", default="quick", choices=("quick", "paper"), help="with --run: the preset "
                   "(default %(default)s, also on a machine with a GPU)")
    args = p.parse_intermixed_args(argv)
    targets = parse_targets(args.targets)
    if args.write:  # before any training: a user's file is only replaced when asked
        check_output_file(args.write, args.force, "--write", ours=lambda rows: isinstance(rows, list) and all(
            isinstance(r, dict) and {"run", "metric", "reached"} <= r.keys() for r in rows))
    if args.run:
        if len(args.runs) < 2 or not args.out:
            raise UserError("--run needs FAMILY MODEL [key=value ...] and --out DIR")
        family, model, *overrides = args.runs
        if any(o.startswith("system.run_dir=") for o in overrides):
            raise UserError("--run: give the run folder with --out, not system.run_dir=")
        out = Path(args.out)
        command = run_one(family, model, overrides, out, args.preset)
        rows = [learn_row(read_metrics(out), targets, args.metric, run=str(out), command=command)]
    else:
        if not args.runs:
            raise UserError("give one or more run folders, or --run FAMILY MODEL [key=value ...] --out DIR")
        rows = [learn_row(read_metrics(Path(r)), targets, args.metric, run=r) for r in args.runs]
    empty = [row.run for row in rows if not row.curve]
    if len(empty) == len(rows):
        raise UserError(f"{', '.join(empty)}: no eval/{args.metric} in metrics.jsonl")
    for run in empty:  # a row of dashes, said once
        print(f"note: {run} has no eval/{args.metric} (no evaluation ran yet)", file=sys.stderr)
    if args.write:
        atomic_write(Path(args.write), json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
