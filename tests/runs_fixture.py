"""Synthetic evaluation runs in the contract's format (predictions.npz + meta.json, metrics.jsonl,
summary.json), for the picture/report tests. Not a test module itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REF_DATASETS = Path(__file__).resolve().parent / "fixtures" / "reference" / "datasets"


def corrupt(label: np.ndarray, family: str, rng: np.random.Generator) -> np.ndarray:
    """A wrong prediction: change one non-ignored cell of `label` to another valid token."""
    pred = label.copy()
    cells = np.nonzero(label >= (2 if family == "arc" else 1))[0]
    cell = rng.choice(cells)
    top = {"sudoku": int(label.max()), "maze": 5, "arc": 11}[family]
    low = 2 if family == "arc" else 1
    pred[cell] = low + (pred[cell] - low + 1) % (top - low + 1)
    return pred


def make_run(root: Path, family: str, inputs: np.ndarray, labels: np.ndarray, wrong: np.ndarray,
             puzzle_identifiers: np.ndarray | None = None, dataset: Path | None = None,
             extra_meta: dict | None = None, steps_k: int = 4, split: str = "test", seed: int = 0) -> Path:
    """Write a run whose final predictions are wrong exactly on the rows where `wrong` is True."""
    rng = np.random.default_rng(seed)
    n, s = inputs.shape
    preds = labels.copy()
    for i in np.nonzero(wrong)[0]:
        preds[i] = corrupt(labels[i], family, rng)
    # earlier steps: the input (a poor first guess), then converging to the final prediction
    step_preds = np.stack([inputs if k == 0 else preds for k in range(steps_k)]).astype(np.int32)
    q_halt = np.linspace(0.05, 0.95, steps_k, dtype=np.float32)[:, None].repeat(n, 1)
    steps = rng.integers(1, steps_k + 1, size=n).astype(np.int32)
    ids = np.zeros(n, np.int32) if puzzle_identifiers is None else puzzle_identifiers.astype(np.int32)
    directory = root / "eval" / split
    directory.mkdir(parents=True)
    np.savez(directory / "predictions.npz", inputs=inputs.astype(np.int32), labels=labels.astype(np.int32),
             preds=preds.astype(np.int32), step_preds=step_preds, q_halt=q_halt, steps=steps,
             puzzle_identifiers=ids)
    meta = {"family": family, "dataset": str(dataset) if dataset else None, "split": split,
            "metrics": {"exact_accuracy": float(1 - wrong.mean()), "steps": float(steps.mean())},
            **(extra_meta or {})}
    (directory / "meta.json").write_text(json.dumps(meta))
    lines = [{"step": t, "train/lm_loss": 2.0 / (1 + t), "train/exact_accuracy": t / 50,
              "train/steps": 4 - t / 20, "train/lr": 1e-4 * min(1, t / 10)} for t in range(0, 50, 5)]
    lines.append({"step": 50, "eval/exact_accuracy": float(1 - wrong.mean())})
    (root / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (root / "summary.json").write_text(json.dumps({"step": 50, "eval": {"exact_accuracy": 0.5}}))
    return root


def sudoku_run(root: Path, wrong_every: int = 2) -> tuple[Path, np.ndarray]:
    """A run over the reference sudoku test split (5 puzzles); every `wrong_every`-th row wrong."""
    d = REF_DATASETS / "sudoku-tiny-aug-2" / "test"
    inputs, labels = np.load(d / "all__inputs.npy"), np.load(d / "all__labels.npy")
    wrong = np.arange(len(inputs)) % wrong_every == 0
    return make_run(root, "sudoku", inputs, labels, wrong, extra_meta={"box": [3, 3]}), wrong


def arc_run(root: Path) -> tuple[Path, np.ndarray]:
    """A run over the reference ARC test split (6 rows, identifiers of task 25ff71a9 + copies)."""
    ds = REF_DATASETS / "arc-tiny-aug-2"
    d = ds / "test"
    inputs, labels = np.load(d / "all__inputs.npy"), np.load(d / "all__labels.npy")
    ids = np.repeat(np.load(d / "all__puzzle_identifiers.npy"), np.diff(np.load(d / "all__puzzle_indices.npy")))
    wrong = np.arange(len(inputs)) % 3 == 1
    return make_run(root, "arc", inputs, labels, wrong, puzzle_identifiers=ids, dataset=ds), wrong


def maze_run(root: Path, n: int = 6) -> tuple[Path, np.ndarray]:
    """A run over `n` synthetic 8x8 mazes (walls round the edge, S top-left, G bottom-right)."""
    inputs, labels = [], []
    for k in range(n):
        maze = np.full((8, 8), 2)
        maze[0, :] = maze[-1, :] = maze[:, 0] = maze[:, -1] = 1
        maze[3, 1:6 - k % 2] = 1
        maze[1, 1], maze[6, 6] = 3, 4
        label = maze.copy()
        label[1, 2:7] = 5
        label[2:6, 6] = 5
        label[6, 6] = 4
        inputs.append(maze.ravel())
        labels.append(label.ravel())
    wrong = np.arange(n) % 2 == 1
    return make_run(root, "maze", np.array(inputs), np.array(labels), wrong, extra_meta={"size": 8}), wrong
