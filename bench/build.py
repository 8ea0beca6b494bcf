"""Dataset build benchmark: wall seconds, peak RSS and bytes on disk of each `puzzles.build` run.

    python -m bench.build --quick                      # small builds
    python -m bench.build --only arc arc-materialize   # ARC-AGI-1 train+eval + ConceptARC x 1000
    python -m bench.build                              # everything at paper size (Sudoku 9x9 takes a while)

Each build runs as its own child process, so its peak RSS (`wait4` rusage ru_maxrss) is its own.
The ARC builds add ConceptARC from Kaggle-style files (`--concept DIR`, default the copy bundled in
puzzles/data/arc). After a paper-sized ARC build the reference builder's figures for the same
set (fixture README; always materialised) are printed beside ours; measured figures are in the README.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from puzzles.build_options import CONCEPT_ARC as DEFAULT_CONCEPT
from puzzles.dataset import human_bytes
from puzzles.dataset import disk_bytes
from puzzles.errors import UserError, atomic_write, run_cli

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ARC = {"seconds": 270, "peak_rss": 14.8 * 2**30, "bytes": 7.27e9}


def builds(quick: bool, concept: Path) -> dict[str, list[str]]:
    """name -> arguments of `python -m puzzles.build` (without --out)."""
    arc = ["arc", "--concept", str(concept)]
    if quick:
        return {"sudoku": ["sudoku", "--preset", "cpu"], "maze": ["maze", "--preset", "cpu"],
                "arc": arc + ["--aug", "8"], "arc-materialize": arc + ["--aug", "8", "--materialize"]}
    return {"sudoku": ["sudoku"], "maze": ["maze"], "arc": arc, "arc-materialize": arc + ["--materialize"]}


def run_one(args: list[str], out: Path) -> dict:
    """Run one build in a child process; its wall time, peak RSS and output size."""
    cmd = [sys.executable, "-m", "puzzles.build", *args, "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se, text=True)
        # wait4 (not Popen.wait) so we get this child's own rusage: ru_maxrss is its peak RSS in KiB
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        so.seek(0), se.seek(0)
        stdout, stderr = so.read(), se.read()
    if code != 0:
        raise UserError(f"build {' '.join(args)} failed (exit {code}): {stderr.strip().splitlines()[-1:]}")
    return {"command": " ".join(["python -m puzzles.build", *args]), "seconds": seconds,
            "peak_rss": usage.ru_maxrss * 1024, "bytes": disk_bytes(out),
            "summary": stdout.strip().splitlines()[-1]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.build", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small presets instead of the paper-sized builds")
    p.add_argument("--only", nargs="+", choices=["sudoku", "maze", "arc", "arc-materialize"],
                   help="run only these builds (default all)")
    p.add_argument("--concept", type=Path, default=DEFAULT_CONCEPT,
                   help=f"folder with arc-agi_concept_*.json for the ARC builds (default {DEFAULT_CONCEPT})")
    p.add_argument("--workdir", type=Path, help="where to write the datasets (default a temp dir, deleted)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    todo = builds(args.quick, args.concept)
    names = args.only or list(todo)
    if any(n.startswith("arc") for n in names) and not (args.concept / "arc-agi_concept_challenges.json").is_file():
        raise UserError(f"--concept {args.concept}: arc-agi_concept_challenges.json not found")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-build-"))
    results = {}
    try:
        for name in names:
            out = work / name
            if out.exists():
                shutil.rmtree(out)
            r = results[name] = run_one(todo[name], out)
            print(f"{name:16s} {r['seconds']:8.1f} s  peak RSS {r['peak_rss'] / 2**30:6.2f} GiB  "
                  f"disk {human_bytes(r['bytes']):>10s}  | {r['summary']}", flush=True)
            if args.workdir is None:
                shutil.rmtree(out)  # keep the disk free for the next build
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if "arc" in results and not args.quick:
        ref = REFERENCE_ARC
        print(f"reference ARC-AGI-1 + ConceptARC x 1000: {ref['seconds']} s, peak RSS "
              f"{ref['peak_rss'] / 2**30:.1f} GiB, disk {human_bytes(ref['bytes'])}")
    if args.json:
        atomic_write(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
