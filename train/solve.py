"""Solve puzzles from a file with a trained checkpoint, halting each puzzle when the model is done.

    python -m train.solve runs/sudoku-trm-mlp-quick/checkpoint.pt puzzles.txt
    python -m train.solve runs/maze-trm-quick/checkpoint.pt maze-hard.csv --mode continuous --slots 256

Input: for a Sudoku model, one puzzle per line (n*n cells, '.' or '0' blank, side n from the
model; blank lines and '#' comments skipped) or a Sudoku-Extreme CSV (`source,question,answer,
rating`); for a maze model, a Maze-Hard CSV. Output: one line per input line, so line k of the
output always answers line k of the input: the answer (Sudoku digits, or the maze grid with its
path as `o`; '?' marks a cell the model left as padding), `error: <reason>` for a line that is
not a puzzle, and blank lines, `#` comments and the CSV header copied as they are. Then a summary
on stderr: puzzles/s, mean steps, exact accuracy when the file has answers, the share of answers
that satisfy the puzzle's own rules, and the bad lines. The engine is `train.infer` (modes
explained there). An ARC checkpoint reads a Kaggle challenges JSON file instead and writes a folder
(submission.json, summary.json): train/solve_arc.py.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.config import dtype_name
from puzzles import maze, sudoku
from puzzles.check import valid_solution
from puzzles.errors import CSV_HEADER, PuzzleError, UserError, atomic_write, run_cli, text_lines

from .checkpoint import load_checkpoint
from .infer import MODES, Engine, SolveResult
from .model_io import load_for_inference
from .run import CHECKPOINT
from .sampling import DIVERSITY, NOISE, RULES, check_options
from .solve_arc import add_arguments, arc_options_given, checkpoint_family, solve_tasks
from .trajectories import sample, select



# --- reading puzzles ---------------------------------------------------------------------------

def _kind(text: str) -> str | None:
    """What a cell string looks like ('9x9 sudoku', '30x30 maze'), to name a family mismatch."""
    side = math.isqrt(len(text))
    if not text or side * side != len(text):
        return None
    if set(text) <= set(maze.CHARS):
        return f"{side}x{side} maze"
    if set(text.upper()) <= set(sudoku.CHARS + "0"):
        return f"{side}x{side} sudoku"
    return None


def _sudoku_tokens(cells: str, n: int) -> np.ndarray:
    if len(cells) != n * n:
        raise ValueError(f"expected {n * n} cells for a {n}x{n} sudoku, got {len(cells)}")
    values = [0 if ch == "0" else sudoku.CHARS.find(ch.upper()) for ch in cells]
    bad = next((ch for ch, v in zip(cells, values) if not 0 <= v <= n), None)
    if bad is not None:
        raise ValueError(f"invalid character {bad!r} in a {n}x{n} sudoku (cells: '.', '0', {sudoku.CHARS[1:n + 1]})")
    return np.array(values, dtype=np.int32) + 1


def _maze_tokens(cells: str, n: int) -> np.ndarray:
    grid = maze.encode(cells)  # ValueError on a bad character or a non-square string
    if grid.shape[0] != n:
        raise ValueError(f"a {grid.shape[0]}x{grid.shape[0]} maze, but the model solves {n}x{n} mazes")
    return grid.reshape(-1).astype(np.int32)


def read_puzzles(path: Path, family: str, n: int):
    """(puzzles [(line, inputs, labels or None)], errors [(line, message)], kinds seen on bad lines,
    copied {line: text} for the lines that are neither: blank, comments, the CSV header)."""
    lines = "".join(text_lines(path)).splitlines()
    first = next((line for line in lines if line.strip()), "")
    is_csv = [h.strip() for h in first.split(",")[:4]] == CSV_HEADER
    if family == "maze" and first and not is_csv:
        kind = _kind(first.split()[0])
        if kind and kind.endswith("sudoku"):
            raise PuzzleError(f"{path} holds {kind} puzzles but the checkpoint is a {n}x{n} maze model")
        raise PuzzleError(f"{path}:1: a maze model reads a Maze-Hard CSV with the header "
                          f"{','.join(CSV_HEADER)}; got {first[:40]!r}")
    tokens = _maze_tokens if family == "maze" else _sudoku_tokens
    puzzles, errors, kinds, copied = [], [], set(), {}
    header_seen = False
    for lineno, line in enumerate(lines, 1):
        if is_csv:
            if not line.strip() or not header_seen:
                header_seen = header_seen or bool(line.strip())
                copied[lineno] = line
                continue
            fields = next(csv.reader([line]))
            if len(fields) != 4:
                errors.append((lineno, f"expected 4 columns (source,question,answer,rating), got {len(fields)}"))
                continue
            cells, answer = fields[1], fields[2]
        else:
            text = line.strip()
            if not text or text.startswith("#"):
                copied[lineno] = line
                continue
            cells, answer = text.split()[0], None
        try:
            x = tokens(cells, n)
            y = tokens(answer, n) if answer is not None else None
        except ValueError as err:
            errors.append((lineno, str(err)))
            kinds.add(_kind(cells))
            continue
        puzzles.append((lineno, x, y))
    kinds.discard(None)
    return puzzles, errors, kinds, copied


# --- answers -----------------------------------------------------------------------------------

def answer_text(family: str, tokens: np.ndarray) -> str:
    chars = "?" + (maze.CHARS if family == "maze" else sudoku.CHARS)  # token t -> chars[t]; 0 = padding
    return "".join(chars[t] if 0 <= t < len(chars) else "?" for t in tokens.tolist())


def grid_info(family: str, n: int, grid: dict | None) -> dict | None:
    """The geometry `puzzles.check.valid_solution` reads for the model's n x n puzzles: the grid its
    dataset had (a checkpoint's "grid"), else the box rule for the side; None when there is none."""
    if grid and grid.get("family") == family:
        return {k: v for k, v in grid.items() if k != "family"}
    try:
        return {"box": sudoku.box_of(n)} if family == "sudoku" else {"size": n}
    except ValueError:
        return None


# --- command line ------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.solve", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 all puzzles solved (right or wrong); 1 some input lines (ARC: tasks) "
               "were not puzzles (each reported on stderr; the others are still solved); 2 unusable "
               "checkpoint, file or option (e.g. puzzles of another family or size than the model's).")
    p.add_argument("checkpoint", help="a training checkpoint (runs/<name>/checkpoint.pt)")
    p.add_argument("file", help="puzzles: Sudoku lines or Sudoku-Extreme CSV; Maze-Hard CSV for maze models; "
                                "a Kaggle challenges JSON file for ARC models")
    p.add_argument("--mode", choices=MODES, default="continuous",
                   help="continuous (default): halt per puzzle, refill slots; adaptive: halt per puzzle, "
                        "whole batches; fixed: every puzzle runs max-steps (the reference)")
    p.add_argument("--slots", type=int, default=128, help="puzzles in flight at once (default 128)")
    p.add_argument("--threshold", type=float, default=None,
                   help="halt when sigmoid(q_halt) >= P instead of the model's own rule")
    p.add_argument("--max-steps", type=int, default=None,
                   help="supervision steps at most (default: the model's halt_max_steps)")
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="trajectories per puzzle; one answer is chosen by --select (default 1: one pass)")
    p.add_argument("--diversity", choices=DIVERSITY, default="aug",
                   help="how trajectories differ: aug (a random symmetry of the puzzle, answer mapped back), "
                        "noise (Gaussian noise on the latent every step), both (default aug)")
    p.add_argument("--select", choices=RULES, default="vote",
                   help="vote (most frequent answer), confidence (highest halting probability), first-halt "
                        "(fewest steps), checked (prefer answers that obey the puzzle's rules) (default vote)")
    p.add_argument("--noise", type=float, default=NOISE, help=f"noise scale for --diversity noise|both (default {NOISE})")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentations and noise (default 0)")
    p.add_argument("--out", help="write the answers here instead of stdout (ARC: the output folder, default "
                                 "FILE's name + '-answers' beside it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file (ARC: an earlier output folder)")
    p.add_argument("--no-ema", action="store_true",
                   help="use the raw weights of a run trained with EMA (default: the EMA weights its trainer evaluated)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="compute dtype; auto (default): bf16 only where it measures faster than float32 here")
    p.add_argument("--compile", action="store_true", help="torch.compile the per-step function")
    p.add_argument("--threads", type=int, default=0,
                   help="> 0 sets torch's CPU threads (1 is often fastest on a busy machine)")
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.slots < 1:
        raise UserError(f"--slots must be positive, got {args.slots}")
    if args.max_steps is not None and args.max_steps < 1:
        raise UserError(f"--max-steps must be positive, got {args.max_steps}")
    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise UserError(f"--threshold must be a probability in (0, 1], got {args.threshold}")
    if args.threshold is not None and args.mode == "fixed":
        raise UserError("--threshold has no effect with --mode fixed")
    try:
        check_options(args.samples, args.diversity, args.noise, args.select)
    except ValueError as err:
        raise UserError(f"--{err}") from None
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    path = Path(args.file)
    if not path.is_file():
        raise PuzzleError(f"{path} does not exist or is not a file")
    ckpt = Path(args.checkpoint)
    payload = load_checkpoint(ckpt / CHECKPOINT if ckpt.is_dir() else ckpt)
    if checkpoint_family(payload) == "arc":
        return solve_tasks(args, payload)
    if arc_options_given(args):
        raise UserError(f"{arc_options_given(args)[0]} applies to ARC models; {args.checkpoint} is not one")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a folder; give the name of a file to write")
    if out is not None and out.exists() and not args.force:
        raise UserError(f"--out {out} exists; pass --force to overwrite it")
    if out is not None and not out.absolute().parent.is_dir():
        raise UserError(f"--out {out}: folder {out.absolute().parent} does not exist")

    run, system = load_for_inference(args.checkpoint, ema=False if args.no_ema else None,
                                     device=args.device, dtype=args.dtype, payload=payload)
    model = run.model
    family = run.cfg.data.family if run.cfg is not None else None
    n = math.isqrt(model.config.seq_len)
    info = grid_info(family, n, run.payload.get("grid"))
    if family not in ("sudoku", "maze") or n * n != model.config.seq_len or info is None:
        raise UserError(f"checkpoint {args.checkpoint} is a {family} model; train.solve handles Sudoku, maze and ARC models")
    puzzles, errors, kinds, copied = read_puzzles(path, family, n)
    want = f"{n}x{n} {family}"
    if not puzzles and kinds - {want}:
        raise PuzzleError(f"{path} holds {' and '.join(sorted(kinds))} puzzles but checkpoint {args.checkpoint} "
                          f"is a {want} model")
    for lineno, message in errors:
        print(f"{path}:{lineno}: {message}", file=sys.stderr)

    print(next(line for line in system.lines if line.startswith("precision")), file=sys.stderr, flush=True)
    engine = Engine(model, mode=args.mode, slots=args.slots, max_steps=args.max_steps,
                    threshold=args.threshold, device=system.device, compile=args.compile,
                    noise=args.noise if args.diversity != "aug" else 0.0)
    inputs = np.stack([x for _, x, _ in puzzles]) if puzzles else np.zeros((0, model.config.seq_len), np.int32)
    start = time.perf_counter()
    if args.samples == 1:
        result = engine.solve(inputs)
    else:
        s = sample(engine, inputs, None, args.samples, args.diversity, family, info, seed=args.seed)
        choice = select(s, args.select, inputs, partial(valid_solution, family, info))
        rows = np.arange(len(inputs))
        result = SolveResult(s.preds[rows, choice], s.steps.sum(1), s.q_halt_prob[rows, choice],
                             s.q_halt_logit[rows, choice])
    seconds = time.perf_counter() - start
    # One line per input line: answers in place, a marked placeholder for each bad line.
    lines = copied | {lineno: f"error: {message}" for lineno, message in errors}
    lines |= {lineno: answer_text(family, p) for (lineno, _, _), p in zip(puzzles, result.preds)}
    text = "".join(lines[k] + "\n" for k in sorted(lines))
    if out is not None:
        atomic_write(out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()

    count = len(puzzles)
    summary = [f"{count} puzzles in {seconds:.2f} s ({count / max(seconds, 1e-9):.1f} puzzles/s), "
               f"mode {args.mode}, {engine.slots} slots, {dtype_name(system.dtype)}"]
    if args.samples > 1:
        summary.append(f"{args.samples} trajectories per puzzle ({args.diversity}"
                       f"{f', noise {args.noise:g}' if args.diversity != 'aug' else ''}), select {args.select}")
    if count:
        valid = valid_solution(family, info, inputs, result.preds).mean()
        summary.append(f"mean steps {result.steps.mean():.2f} of {engine.max_steps}" if args.samples == 1 else
                       f"mean steps {result.steps.mean():.2f} per puzzle ({args.samples} trajectories of at most "
                       f"{engine.max_steps})")
        summary.append(f"valid {100 * valid:.1f}%")
        labelled = [(y, p) for (_, _, y), p in zip(puzzles, result.preds) if y is not None]
        if labelled:
            exact = np.mean([np.array_equal(y, p) for y, p in labelled])
            summary.append(f"exact accuracy {100 * exact:.1f}% ({len(labelled)} answers)")
    if errors:
        summary.append(f"{len(errors)} bad lines answered 'error: ...'")
    print("; ".join(summary), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
