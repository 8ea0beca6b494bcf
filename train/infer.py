"""Answer puzzles fast: adaptive halting at inference with continuous depth-wise batching.

    from train.infer import solve
    result = solve(model, inputs)        # inputs: (N, S) dataset tokens; any trained HaltingModel
    result.preds, result.steps, result.q_halt_prob          # (N, S), (N,), (N,), in input order

The engine holds a fixed number of slots (static shapes, so a compiled step never recompiles as
slots refill). Each engine step runs one supervision step (`HaltingModel.step`) for every slot. A
slot whose halting head says stop emits its answer and, in `continuous` mode, takes the next puzzle
from the queue at once, starting from the initial states with its step count at 0. Halting rule:
the model's own (q_halt > 0, or q_halt > q_continue for HRM), or `threshold`: sigmoid(q_halt) >= t;
always at `max_steps` (default: the model's halt_max_steps).

Modes:
    fixed       every puzzle runs max_steps steps in whole batches (the reference evaluation)
    adaptive    per-puzzle halting, whole batches: a batch ends when all of its rows halted
    continuous  adaptive + slot refilling: no slot idles while puzzles wait

Rows never interact (attention and the token MLP mix positions of one sample only), so a puzzle's
answer does not depend on which slot or which neighbours it ran with. With `compile=True` the step
always runs all slots (empty ones restart from the initial states and their outputs are dropped),
so its shapes never change. Eager runs (the default) compute only the occupied slots (`pack`):
on a CPU, where cost grows with rows, that makes the queue's tail and the halted rows of a
whole batch free; on a GPU, pass `compile=True` or `pack=False` to keep one static shape.
`iter_solve` is the streaming form: it takes any iterable of puzzles and yields `Answer`s in the
order they finish. Benchmark: `python -m bench.inference`; tests: tests/test_infer.py.
Several trajectories per puzzle (augmentations, `noise` on the latent, a rule to pick one answer)
are queue items like any other: train/trajectories.py.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from models import Carry, HaltingModel

MODES = ("fixed", "adaptive", "continuous")


@dataclass
class SolveResult:
    preds: np.ndarray  # (N, S) int32 predicted tokens (dataset token space)
    steps: np.ndarray  # (N,) int32 supervision steps used
    q_halt_prob: np.ndarray  # (N,) float32 sigmoid(q_halt) at the answer's step
    q_halt_logit: np.ndarray  # (N,) float32 q_halt itself (>= 0 <=> "I am right", for evaluation)

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Answer:
    index: int  # position of the puzzle in the input
    preds: np.ndarray  # (S,) int32
    steps: int
    q_halt_prob: float
    q_halt_logit: float
    halt_step: int = 0  # first step at which the halting rule said stop (max_steps if never); fixed
    # mode runs on past it, the other modes stop there
    trace: tuple[np.ndarray, np.ndarray] | None = None  # recorded puzzles: answers (steps, S) and
    # sigmoid(q_halt) (steps,) after every step run


def _advance(model: HaltingModel, z_H: torch.Tensor, z_L: torch.Tensor, steps: torch.Tensor,
             fresh: torch.Tensor, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor,
             noise: torch.Tensor | None = None):
    """One supervision step for every slot; `fresh` rows restart from the initial states.
    Tensors in and out only, so `torch.compile` sees one graph with static shapes."""
    data = {"inputs": inputs, "puzzle_identifiers": puzzle_identifiers}
    carry = Carry(z_H=z_H, z_L=z_L, steps=steps, halted=fresh, current_data=data)
    # adaptive=False: the wrapper then halts only at halt_max_steps; the engine decides itself.
    carry, logits, q_halt, q_continue = model.step(carry, data, adaptive=False, noise=noise)
    return carry.z_H, carry.z_L, carry.steps, logits.argmax(-1).to(torch.int32), q_halt, q_continue


class Engine:
    """Slots + halting rule over one model; reusable across calls (keeps the compiled step)."""

    def __init__(self, model: HaltingModel, mode: str = "continuous", slots: int = 128,
                 max_steps: int | None = None, threshold: float | None = None,
                 device: str | torch.device | None = None, compile: bool = False, pack: bool | None = None,
                 noise: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive integer, got {slots!r}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                      or max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        if threshold is not None:
            if mode == "fixed":
                raise ValueError("threshold has no effect in fixed mode (every puzzle runs max_steps)")
            if not 0.0 < threshold <= 1.0:
                raise ValueError(f"threshold must be a probability in (0, 1], got {threshold!r}")
        if not noise >= 0.0 or noise == float("inf"):
            raise ValueError(f"noise must be a finite scale >= 0, got {noise!r}")
        self.model, self.mode, self.slots, self.threshold, self.noise = model, mode, slots, threshold, noise
        self.max_steps = max_steps or model.config.halt_max_steps
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        model.to(self.device).eval()
        fn = lambda *args: _advance(model, *args)  # noqa: E731
        self._step = torch.compile(fn, dynamic=False) if compile else fn
        # Eager runs skip empty slots (rows are independent, so answers do not change); a compiled
        # step keeps its static shape and masks them instead, so it never recompiles.
        self.pack = (not compile) if pack is None else pack
        self.calls = 0  # batched supervision steps run so far (each costs `slots` rows of compute)

    @torch.inference_mode()
    def run(self, puzzles: Iterable[np.ndarray] | Iterable[tuple], batch_hint: int | None = None,
            record: Callable[[int], bool] | None = None) -> Iterator[Answer]:
        """Yield an `Answer` per puzzle as it finishes. Items are (S,) token arrays,
        (tokens, puzzle_identifier) pairs or (tokens, puzzle_identifier, noise_key) triples;
        `batch_hint` (the number of puzzles, when known) only shrinks the slot count for inputs
        smaller than it. A `noise_key` (a tuple of ints, or None for no noise) names the item's
        noise stream: with `noise` > 0 its latent gets `noise` * N(0, 1) at every step, drawn from
        a generator seeded by (key, step), so the answer never depends on the slot it ran in.
        Puzzles whose input index `record` accepts carry their answer after every step (`trace`),
        for pictures of how the model refines its guess."""
        cfg, dev = self.model.config, self.device
        B = self.slots if batch_hint is None else max(1, min(self.slots, batch_hint))
        queue = enumerate(puzzles)
        # Slot state: everything on the device except who occupies which slot.
        z = torch.zeros(B, cfg.total_len, cfg.hidden_size, dtype=cfg.dtype, device=dev)
        z_H, z_L = z, z.clone()
        steps = torch.zeros(B, dtype=torch.int32, device=dev)
        inputs = torch.zeros(B, cfg.seq_len, dtype=torch.int32, device=dev)
        pids = torch.zeros(B, dtype=torch.int32, device=dev)
        owner = np.full(B, -1, dtype=np.int64)  # puzzle index in each slot, -1 = empty
        keys: list = [None] * B  # noise stream of each slot's puzzle (None: noiseless)
        taken_steps = np.zeros(B, dtype=np.int64)  # host copy of `steps`, to seed the noise
        first_halt = torch.zeros(B, dtype=torch.int32, device=dev)  # first step the rule said stop; 0 = not yet
        traces: list = [None] * B  # recorded slots: [(answer, probability) after each step]
        drained = False
        while True:
            free = np.flatnonzero(owner < 0)
            refill = self.mode == "continuous" or len(free) == B  # whole-batch modes wait for all
            fresh = np.zeros(B, dtype=bool)
            if refill and not drained and len(free):
                taken = list(itertools.islice(queue, len(free)))
                drained = len(taken) < len(free)
                if taken:
                    slot = free[: len(taken)]
                    new_inputs, new_ids = self._rows([item for _, item in taken])
                    idx = torch.from_numpy(slot).to(dev)
                    inputs[idx] = torch.from_numpy(new_inputs).to(dev)
                    pids[idx] = torch.from_numpy(new_ids).to(dev)
                    owner[slot] = [i for i, _ in taken]
                    fresh[slot] = True
                    taken_steps[slot] = 0
                    first_halt[idx] = 0
                    for s, (i, item) in zip(slot, taken):
                        keys[s] = item[2] if isinstance(item, tuple) and len(item) > 2 else None
                        traces[s] = [] if record is not None and record(i) else None
            busy = owner >= 0
            if not busy.any():
                return
            self.calls += 1
            packed = self.pack and not busy.all()
            if packed:  # eager: compute the occupied slots only
                rows = torch.from_numpy(np.flatnonzero(busy)).to(dev)
                z_H[rows], z_L[rows], steps[rows], preds, q_halt, q_continue = self._step(
                    z_H[rows], z_L[rows], steps[rows], torch.from_numpy(fresh[busy]).to(dev), inputs[rows], pids[rows],
                    self._noise(np.flatnonzero(busy), keys, taken_steps))
            else:  # static shape: every slot runs; empty ones restart each step and are dropped
                rows = torch.arange(B, device=dev)
                z_H, z_L, steps, preds, q_halt, q_continue = self._step(
                    z_H, z_L, steps, torch.from_numpy(fresh | ~busy).to(dev), inputs, pids,
                    self._noise(np.flatnonzero(busy), keys, taken_steps, B))
            taken_steps[busy] += 1
            row_steps = steps[rows]
            last = row_steps >= self.max_steps
            wants = last | self.model.wants_halt(q_halt, q_continue, self.threshold)
            first_halt[rows] = torch.where(first_halt[rows] == 0, torch.where(wants, row_steps, 0), first_halt[rows])
            halt = last if self.mode == "fixed" else wants
            if not packed:  # a static step: empty slots never finish
                halt = halt & torch.from_numpy(busy).to(dev)
            if record is not None:
                self._record(traces, rows.cpu().numpy(), preds, q_halt)
            done = torch.nonzero(halt).squeeze(-1)  # positions within `rows`
            if done.numel() == 0:
                continue
            out_preds = preds[done].cpu().numpy()
            out_steps = row_steps[done].cpu().numpy()
            out_first = first_halt[rows[done]].cpu().numpy()
            out_q = q_halt[done].float()
            out_prob, out_q = torch.sigmoid(out_q).cpu().numpy(), out_q.cpu().numpy()
            slots_done = rows[done].cpu().numpy()
            for j, s in enumerate(slots_done):
                trace = traces[s] and (np.stack([p for p, _ in traces[s]]), np.array([q for _, q in traces[s]]))
                yield Answer(int(owner[s]), out_preds[j], int(out_steps[j]), float(out_prob[j]), float(out_q[j]),
                             int(out_first[j]), trace)
            owner[slots_done] = -1

    def _record(self, traces: list, slots: np.ndarray, preds: torch.Tensor, q_halt: torch.Tensor) -> None:
        """Append this step's answer and halting probability to the traces of recorded slots."""
        pos = [j for j, s in enumerate(slots) if traces[s] is not None]
        if not pos:
            return
        at = torch.tensor(pos, device=preds.device)
        # The probabilities as one vector over all slots, each at its slot: a vectorised sigmoid can
        # round the last bit of an element by where it sits in the vector, and so every puzzle's
        # trace reads the same as when it ran in a whole batch of `slots` rows.
        full = torch.zeros(self.slots, dtype=torch.float32, device=q_halt.device)
        full[torch.from_numpy(slots).to(q_halt.device)] = q_halt.float()
        p, q = preds[at].cpu().numpy(), torch.sigmoid(full)[torch.from_numpy(slots[pos]).to(q_halt.device)].cpu().numpy()
        for j, k in enumerate(pos):
            traces[slots[k]].append((p[j], q[j]))

    def _noise(self, slots: np.ndarray, keys: list, taken_steps: np.ndarray,
               rows: int | None = None) -> torch.Tensor | None:
        """Latent noise for the rows computed this step (`slots`, or all `rows` slots of a static
        step); None when no running puzzle asks for noise, so noiseless runs stay bit-for-bit."""
        if not self.noise or all(keys[s] is None for s in slots):
            return None
        cfg = self.model.config
        out = np.zeros((len(slots) if rows is None else rows, cfg.total_len, cfg.hidden_size), dtype=np.float32)
        for j, s in enumerate(slots):
            if keys[s] is not None:
                rng = np.random.default_rng([*keys[s], int(taken_steps[s])])
                out[j if rows is None else s] = rng.standard_normal(out.shape[1:], dtype=np.float32)
        return torch.from_numpy(out * np.float32(self.noise)).to(self.device)

    def _rows(self, items: list) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.model.config
        pairs = [(it[0], it[1]) if isinstance(it, tuple) else (it, 0) for it in items]
        rows = np.stack([np.asarray(x) for x, _ in pairs]).astype(np.int32)
        ids = np.array([int(p) for _, p in pairs], dtype=np.int32)
        if rows.ndim != 2 or rows.shape[1] != cfg.seq_len:
            raise ValueError(f"puzzles must have seq_len={cfg.seq_len} tokens, got shape {rows.shape[1:]}")
        if rows.min() < 0 or rows.max() >= cfg.vocab_size:
            raise ValueError(f"tokens must lie in 0..{cfg.vocab_size - 1}, got {rows.min()}..{rows.max()}")
        limit = max(cfg.num_puzzle_identifiers, 1)
        if ids.min() < 0 or ids.max() >= limit:
            raise ValueError(f"puzzle identifiers must lie in 0..{limit - 1}, got {ids.min()}..{ids.max()}")
        return rows, ids

    def solve(self, inputs: np.ndarray, puzzle_identifiers: np.ndarray | None = None) -> SolveResult:
        """All puzzles of `inputs` (N, S); results in input order."""
        inputs = np.asarray(inputs)
        if inputs.size == 0:
            inputs = inputs.reshape(0, self.model.config.seq_len)
        if inputs.ndim != 2:
            raise ValueError(f"inputs must be a (N, seq_len) array, got shape {inputs.shape}")
        n, seq = inputs.shape
        ids = (np.zeros(n, dtype=np.int32) if puzzle_identifiers is None
               else np.asarray(puzzle_identifiers).astype(np.int32).reshape(-1))
        if len(ids) != n:
            raise ValueError(f"puzzle_identifiers has {len(ids)} entries for {n} puzzles")
        preds = np.zeros((n, seq), dtype=np.int32)
        steps = np.zeros(n, dtype=np.int32)
        prob, logit = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
        for a in self.run(zip(inputs, ids.tolist()), batch_hint=n):
            preds[a.index], steps[a.index] = a.preds, a.steps
            prob[a.index], logit[a.index] = a.q_halt_prob, a.q_halt_logit
        return SolveResult(preds, steps, prob, logit)


def solve(model: HaltingModel, inputs: np.ndarray, puzzle_identifiers: np.ndarray | None = None,
          mode: str = "continuous", slots: int = 128, max_steps: int | None = None,
          threshold: float | None = None, device: str | torch.device | None = None,
          compile: bool = False) -> SolveResult:
    """Solve (N, S) puzzles with `model`; see the module docstring for the modes and halting rule."""
    engine = Engine(model, mode=mode, slots=slots, max_steps=max_steps, threshold=threshold,
                    device=device, compile=compile)
    return engine.solve(inputs, puzzle_identifiers)


def iter_solve(model: HaltingModel, puzzles: Iterable, mode: str = "continuous", slots: int = 128,
               max_steps: int | None = None, threshold: float | None = None,
               device: str | torch.device | None = None, compile: bool = False) -> Iterator[Answer]:
    """Streaming form: `Answer`s in the order puzzles finish (each carries its input index)."""
    engine = Engine(model, mode=mode, slots=slots, max_steps=max_steps, threshold=threshold,
                    device=device, compile=compile)
    yield from engine.run(puzzles)
