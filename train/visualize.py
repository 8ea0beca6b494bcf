"""Write the HTML report of an evaluation run (see train.report) and print where it went.

    python -m train.visualize RUN_OR_CHECKPOINT [--split test] [--n 32] [--out DIR] [--force]

RUN_OR_CHECKPOINT is a run directory, or a checkpoint file inside one (its run directory is used).
The report lands in RUN/eval/SPLIT/report/ unless --out says otherwise; open its index.html from
disk in any browser (no server needed).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from puzzles.errors import UserError, run_cli
from train.report import write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.visualize", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run directory or checkpoint file")
    parser.add_argument("--split", default="test", help="evaluated split (RUN/eval/SPLIT)")
    parser.add_argument("--n", type=int, default=32, help="puzzles to show (spread over the split)")
    parser.add_argument("--out", default=None, help="output directory (default RUN/eval/SPLIT/report)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    print(write_report(args.run, split=args.split, n=args.n, out=args.out, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
