"""Batches for training and evaluation, sampled as the reference loader does.

Training (`TrainLoader`): one *iteration* = `epochs_per_iter` shuffled passes over the groups
(a group is an original puzzle plus its augmented copies). For each group in that order one
random puzzle of the group is picked, and its examples (random order, no replacement) are packed
into the global batch, as many as still fit; a batch ends when full, and the incomplete last
batch of an iteration is dropped. Then the next iteration starts, with a fresh shuffle; the
stream never ends, the trainer decides when to stop. Every rank draws the same global batch and
keeps rows `[rank * local : (rank + 1) * local]`.

Randomness is a pure function of (seed, iteration, batch index), so `state_dict()` is just that
position and a resumed run sees exactly the batches it would have seen. A background thread
prepares the next batches (reading rows, optionally pinning memory) while the model trains;
`state_dict()` counts the batches handed out, not the ones prepared.

    loader = TrainLoader(load_split("data/sudoku", "train"), global_batch_size=768, seed=0)
    for step, batch in zip(range(1000), loader): ...
    for batch in eval_batches(load_split("data/sudoku", "test"), 768): ...
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from models.losses import IGNORE_LABEL_ID  # what the loss ignores; datasets store their own (0)
from puzzles.dataset import Split

from .errors import BatchTooLarge


def _to_batch(split: Split, rows: np.ndarray, puzzles: np.ndarray) -> dict[str, np.ndarray]:
    inputs, labels = split.examples(rows)
    labels = labels.astype(np.int64)
    ignore = split.meta.get("ignore_label_id")
    if ignore is not None:
        labels[labels == ignore] = IGNORE_LABEL_ID
    return {"inputs": inputs, "labels": labels,
            "puzzle_identifiers": split.puzzle_identifiers[puzzles].astype(np.int32)}


class _Plan:
    """The batches of one iteration: group order, picked puzzle per group, batch boundaries."""

    def __init__(self, split: Split, seed: int, iteration: int, epochs_per_iter: int, batch: int):
        rng = np.random.default_rng([seed, iteration])
        g = split.group_indices.astype(np.int64)
        groups = np.flatnonzero(np.diff(g) > 0)  # a group without puzzles has nothing to pick
        order = np.concatenate([groups[rng.permutation(len(groups))] for _ in range(epochs_per_iter)])
        self.puzzles = rng.integers(g[order], g[order + 1])  # one random puzzle of each group
        p = split.puzzle_indices.astype(np.int64)
        self.sizes = p[self.puzzles + 1] - p[self.puzzles]
        # Batch k covers picks ends[k-1]+1 .. ends[k]; the pick at ends[k] is truncated to fill it.
        csum = np.cumsum(self.sizes)
        ends, taken = [], 0
        while True:
            j = int(np.searchsorted(csum, taken + batch, side="left"))
            if j >= len(csum):
                break  # not enough examples left for a full batch: drop it
            ends.append(j)
            taken = int(csum[j])
        self.ends = np.asarray(ends, dtype=np.int64)
        self.starts = np.concatenate([[0], self.ends[:-1] + 1]) if ends else self.ends

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, split: Split, rng: np.random.Generator, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Global (rows, puzzle index) of batch k, each of length `batch`."""
        s, e = int(self.starts[k]), int(self.ends[k]) + 1
        puzzles, sizes = self.puzzles[s:e], self.sizes[s:e]
        take = sizes.copy()
        take[-1] = batch - (sizes[:-1].sum())
        total = int(sizes.sum())
        seg = np.repeat(np.arange(len(sizes)), sizes)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # Random order within each puzzle: sort by (puzzle, random key), keep the first `take`.
        order = np.lexsort((rng.random(total), seg))
        local = (np.arange(total) - offsets[seg])[order]
        rank = np.arange(total) - offsets[seg]  # order keeps segments contiguous and in place
        keep = rank < take[seg]
        starts = split.puzzle_indices[puzzles].astype(np.int64)
        return (starts[seg] + local)[keep], puzzles[seg][keep]


class TrainLoader:
    """Endless iterator of local training batches (dicts of tensors), reference sampling."""

    def __init__(self, split: Split, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 epochs_per_iter: int = 1, prefetch: int = 2, pin_memory: bool = False):
        if global_batch_size <= 0 or global_batch_size % world_size:
            raise ValueError(f"global_batch_size {global_batch_size} must be a positive multiple of "
                             f"world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in 0..{world_size - 1}")
        if epochs_per_iter < 1:
            raise ValueError(f"epochs_per_iter must be >= 1, got {epochs_per_iter}")
        if split.num_groups == 0:
            raise ValueError(f"{split.root}/{split.name} has no groups to sample")
        self.split, self.global_batch_size, self.seed = split, global_batch_size, seed
        self.rank, self.world_size, self.epochs_per_iter = rank, world_size, epochs_per_iter
        self.local_batch_size = global_batch_size // world_size
        self.prefetch, self.pin_memory = max(1, prefetch), pin_memory
        self._iteration, self._batch = 0, 0  # position of the next batch to hand out
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()

    # -- position ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"seed": self.seed, "iteration": self._iteration, "batch": self._batch,
                "global_batch_size": self.global_batch_size, "epochs_per_iter": self.epochs_per_iter}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "global_batch_size", "epochs_per_iter"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"loader state has {key}={state[key]}, this loader {getattr(self, key)}")
        self.close()
        self._iteration, self._batch = int(state["iteration"]), int(state["batch"])

    def batches_in_iteration(self, iteration: int) -> int:
        """Number of full global batches iteration `iteration` yields (varies with packing)."""
        return len(self._plan_for(iteration, {}))

    def _plan_for(self, iteration: int, cache: dict) -> _Plan:
        # `cache` is owned by one caller (the producer thread keeps its own): no shared state.
        if iteration not in cache:
            cache.clear()
            cache[iteration] = _Plan(self.split, self.seed, iteration, self.epochs_per_iter,
                                     self.global_batch_size)
        return cache[iteration]

    # -- producing -----------------------------------------------------------------------------
    def _make(self, iteration: int, k: int, cache: dict) -> dict[str, torch.Tensor]:
        plan = self._plan_for(iteration, cache)
        rng = np.random.default_rng([self.seed, iteration, k + 1])
        rows, puzzles = plan.batch(self.split, rng, k, self.global_batch_size)
        lo, hi = self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size
        batch = {k_: torch.from_numpy(v) for k_, v in _to_batch(self.split, rows[lo:hi], puzzles[lo:hi]).items()}
        if self.pin_memory and torch.cuda.is_available():
            batch = {k_: v.pin_memory() for k_, v in batch.items()}
        return batch

    def _positions(self, iteration: int, k: int, cache: dict) -> Iterator[tuple[int, int]]:
        """(iteration, batch) positions from the given one on, skipping empty iterations."""
        empty = 0
        while True:
            n = len(self._plan_for(iteration, cache))
            if k < n:
                empty = 0
                yield iteration, k
                k += 1
                continue
            empty = empty + 1 if n == 0 else 0
            if empty > 1:
                raise BatchTooLarge(f"{self.split.root}/{self.split.name}: one iteration holds fewer than "
                                    f"global_batch_size={self.global_batch_size} examples; lower the batch "
                                    f"size (optim.global_batch_size) or raise epochs_per_iter")
            iteration, k = iteration + 1, 0

    def _produce(self, start: tuple[int, int], out: queue.Queue, stop: threading.Event) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        cache: dict = {}
        try:
            for iteration, k in self._positions(*start, cache):
                if not put(((iteration, k + 1), self._make(iteration, k, cache))):
                    return
        except BaseException as err:  # hand the error to the consumer instead of dying silently
            put((None, err))

    # -- consuming -----------------------------------------------------------------------------
    def __iter__(self) -> "TrainLoader":
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._thread is None:
            self._stop = threading.Event()
            self._queue = queue.Queue(maxsize=self.prefetch)
            self._thread = threading.Thread(target=self._produce, daemon=True, name="TrainLoader",
                                            args=((self._iteration, self._batch), self._queue, self._stop))
            self._thread.start()
        position, batch = self._queue.get()
        if position is None:
            self.close()
            raise batch
        self._iteration, self._batch = position
        return batch

    def close(self) -> None:
        """Stop the prefetch thread (prepared but unconsumed batches are discarded)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread, self._queue = None, None

    def __enter__(self) -> "TrainLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def eval_batches(split: Split, global_batch_size: int, rank: int = 0,
                 world_size: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """All examples in order, in local batches; the last is padded (valid False, index -1).

    Every rank gets the same number of batches (some may be all padding), so collective ops line up.
    """
    if global_batch_size <= 0 or global_batch_size % world_size:
        raise ValueError(f"global_batch_size {global_batch_size} must be a positive multiple of "
                         f"world_size {world_size}")
    local = global_batch_size // world_size
    n = len(split)
    pad_id = int(split.meta.get("pad_id", 0))
    blank = int(split.meta.get("blank_identifier_id", 0))
    seq_len = int(split.meta["seq_len"])
    for start in range(0, n, global_batch_size):
        end = min(n, start + global_batch_size)
        lo, hi = min(end, start + rank * local), min(end, start + (rank + 1) * local)
        rows = np.arange(lo, hi)
        puzzles = np.searchsorted(split.puzzle_indices, rows, side="right") - 1
        batch = _to_batch(split, rows, puzzles)
        pad = local - len(rows)
        if pad:
            batch = {
                "inputs": np.concatenate([batch["inputs"], np.full((pad, seq_len), pad_id, np.int32)]),
                "labels": np.concatenate([batch["labels"], np.full((pad, seq_len), IGNORE_LABEL_ID, np.int64)]),
                "puzzle_identifiers": np.concatenate([batch["puzzle_identifiers"], np.full(pad, blank, np.int32)]),
            }
        batch["valid"] = np.arange(local) < len(rows)
        batch["index"] = np.concatenate([rows, np.full(pad, -1)]).astype(np.int64)
        yield {k: torch.from_numpy(v) for k, v in batch.items()}
