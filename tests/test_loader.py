"""Train/eval batching: `python -m pytest -q tests/test_loader.py`."""
from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch

from puzzles.dataset import SplitData, load_split, write_dataset
from train.loader import IGNORE_LABEL_ID, TrainLoader, eval_batches

SEQ = 6


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """20 groups of 1..3 puzzles with 1..4 examples; each row's first token encodes its row index."""
    rng = np.random.default_rng(0)
    gsizes = rng.integers(1, 4, 20)
    psizes = rng.integers(1, 5, int(gsizes.sum()))
    n = int(psizes.sum())
    inputs = np.zeros((n, SEQ), np.int64)
    inputs[:, 0] = np.arange(n)  # int64 on disk, like the reference Sudoku train arrays
    inputs[:, 1:] = rng.integers(1, 5, (n, SEQ - 1))
    labels = rng.integers(0, 5, (n, SEQ))  # 0 = ignore
    data = SplitData(meta={"vocab_size": 400, "seq_len": SEQ},
                     puzzle_identifiers=np.arange(1, len(psizes) + 1, dtype=np.int32),
                     puzzle_indices=np.concatenate([[0], np.cumsum(psizes)]).astype(np.int32),
                     group_indices=np.concatenate([[0], np.cumsum(gsizes)]).astype(np.int32),
                     inputs=inputs, labels=labels)
    ids = ["<blank>"] + [f"p{i}" for i in range(len(psizes))]
    root = write_dataset(tmp_path_factory.mktemp("ds") / "d", ids, {"train": data, "test": data})
    return load_split(root, "train")


def take(loader, k):
    return [{key: v.clone() for key, v in b.items()} for b in itertools.islice(loader, k)]


def same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def test_batch_shapes_dtypes_and_labels(split):
    with TrainLoader(split, 8, seed=0) as loader:
        for batch in take(loader, 5):
            assert batch["inputs"].shape == (8, SEQ) and batch["inputs"].dtype == torch.int32
            assert batch["labels"].shape == (8, SEQ) and batch["labels"].dtype == torch.int64
            assert batch["puzzle_identifiers"].shape == (8,) and batch["puzzle_identifiers"].dtype == torch.int32
            rows = batch["inputs"][:, 0].numpy()
            assert len(set(rows.tolist())) == 8  # no example twice in a batch
            raw = split.examples(rows)[1]
            expect = np.where(raw == 0, IGNORE_LABEL_ID, raw)
            np.testing.assert_array_equal(batch["labels"].numpy(), expect)
            assert (batch["labels"] != 0).all()
            puzzle = np.searchsorted(split.puzzle_indices, rows, side="right") - 1
            np.testing.assert_array_equal(batch["puzzle_identifiers"].numpy(), split.puzzle_identifiers[puzzle])


def test_deterministic_and_seed_dependent(split):
    with TrainLoader(split, 8, seed=3) as a, TrainLoader(split, 8, seed=3) as b, TrainLoader(split, 8, seed=4) as c:
        ba, bb, bc = take(a, 12), take(b, 12), take(c, 12)
    assert same(ba, bb)
    assert not same(ba, bc)


def test_sampling_follows_reference_rules(split):
    """Per iteration: every group visited once, one puzzle per group, examples packed in visit order."""
    loader = TrainLoader(split, 8, seed=1)
    n = loader.batches_in_iteration(0)
    batches = take(loader, n)
    assert loader.state_dict()["iteration"] == 0 and loader.state_dict()["batch"] == n
    loader.close()
    rows = np.concatenate([b["inputs"][:, 0].numpy() for b in batches])
    puzzles = np.searchsorted(split.puzzle_indices, rows, side="right") - 1
    groups = np.searchsorted(split.group_indices, puzzles, side="right") - 1
    # A puzzle's rows are contiguous; consecutive runs come from distinct groups (one puzzle each).
    runs = [g for g, _ in itertools.groupby(zip(groups, puzzles))]
    run_groups = [g for g, _ in runs]
    assert len(run_groups) == len(set(run_groups))
    # Every group but those left over for the dropped last batch is covered.
    total = split.puzzle_indices[-1]
    assert len(set(run_groups)) >= split.num_groups - 8  # at most 8 groups fit in the dropped remainder
    # Only the last puzzle of a batch may be cut short; all others contribute all their examples.
    sizes = np.diff(split.puzzle_indices)
    for b in batches:
        r = b["inputs"][:, 0].numpy()
        p = np.searchsorted(split.puzzle_indices, r, side="right") - 1
        ps = [k for k, _ in itertools.groupby(p)]
        for q in ps[:-1]:
            assert (p == q).sum() == sizes[q]
    assert len(rows) == n * 8 <= total


def test_every_group_covered_with_batch_one(split):
    with TrainLoader(split, 1, seed=2) as loader:
        rows = np.array([b["inputs"][0, 0].item() for b in take(loader, loader.batches_in_iteration(0))])
    groups = np.searchsorted(split.group_indices, np.searchsorted(split.puzzle_indices, rows, side="right") - 1,
                             side="right") - 1
    assert sorted(groups.tolist()) == list(range(split.num_groups))


def test_epochs_per_iter_and_iteration_rollover(split):
    one = TrainLoader(split, 4, seed=0)
    two = TrainLoader(split, 4, seed=0, epochs_per_iter=2)
    assert two.batches_in_iteration(0) > one.batches_in_iteration(0)
    n = one.batches_in_iteration(0)
    batches = take(one, n + 2)
    assert one.state_dict()["iteration"] == 1 and one.state_dict()["batch"] == 2
    assert len(batches) == n + 2
    one.close()


def test_state_dict_resume(split):
    ref = TrainLoader(split, 8, seed=7, prefetch=3)
    first = take(ref, 4)  # the thread has prepared more than it handed out
    state = ref.state_dict()
    rest = take(ref, 10)  # crosses an iteration boundary
    ref.close()
    assert state["batch"] == 4
    resumed = TrainLoader(split, 8, seed=7)
    resumed.load_state_dict(state)
    assert same(take(resumed, 10), rest)
    # load_state_dict on a running loader rewinds it
    resumed.load_state_dict({"seed": 7, "iteration": 0, "batch": 0, "global_batch_size": 8, "epochs_per_iter": 1})
    assert same(take(resumed, 4), first)
    resumed.close()
    with pytest.raises(ValueError, match="seed"):
        TrainLoader(split, 8, seed=8).load_state_dict(state)


def test_rank_slices_concatenate_to_global_batch(split):
    with TrainLoader(split, 8, seed=5) as whole, TrainLoader(split, 8, seed=5, rank=0, world_size=2) as r0, \
            TrainLoader(split, 8, seed=5, rank=1, world_size=2) as r1:
        for w, a, b in zip(take(whole, 6), take(r0, 6), take(r1, 6)):
            assert a["inputs"].shape == (4, SEQ)
            for k in w:
                assert torch.equal(torch.cat([a[k], b[k]]), w[k])


def test_close_stops_thread(split):
    before = threading.active_count()
    loader = TrainLoader(split, 4, seed=0, prefetch=1)
    next(loader)
    assert threading.active_count() == before + 1
    loader.close()
    assert threading.active_count() == before
    next(loader)  # iterating again restarts from the consumed position
    assert loader.state_dict()["batch"] == 2
    loader.close()


def test_batch_larger_than_iteration_raises(split):
    with pytest.raises(ValueError, match="fewer than global_batch_size"):
        next(TrainLoader(split, 10_000, seed=0))


def test_eval_batches_order_and_padding(split):
    n = len(split)
    batches = list(eval_batches(split, 16))
    assert len(batches) == -(-n // 16)
    index = torch.cat([b["index"] for b in batches])
    valid = torch.cat([b["valid"] for b in batches])
    assert torch.equal(index[valid], torch.arange(n))
    last = batches[-1]
    pad = ~last["valid"]
    assert pad.sum() == len(batches) * 16 - n > 0
    assert (last["inputs"][pad] == 0).all() and (last["labels"][pad] == IGNORE_LABEL_ID).all()
    assert (last["puzzle_identifiers"][pad] == 0).all() and (last["index"][pad] == -1).all()
    inputs = torch.cat([b["inputs"] for b in batches])[valid]
    np.testing.assert_array_equal(inputs.numpy(), split.examples(np.arange(n))[0])
    ids = torch.cat([b["puzzle_identifiers"] for b in batches])[valid].numpy()
    np.testing.assert_array_equal(ids, np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices)))
    assert batches[0]["labels"].dtype == torch.int64 and batches[0]["inputs"].dtype == torch.int32


def test_eval_batches_sharded(split):
    whole = list(eval_batches(split, 16))
    shards = [list(eval_batches(split, 16, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(whole)
    for w, a, b in zip(whole, *shards):
        for k in w:
            assert torch.equal(torch.cat([a[k], b[k]]), w[k])
