"""Dataset browser: a self-contained HTML directory of a built dataset's examples.

    python -m puzzles.show data/sudoku-extreme-1k [--split test|train|all] [--n 16] [--out DIR] [--force]

Shows `n` groups per split (spread evenly over the split), each group one row: the original puzzle
and its augmented copies side by side, each copy with its input -> label examples. An example of an
in-context ARC dataset (built with --context K) is drawn as its demonstration pairs, then its query
input -> answer (the pair slots a task with fewer than K demonstrations leaves PAD are left out).
Open the printed index.html from disk (file://): no server, no network, nothing external. The page
kit (atomic site folder, page, filter bar) is puzzles/html_kit.py, shared with train.report.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from puzzles.arc import query_slots
from puzzles.errors import PuzzleError, atomic_write, run_cli
from puzzles.html_kit import controls, esc, page, site_dir
from puzzles.render import arc_origin, caption, crop_arc, default_cell, grid_spec, hstack, render, save_png, vstack

MAX_COPIES = 8       # augmented copies shown per group
MAX_EXAMPLES = 4     # examples shown per puzzle (ARC tasks have up to ~10 demos)


def pair_image(spec: dict, inp: np.ndarray, lab: np.ndarray, names: tuple[str, str] = ("input", "label"),
               cell: int | None = None):
    """One example as input | label images, captioned with `names`."""
    family = spec["family"]
    return hstack([caption(render(family, inp, meta=spec, given=inp, cell=cell), names[0]),
                   caption(render(family, lab, meta=spec, given=inp, cell=cell), names[1])])


def slot_spec(spec: dict) -> dict:
    """The spec of one grid slot of an in-context ARC example (`spec` itself for one-grid datasets)."""
    return {k: v for k, v in spec.items() if k not in ("context", "slots")}


def context_demos(spec: dict, inp: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The demonstration pairs, (input, output) canvas rows, of an in-context example's input row
    (puzzles/arc/context.py), pairs whose slots are all PAD (a task with fewer than K) left out."""
    x = np.asarray(inp).reshape(spec["slots"], -1)
    return [(x[s], x[s + 1]) for s in range(0, len(x) - 2, 2) if x[s].any() or x[s + 1].any()]


def query_pair(spec: dict, inp: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query input, answer) canvas rows of an in-context example: the input's query-input slot and
    the label's query-output slot."""
    slots = spec["slots"]
    return query_slots(np.asarray(inp)[None], slots)[0][0], query_slots(np.asarray(lab)[None], slots)[1][0]


def demos_image(spec: dict, inp: np.ndarray, scale: float = 1.0):
    """The demonstration pairs in an in-context example's input row, side by side (None if it has
    none); `scale` < 1 draws them smaller than the default cell size."""
    one = slot_spec(spec)
    tiles = []
    for j, (i, o) in enumerate(context_demos(spec, inp), start=1):
        cell = None if scale == 1.0 else max(3, int(default_cell("arc", crop_arc(i, arc_origin(i)).shape) * scale))
        tiles.append(caption(pair_image(one, i, o, ("input", "output"), cell), f"demonstration {j}", size=11))
    return hstack(tiles, gap=14) if tiles else None


def example_image(spec: dict, inp: np.ndarray, lab: np.ndarray):
    """One example: input | label, or for an in-context ARC example its demonstration pairs, then
    the query input -> answer."""
    if not spec.get("slots"):
        return pair_image(spec, inp, lab)
    query_in, answer = query_pair(spec, inp, lab)
    query = caption(pair_image(slot_spec(spec), query_in, answer, ("query input", "answer")), "query", size=11)
    demos = demos_image(spec, inp)
    return query if demos is None else hstack([demos, query], gap=30)


def spread(total: int, n: int) -> np.ndarray:
    """Up to `n` indices spread evenly over range(total) (first and last included)."""
    if total <= 0 or n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(np.int64))


def split_section(root: Path, split: str, names: list[str], n: int, out: Path) -> str:
    """HTML for one split; writes one PNG per shown puzzle into `out`."""
    from puzzles.dataset import load_split  # lazy: keeps `puzzles.render` importable on its own

    data = load_split(root, split)
    spec = grid_spec(data.meta)
    groups = spread(len(data.group_indices) - 1, n)
    parts = [f'<h2>{esc(split)}: {len(data)} examples, {len(data.puzzle_identifiers)} puzzles, '
             f'{len(data.group_indices) - 1} groups (showing {len(groups)})</h2>']
    for g in groups:
        first, last = int(data.group_indices[g]), int(data.group_indices[g + 1])
        items = []
        for p in range(first, min(last, first + MAX_COPIES)):
            rows = np.arange(data.puzzle_indices[p], data.puzzle_indices[p + 1])[:MAX_EXAMPLES]
            if not len(rows):
                continue
            inputs, labels = data.examples(rows)
            pid = int(data.puzzle_identifiers[p])
            name = names[pid] if 0 < pid < len(names) else f"puzzle {p}"
            img = vstack([example_image(spec, i, l) for i, l in zip(inputs, labels)], gap=14)
            fname = f"{split}_p{p}.png"
            save_png(img, out / fname)
            more = int(data.puzzle_indices[p + 1] - data.puzzle_indices[p]) - len(rows)
            note = f' <span class="note">(+{more} more examples)</span>' if more > 0 else ""
            items.append(f'<div class="item" data-key="{esc(split)}"><h3>{esc(name)}{note}</h3>'
                         f'<img src="{fname}" alt="{esc(name)}"></div>')
        extra = last - first - len(items)
        note = f' <span class="note">(+{extra} more copies)</span>' if extra > 0 else ""
        parts.append(f'<div class="group"><h3>group {g}: {last - first} puzzle(s){note}</h3>'
                     f'<div class="row">{"".join(items)}</div></div>')
    return "\n".join(parts)


def write_browser(dataset: str | os.PathLike, split: str = "test", n: int = 16,
                  out: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write the browser for `dataset` and return the path of its index.html."""
    from puzzles.dataset import load_identifiers, load_split

    root = Path(dataset)
    names = load_identifiers(root)  # raises PuzzleError if `root` is not a dataset
    splits = ["train", "test"] if split == "all" else [split]
    out = Path(out) if out is not None else root / "browser" / split
    with site_dir(out, force) as tmp:
        sections = [split_section(root, s, names, n, tmp) for s in splits]
        meta = grid_spec(load_split(root, splits[0]).meta)
        body = (f"<h1>Dataset {esc(root.name)}</h1><p>{esc(root.resolve())} &middot; family "
                f"{esc(meta['family'])}</p>" + controls(splits if len(splits) > 1 else [], "split", False)
                + "\n".join(sections))
        atomic_write(tmp / "index.html", page(f"dataset {root.name}", body))
    return out / "index.html"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m puzzles.show", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset directory (with identifiers.json, train/, test/)")
    parser.add_argument("--split", default="test", choices=["train", "test", "all"])
    parser.add_argument("--n", type=int, default=16, help="groups to show per split")
    parser.add_argument("--out", default=None, help="output directory (default DATASET/browser/SPLIT)")
    parser.add_argument("--force", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise PuzzleError(f"--n must be at least 1, got {args.n}")
    print(write_browser(args.dataset, args.split, args.n, args.out, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
