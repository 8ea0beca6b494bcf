"""Command line of the trainers: `python -m train.sudoku|maze|arc --model NAME [--preset P] [key=value ...]`.

Without --preset a machine with a GPU gets `paper` and one without gets `quick`; the choice is
printed. `key=value` overrides any config field (`arch.L_cycles=4`, `lr=3e-4`; see --help for the
list). A run directory that already holds a checkpoint of the same config is resumed; --resume
continues one whose length/evaluation/logging settings changed.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch

from puzzles.errors import run_cli

from .config import MODEL_NAMES
from .overrides import apply_overrides, config_leaves
from .presets import PRESETS

DEFAULT_MODEL = {"sudoku": "trm-mlp", "maze": "trm", "arc": "trm"}


def parser(family: str, model: str | None = None, preset: str | None = None) -> argparse.ArgumentParser:
    """`model`/`preset`: whose values --help lists (those the command line names, else the defaults)."""
    model = model if model in MODEL_NAMES else DEFAULT_MODEL[family]
    preset = preset if preset in PRESETS else "quick"
    example = PRESETS[preset](family, model)
    keys = "\n".join(f"  {k} = {v!r}" for k, v in config_leaves(example).items()
                     if k not in ("model", "preset"))
    p = argparse.ArgumentParser(
        prog=f"python -m train.{family}", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Train a recursive reasoning model on {family}, evaluate it, write runs/<name>/ "
                    f"(checkpoint.pt, metrics.jsonl, summary.json, eval/test/predictions.npz).",
        epilog=f"config keys (values of the {preset} preset with --model {model}):\n{keys}")
    p.add_argument("--model", choices=MODEL_NAMES, default=DEFAULT_MODEL[family],
                   help=f"model to train (default {DEFAULT_MODEL[family]})")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="paper: the published recipe; quick: minutes on a CPU (default: paper with a GPU, else quick)")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in the run directory even if length/eval/log settings changed")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. arch.L_cycles=4 lr=3e-4")
    return p


def main(family: str, argv: Sequence[str] | None = None) -> int:
    first = argparse.ArgumentParser(add_help=False)  # --help lists the values of the model asked for
    first.add_argument("--model")
    first.add_argument("--preset")
    named, _ = first.parse_known_args(argv)
    args = parser(family, named.model, named.preset).parse_intermixed_args(argv)
    preset = args.preset
    if preset is None:
        preset = "paper" if torch.cuda.is_available() else "quick"
        why = "a GPU is available" if preset == "paper" else "no GPU found"
        print(f"preset: {preset} ({why}; choose with --preset paper|quick)", flush=True)
    cfg = apply_overrides(PRESETS[preset](family, args.model), args.overrides)
    from .loop import train  # after argument checks: a typo answers before torch.compile warms up
    train(cfg, resume=args.resume)
    return 0


def entry(family: str) -> None:
    raise SystemExit(run_cli(lambda argv: main(family, argv)))
