"""HTML report of one evaluation run: metrics, training curves, prediction sheets, refinement strips.

Reads what train.evaluate writes (`<run>/eval/<split>/predictions.npz` + `meta.json`,
`<run>/metrics.jsonl`, `<run>/summary.json`) and writes one self-contained directory
(index.html + PNGs) that opens from disk. Entry point: `python -m train.visualize RUN`.

Per puzzle: a sheet (input | target | prediction, marked RIGHT/WRONG) and a strip of the
prediction after every supervision step, labelled with the halting probability, the step where
the model would have halted framed. ARC puzzles also show their task's demonstration pairs
(rows of the dataset's train split with the same identifier) when the dataset is on disk. On an
in-context ARC dataset (built with --context K) the sheet and the strip show the query: its input,
the answer and the prediction in the query-output slot; the demonstrations are the ones in the
example's own input (what the model read), drawn small.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from puzzles.errors import UserError, atomic_write
from puzzles.render import caption, default_cell, frame, grid_spec, hstack, is_correct, render, save_png, vstack
from puzzles.html_kit import controls, esc, page, site_dir
from puzzles.arc import query_slots
from puzzles.show import demos_image, pair_image, query_pair, slot_spec, spread
from train.curves import plot_curves, read_metrics

ARRAYS = ("inputs", "labels", "preds", "step_preds", "q_halt", "steps", "puzzle_identifiers")
HALT_FRAME = "#FF851B"


# ----------------------------------------------------------------------------- loading

def find_run(path: str | os.PathLike) -> Path:
    """The run directory for a run directory or a checkpoint file inside it (maybe in a subfolder)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such run directory or checkpoint")
    if path.is_dir():
        return path
    for parent in list(path.parents)[:3]:
        if (parent / "eval").is_dir() or (parent / "metrics.jsonl").is_file():
            return parent
    return path.parent


def load_predictions(run: Path, split: str) -> tuple[dict[str, np.ndarray], dict]:
    """predictions.npz arrays and meta.json of `<run>/eval/<split>`, checked for shape agreement."""
    directory = run / "eval" / split
    npz, meta_path = directory / "predictions.npz", directory / "meta.json"
    if not npz.is_file():
        have = sorted(p.name for p in (run / "eval").iterdir()) if (run / "eval").is_dir() else []
        hint = f" (evaluated splits: {', '.join(have)})" if have else " (run train.evaluate first)"
        raise UserError(f"{run}: no predictions at {npz}{hint}")
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # truncated npz, bad JSON
        raise UserError(f"{directory}: unreadable predictions or meta.json ({err})") from None
    if meta is None:
        raise UserError(f"{meta_path}: missing (written by train.evaluate beside predictions.npz)")
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise UserError(f"{npz}: missing arrays {missing}")
    n, s = arrays["inputs"].shape
    k = arrays["step_preds"].shape[0]
    expected = {"labels": (n, s), "preds": (n, s), "step_preds": (k, n, s), "q_halt": (k, n),
                "steps": (n,), "puzzle_identifiers": (n,)} | ({"index": (n,)} if "index" in arrays else {})
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise UserError(f"{npz}: {key} has shape {arrays[key].shape}, expected {shape}")
    try:
        grid_spec({"seq_len": s, **meta})
    except UserError as err:
        raise UserError(f"{meta_path}: {err}") from None
    return arrays, meta


def load_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else {}


def flat(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {"a/b": scalar}, keeping numbers and short strings."""
    out: dict[str, object] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}/"))
        elif isinstance(value, float):
            out[name] = f"{value:.6g}"
        elif isinstance(value, (int, str, bool)) and len(str(value)) < 120:
            out[name] = value
    return out


# ----------------------------------------------------------------------------- pictures

def prediction_sheet(spec: dict, inp: np.ndarray, label: np.ndarray, pred: np.ndarray) -> Image.Image:
    """input | target | prediction, headed by a green RIGHT or red WRONG band."""
    family = spec["family"]
    right = is_correct(pred, label)
    tiles = [caption(render(family, inp, meta=spec, given=inp), "input"),
             caption(render(family, label, meta=spec, given=inp), "target"),
             caption(render(family, pred, meta=spec, target=label, given=inp), "prediction")]
    return caption(hstack(tiles, gap=16), "RIGHT" if right else "WRONG", colour="white",
                   band="#2ECC40" if right else "#E00000", size=15)


def refinement_strip(spec: dict, inp: np.ndarray, label: np.ndarray, step_preds: np.ndarray,
                     q_halt: np.ndarray, halt_step: int) -> Image.Image:
    """The prediction after each supervision step, captioned with P(halt); the halting step framed.

    `halt_step` counts steps from 1 (the contract's `steps`); it is clamped to the steps recorded.
    """
    family = spec["family"]
    side = spec.get("canvas", 30) if family == "arc" else spec["size"]
    cell = max(3, int(default_cell(family, (side, side)) * 0.6)) if family != "arc" else None
    halt = int(np.clip(halt_step, 1, len(step_preds)))
    tiles = []
    for k, (pred, q) in enumerate(zip(step_preds, q_halt), start=1):
        img = render(family, pred, meta=spec, target=label, given=inp, cell=cell)
        mark = "ok" if is_correct(pred, label) else "x"
        img = frame(img, HALT_FRAME if k == halt else "white", 4)
        text = f"{k}: p={float(q):.2f} {mark}" + (" HALT" if k == halt else "")
        tiles.append(caption(img, text, colour=HALT_FRAME if k == halt else "black", size=11))
    return hstack(tiles, gap=6)


def demo_sheet(spec: dict, dataset: Path, identifier: int) -> Image.Image | None:
    """The demonstration pairs of an ARC identifier from the dataset's train split (None if none)."""
    from puzzles.dataset import load_split

    train = load_split(dataset, "train")
    puzzles = np.nonzero(train.puzzle_identifiers == identifier)[0]
    rows = np.concatenate([np.arange(train.puzzle_indices[p], train.puzzle_indices[p + 1])
                           for p in puzzles]) if len(puzzles) else np.zeros(0, np.int64)
    if not len(rows):
        return None
    inputs, labels = train.examples(rows[:10])
    return vstack([pair_image(spec, i, l) for i, l in zip(inputs, labels)], gap=12)


def dataset_note(meta: dict, run: Path) -> tuple[Path | None, str]:
    """The dataset directory named in meta.json if it can be opened, else (None, reason).

    A relative path is tried from the working directory, then from the run directory.
    """
    from puzzles.dataset import load_split

    path = meta.get("dataset")
    if not path:
        return None, "meta.json names no dataset"
    candidates = [Path(path)] + ([run / path] if not Path(path).is_absolute() else [])
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        return None, f"dataset {path} not found"
    try:
        load_split(found, "train")
    except UserError as err:
        return None, f"dataset not readable ({err})"
    return found, ""


# ----------------------------------------------------------------------------- the report

def write_report(run: str | os.PathLike, split: str = "test", n: int = 32,
                 out: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Write the report directory; returns the path of its index.html."""
    run = find_run(run)
    arrays, meta = load_predictions(run, split)
    spec = grid_spec({"seq_len": arrays["inputs"].shape[1], **meta})
    family, slots = spec["family"], spec.get("slots", 0)
    if slots and arrays["inputs"].shape[1] != slots * spec["canvas"] ** 2:
        raise UserError(f"{run / 'eval' / split / 'predictions.npz'}: rows of {arrays['inputs'].shape[1]} tokens, "
                        f"but meta.json says {slots} slots of a {spec['canvas']}x{spec['canvas']} canvas")
    one = slot_spec(spec)  # the spec of the grids drawn: a slot's on an in-context dataset
    summary = load_json(run / "summary.json")
    metrics_path = run / "metrics.jsonl"
    rows_metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    names: list[str] = []
    dataset, note = (None, "")
    if family == "arc":
        dataset, note = dataset_note(meta, run)
        if dataset is not None:
            from puzzles.dataset import load_identifiers
            names = load_identifiers(dataset)
    out = Path(out) if out is not None else run / "eval" / split / "report"
    total = len(arrays["inputs"])
    correct = np.array([is_correct(p, l) for p, l in zip(arrays["preds"], arrays["labels"])], bool)
    chosen = spread(total, n)
    with site_dir(out, force) as tmp:
        parts = [f"<h1>Evaluation report: {esc(run.name)} / {esc(split)}</h1>",
                 f'<p class="note">{esc(run.resolve())} &middot; family {esc(family)}</p>']
        table = {"puzzles evaluated": total, "exact accuracy (these predictions)":
                 f"{correct.mean():.4f}" if total else "n/a",
                 "supervision steps recorded": arrays["step_preds"].shape[0],
                 **flat(meta.get("metrics", {}), "eval/"), **flat(summary)}
        parts.append('<h2>Summary</h2><table class="metrics">' + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in table.items()) + "</table>")
        if rows_metrics:
            plot_curves(rows_metrics, tmp / "curves.png", title=run.name)
            parts.append('<h2>Training curves</h2><img src="curves.png" alt="training curves">')
        else:
            parts.append(f'<h2>Training curves</h2><p class="note">no {esc(metrics_path.name)} in the run</p>')
        items, keys, demos = [], [], {}
        for row in chosen:
            pid = int(arrays["puzzle_identifiers"][row])
            name = names[pid] if 0 <= pid < len(names) else ""
            key = name.split("|||")[0] if family == "arc" and name else family
            if family == "arc" and not name:
                key = f"identifier {pid}"
            keys.append(key)
            inp, label = arrays["inputs"][row], arrays["labels"][row]
            pred, step_preds, context = arrays["preds"][row], arrays["step_preds"][:, row], None
            if slots:  # in-context: the query's input and answer, the prediction in the query-output slot
                context, (inp, label) = demos_image(spec, inp, scale=0.5), query_pair(spec, inp, label)
                pred, step_preds = query_slots(pred[None], slots)[1][0], query_slots(step_preds, slots)[1]
            save_png(prediction_sheet(one, inp, label, pred), tmp / f"sheet_{row}.png")
            save_png(refinement_strip(one, inp, label, step_preds, arrays["q_halt"][:, row],
                                      int(arrays["steps"][row])), tmp / f"strip_{row}.png")
            verdict = "right" if correct[row] else "wrong"
            example = int(arrays["index"][row]) if "index" in arrays else int(row)
            html = [f'<div class="item {verdict}" data-key="{esc(key)}">',
                    f"<h3>#{example} {esc(name)} &middot; {verdict.upper()} &middot; halted at step "
                    f"{int(arrays['steps'][row])}</h3>",
                    f'<img src="sheet_{row}.png" alt="puzzle {row}">',
                    f'<p class="note">refinement (prediction after each step, p = P(halt))</p>'
                    f'<img src="strip_{row}.png" alt="refinement of puzzle {row}">']
            if slots:
                if context is not None:
                    save_png(context, tmp / f"context_{row}.png")
                    html.append(f'<details open><summary>demonstrations (in the input)</summary>'
                                f'<img src="context_{row}.png" alt="demonstrations of puzzle {row}"></details>')
                else:
                    html.append('<p class="note">no demonstrations in the input</p>')
            elif dataset is not None:
                if pid not in demos:
                    img = demo_sheet(spec, dataset, pid)
                    demos[pid] = img is not None and save_png(img, tmp / f"demos_{pid}.png")
                if demos[pid]:
                    html.append(f'<details open><summary>demonstrations</summary>'
                                f'<img src="demos_{pid}.png" alt="demonstrations of {esc(name)}"></details>')
            elif family == "arc":
                html.append(f'<p class="note">no demonstrations: {esc(note)}</p>')
            html.append("</div>")
            items.append("".join(html))
        label = "task" if family == "arc" else "family"
        parts.append(f"<h2>Puzzles ({len(chosen)} of {total} shown, "
                     f"{int((~correct[chosen]).sum())} wrong)</h2>")
        parts.append(controls(sorted(set(keys)), label, wrong_filter=True))
        if not items:
            parts.append('<p class="note">no predictions were saved for this split '
                         "(train.evaluate keeps the first eval.save_predictions examples)</p>")
        parts.append('<div class="items">' + "\n".join(items) + "</div>")
        atomic_write(tmp / "index.html", page(f"report {run.name} {split}", "\n".join(parts)))
    return out / "index.html"
