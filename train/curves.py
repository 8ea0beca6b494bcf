"""Training curves from a run's metrics.jsonl: loss, exact accuracy, halting steps, learning rate.

    python -m train.curves runs/my-run [--out curves.png]
    python -m train.curves runs/a runs/b runs/c --out compare.png   # held-out exact vs training seconds
    python -m train.curves runs/a runs/b --out arc.png --metric eval/train_exact_accuracy,eval/pass@2

Each line of metrics.jsonl is a JSON object with at least "step". Keys are grouped into four
panels by name (train/ and eval/ series share a panel); a panel with no data says so.
Drawn with matplotlib's Agg backend, so no display is needed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)

from puzzles.errors import UserError, atomic_write, run_cli  # noqa: E402

# panel title -> predicate on a metric key (after the "train/" / "eval/" prefix)
PANELS = {
    "loss": lambda k: k.endswith("loss"),
    "exact accuracy": lambda k: k == "exact_accuracy",
    "mean halting steps": lambda k: k in ("steps", "halt_steps"),
    "learning rate": lambda k: k == "lr",
}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.jsonl file; a bad line raises UserError naming the file and line."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            raise UserError(f"{path}:{lineno}: expected a JSON object with a numeric 'step'")
        rows.append(row)
    return rows


def series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """metric key -> (steps, values), keeping only finite numbers."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                xs, ys = out.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    return out


def plot_curves(rows: list[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Write a 2x2 PNG of the four panels; returns its path (written atomically)."""
    data = series(rows)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=90)
    for ax, (name, wanted) in zip(axes.ravel(), PANELS.items()):
        keys = sorted(k for k in data if wanted(k.split("/")[-1]))
        for key in keys:
            xs, ys = data[key]
            ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, markersize=3, label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=7)
            if name == "loss" and all(v > 0 for k in keys for v in data[k][1]):
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#888")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_comparison(runs: dict[str, list[dict]], path: str | os.PathLike, title: str = "",
                    metrics: Sequence[str] = ("eval/exact_accuracy",)) -> Path:
    """One panel per metric, one line per run: the metric against training seconds (evaluation time
    is not in `time/train_seconds`, so runs with different evaluation schedules compare fairly)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics) ** 0.8, 4.5), dpi=90, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, rows in runs.items():
            points = [(r["time/train_seconds"], r[metric]) for r in rows
                      if isinstance(r.get("time/train_seconds"), (int, float)) and
                      isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool)]
            if not points:
                raise UserError(f"{label}: no rows with time/train_seconds and {metric} in its metrics.jsonl")
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)
        ax.set_xlabel("training seconds (evaluations excluded)")
        ax.set_ylabel(metric if metric != "eval/exact_accuracy" else "held-out exact accuracy")
        if "accuracy" in metric or "pass@" in metric:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    """Write the figure as PNG atomically and free it."""
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.curves", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="run",
                        help="run directory holding metrics.jsonl (or the file itself); several runs "
                             "draw one comparison plot of held-out exact accuracy vs training seconds")
    parser.add_argument("--out", default=None, help="PNG to write (default RUN/curves.png; needed for several runs)")
    parser.add_argument("--labels", default="", help="comma-separated legend labels, one per run (default: folder names)")
    parser.add_argument("--title", default="", help="plot title")
    parser.add_argument("--metric", default="eval/exact_accuracy",
                        help="several runs: comma-separated metrics.jsonl keys, one panel each, against "
                             "training seconds (default eval/exact_accuracy; ARC: eval/train_exact_accuracy,"
                             "eval/changed_cell_accuracy,eval/pass@2)")
    parser.add_argument("--force", action="store_true", help="replace an existing PNG")
    args = parser.parse_args(argv)
    files = []
    for run in map(Path, args.runs):
        metrics = run if run.is_file() else run / "metrics.jsonl"
        if not metrics.is_file():
            raise UserError(f"{metrics}: no such metrics file")
        files.append(metrics)
    labels = args.labels.split(",") if args.labels else [m.parent.name for m in files]
    if len(labels) != len(files):
        raise UserError(f"--labels has {len(labels)} names for {len(files)} runs")
    if len(files) > 1 and not args.out:
        raise UserError("several runs need --out for the comparison PNG")
    out = Path(args.out) if args.out else files[0].parent / "curves.png"
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists (pass --force to replace it)")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: {out.parent} is not a directory")
    if len(files) == 1:
        print(plot_curves(read_metrics(files[0]), out, title=args.title or files[0].parent.name))
    else:
        metrics = [m.strip() for m in args.metric.split(",") if m.strip()]
        if not metrics:
            raise UserError("--metric names no metric")
        print(plot_comparison({lab: read_metrics(m) for lab, m in zip(labels, files)}, out, title=args.title,
                              metrics=metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
