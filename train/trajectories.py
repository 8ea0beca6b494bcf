"""Think more at test time: K trajectories per puzzle through the slot engine, then one answer.

    engine = Engine(model, noise=1.0)                       # train/infer.py; noise only for "noise"/"both"
    s = sample(engine, inputs, ids, k=8, diversity="aug", family="sudoku", info={"box": (2, 3)})
    pick = select(s, "vote")                               # (N,) trajectory chosen per puzzle
    answers = chosen(s, pick).preds[:, 0]                  # (N, S) in the puzzles' own frame

Trajectory t of puzzle i is one more item in the engine's queue, so all N*K share the slot pool and
each halts on its own. Trajectory 0 is always the plain pass (no augmentation, no noise): K = 1 is
today's engine exactly. The others differ by
    aug    a random symmetry of the puzzle (Sudoku: digit relabelling, rows within bands, bands,
           columns within stacks, stacks, transpose for square boxes; maze: one of the 8 dihedral
           maps), its answer mapped back to the original frame;
    noise  engine.noise * N(0, 1) added to the latent at every supervision step;
    both   the two together.
Every random draw is seeded by (seed, i, t) (and the step), so answers repeat, do not depend on K
or on which slot ran them, and the first k trajectories of a K-run are a k-run.

Rules (`select`): vote (most frequent answer; ties: higher mean halting probability, then lower t),
confidence (highest sigmoid(q_halt)), first-halt (fewest steps; ties: confidence, then t), and
checked (vote among answers the puzzle's own checker accepts, else vote): a solver feature for
Sudoku and mazes, always reported apart from the pure-model rules. The trajectories' order of
arrival never matters: they are stored by t. Tests: tests/test_testtime.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from puzzles.grid import NUM_DIHEDRAL, dihedral_index_map
from puzzles.sudoku_aug import cell_order, random_augmentation

from .infer import Engine
from .sampling import RULES

_FRAME, _NOISE = 0, 1  # stream tags: a trajectory's augmentation draw and its noise never share a seed

Checker = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (inputs (M, S), preds (M, S)) -> ok (M,)


@dataclass(frozen=True)
class Frame:
    """A symmetry of a puzzle in token space: augmented[j] = tokmap[original[idx[j]]]."""

    idx: np.ndarray  # (S,) cell permutation
    tokmap: np.ndarray  # (V,) token permutation (identity on padding and blank)

    def apply(self, tokens: np.ndarray) -> np.ndarray:
        return self.tokmap[np.asarray(tokens)[..., self.idx]].astype(np.int32)

    def invert(self, tokens: np.ndarray) -> np.ndarray:
        inv_map = np.argsort(self.tokmap)
        out = np.empty_like(np.asarray(tokens))
        out[..., self.idx] = inv_map[np.asarray(tokens)].astype(out.dtype)
        return out


def identity(seq_len: int, vocab: int) -> Frame:
    return Frame(np.arange(seq_len), np.arange(vocab))


def random_frame(rng: np.random.Generator, family: str, info: dict, seq_len: int, vocab: int) -> Frame:
    """A random symmetry of a `family` puzzle (ValueError for a family without one)."""
    if family == "sudoku" and info.get("box"):
        aug = random_augmentation(rng, tuple(info["box"]))
        tokmap = np.arange(vocab)
        tokmap[1:len(aug.digit_map) + 1] = aug.digit_map + 1  # token = digit + 1; blank (digit 0) stays
        return Frame(cell_order(aug), tokmap)
    if family == "maze":
        n = int(round(seq_len ** 0.5))
        return Frame(dihedral_index_map(n, n, int(rng.integers(NUM_DIHEDRAL))), np.arange(vocab))
    raise ValueError(f"augmentation diversity is defined for sudoku and maze, not {family!r} "
                     f"(ARC's augmentations are the dataset's own rows; use noise)")


@dataclass
class Samples:
    """K answers per puzzle, all in the puzzle's own frame, indexed by trajectory t (not arrival)."""

    preds: np.ndarray  # (N, K, S) int32
    q_halt_prob: np.ndarray  # (N, K) float32 sigmoid(q_halt) at each answer's step
    q_halt_logit: np.ndarray  # (N, K) float32
    steps: np.ndarray  # (N, K) int32 supervision steps
    halt_steps: np.ndarray | None = None  # (N, K) int32 first step the halting rule said stop
    # The recorded puzzles' plain pass (trajectory 0) after every step, the final answer repeated
    # after it finished: (M, T, S) answers and (M, T) sigmoid(q_halt), T = the engine's max_steps.
    trace_preds: np.ndarray | None = None
    trace_q: np.ndarray | None = None

    def first(self, k: int) -> "Samples":
        """The first k trajectories (what a run with K = k would have produced)."""
        return Samples(self.preds[:, :k], self.q_halt_prob[:, :k], self.q_halt_logit[:, :k], self.steps[:, :k],
                       None if self.halt_steps is None else self.halt_steps[:, :k], self.trace_preds, self.trace_q)


def sample(engine: Engine, inputs: np.ndarray, ids: np.ndarray | None, k: int, diversity: str,
           family: str, info: dict, seed: int = 0, keys: np.ndarray | None = None,
           record: np.ndarray | None = None) -> Samples:
    """Run K trajectories of each of the (N, S) `inputs` through `engine` (see the module docstring).
    `keys` (N,) non-negative ints name the puzzles in the random draws (default: their position).
    `record` (N,) bool: the puzzles whose plain pass is traced step by step (`Samples.trace_*`)."""
    inputs = np.asarray(inputs, dtype=np.int32).reshape(len(inputs), engine.model.config.seq_len)
    n, seq = inputs.shape
    ids = np.zeros(n, dtype=np.int32) if ids is None else np.asarray(ids, dtype=np.int32).reshape(-1)
    vocab = engine.model.config.vocab_size
    use_aug, use_noise = diversity in ("aug", "both"), diversity in ("noise", "both")
    if use_noise and k > 1 and not engine.noise:
        raise ValueError(f"diversity {diversity} needs an engine with noise > 0")
    keys = np.arange(n) if keys is None else np.asarray(keys, dtype=np.int64).reshape(-1)
    plain = identity(seq, vocab)
    frames = [[plain if t == 0 or not use_aug else
               random_frame(np.random.default_rng([seed, keys[i], t, _FRAME]), family, info, seq, vocab)
               for t in range(k)] for i in range(n)]

    def queue() -> Iterator[tuple]:
        for i in range(n):
            for t in range(k):
                key = (seed, int(keys[i]), t, _NOISE) if use_noise and t > 0 else None
                yield frames[i][t].apply(inputs[i]), int(ids[i]), key

    preds = np.zeros((n, k, seq), dtype=np.int32)
    prob, logit = np.zeros((n, k), dtype=np.float32), np.zeros((n, k), dtype=np.float32)
    steps, halt_steps = np.zeros((n, k), dtype=np.int32), np.zeros((n, k), dtype=np.int32)
    record = np.zeros(n, dtype=bool) if record is None else np.asarray(record, dtype=bool)
    slot_of = np.cumsum(record) - 1  # recorded puzzle i -> its row in the traces
    T = engine.max_steps
    trace_preds = np.zeros((int(record.sum()), T, seq), dtype=np.int32)
    trace_q = np.zeros((int(record.sum()), T), dtype=np.float32)
    traced = (lambda j: j % k == 0 and bool(record[j // k])) if record.any() else None
    for a in engine.run(queue(), batch_hint=n * k, record=traced):
        i, t = divmod(a.index, k)
        preds[i, t] = frames[i][t].invert(a.preds)
        prob[i, t], logit[i, t], steps[i, t], halt_steps[i, t] = a.q_halt_prob, a.q_halt_logit, a.steps, a.halt_step
        if a.trace is not None:  # trajectory 0: the plain frame, nothing to map back
            p, q = a.trace
            trace_preds[slot_of[i]] = np.concatenate([p, np.repeat(p[-1:], T - len(p), 0)])
            trace_q[slot_of[i]] = np.concatenate([q, np.repeat(q[-1:], T - len(q), 0)])
    return Samples(preds, prob, logit, steps, halt_steps, trace_preds, trace_q)


def _vote(preds: np.ndarray, prob: np.ndarray, among: np.ndarray) -> int:
    """Trajectory whose answer is the most frequent among `among` (ties: mean probability, then t)."""
    groups: dict[bytes, list[int]] = {}
    for t in np.flatnonzero(among):
        groups.setdefault(preds[t].tobytes(), []).append(int(t))
    best = max(groups.values(), key=lambda ts: (len(ts), float(np.mean(prob[ts])), -ts[0]))
    return best[0]


def select(s: Samples, rule: str, inputs: np.ndarray | None = None, checker: Checker | None = None) -> np.ndarray:
    """Chosen trajectory per puzzle (N,) under `rule`; `s.preds[np.arange(N), chosen]` are the answers.
    `checked` needs the puzzles' `inputs` and a `checker`."""
    n, k = s.steps.shape
    if rule == "confidence":
        return np.argmax(s.q_halt_prob, axis=1)  # first maximum: lowest t on ties
    if rule == "first-halt":
        return np.array([np.lexsort((np.arange(k), -s.q_halt_prob[i], s.steps[i]))[0] for i in range(n)], dtype=np.int64)
    if rule == "vote":
        return np.array([_vote(s.preds[i], s.q_halt_prob[i], np.ones(k, bool)) for i in range(n)], dtype=np.int64)
    if rule == "checked":
        if checker is None or inputs is None:
            raise ValueError("select checked needs the puzzles' inputs and a checker")
        ok = checker(np.repeat(np.asarray(inputs), k, axis=0), s.preds.reshape(n * k, -1)).reshape(n, k)
        return np.array([_vote(s.preds[i], s.q_halt_prob[i], ok[i] if ok[i].any() else np.ones(k, bool))
                         for i in range(n)], dtype=np.int64)
    raise ValueError(f"select must be one of {', '.join(RULES)}, got {rule!r}")


def chosen(s: Samples, choice: np.ndarray) -> Samples:
    """The chosen trajectory of each puzzle as a one-sample `Samples` (preds (N, 1, S) etc.)."""
    rows = np.arange(len(choice))
    return Samples(s.preds[rows, choice][:, None], s.q_halt_prob[rows, choice][:, None],
                   s.q_halt_logit[rows, choice][:, None], s.steps[rows, choice][:, None],
                   None if s.halt_steps is None else s.halt_steps[rows, choice][:, None], s.trace_preds, s.trace_q)


def exact(preds: np.ndarray, labels: np.ndarray, ignore: int) -> np.ndarray:
    """Whole-answer correctness over the last axis (cells labelled `ignore` do not count)."""
    mask = labels != ignore
    return ((preds == labels) | ~mask).all(-1) & mask.any(-1)


def rule_hits(s: Samples, labels: np.ndarray, ignore: int, inputs: np.ndarray | None = None,
              checker: Checker | None = None) -> dict[str, np.ndarray]:
    """Per puzzle (N,) bool: is the answer exact under each rule ('checked' only with a checker), for
    the plain pass ('single', trajectory 0) and for any trajectory ('any': an oracle, not a rule)."""
    hits = exact(s.preds, np.asarray(labels)[:, None], ignore)  # (N, K)
    rows = np.arange(len(hits))
    out = {"single": hits[:, 0], "any": hits.any(1)}
    for rule in RULES:
        if rule != "checked" or checker is not None:
            out[rule] = hits[rows, select(s, rule, inputs, checker)]
    return out
