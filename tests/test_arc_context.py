"""In-context ARC (`--context K`: demonstration pairs and a query in one sequence) and 3-D rotary
positions (`arch.pos_encodings=rope3d`).
Run: python -m pytest -q tests/test_arc_context.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ArchConfig, DataShape, build_model
from models.layers import GridConv, RotaryEmbedding, apply_rope, grid_positions
from models.losses import act_loss
from puzzles import arc
from puzzles.arc.build import build_arc
from puzzles.build_options import ArcOptions
from puzzles.dataset import load_identifiers, load_split
from puzzles.errors import PuzzleError, run_cli
from train.config import BuildConfig, EvalConfig
from train.evaluation import evaluate_split
from train.loader import eval_batches

from .test_evaluate import CPU, Oracle, labels_of
from .test_train import TINY, _keep_threads  # noqa: F401  (_keep_threads: an autouse fixture)

TINY_ARC = Path(__file__).resolve().parent / "fixtures" / "reference" / "datasets" / "inputs" / "arc" / "arc-tiny"
K, CANVAS = 2, 6
SLOTS = 2 * K + 2


def build(out: Path, *more: str) -> Path:
    from puzzles.build import main as build_main
    assert build_main(["arc", "--prefix", str(TINY_ARC), "--canvas", str(CANVAS), "--aug", "3", "--test-set",
                       "training", "evaluation", "--out", str(out), "--no-progress", *more]) in (0, None)
    return out


@pytest.fixture(scope="module")
def context_data(tmp_path_factory) -> Path:
    """The three tiny tasks on a 6x6 canvas, 3 augmented copies each, K = 2 demonstrations in context."""
    return build(tmp_path_factory.mktemp("arc") / "arc-context", "--context", str(K))


@pytest.fixture(scope="module")
def plain_data(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("arc") / "arc-plain")


def slot_grids(row: np.ndarray) -> list[np.ndarray | None]:
    """Each slot's grid, moved back to the top left (all grids of an example share one offset); None for PAD."""
    grids = []
    for slot in row.reshape(SLOTS, CANVAS, CANVAS):
        if not slot.any():
            grids.append(None)
            continue
        rows, cols = np.nonzero(slot)
        moved = np.zeros_like(slot)
        moved[:CANVAS - rows.min(), :CANVAS - cols.min()] = slot[rows.min():, cols.min():]
        grids.append(arc.crop(moved.ravel()))
    return grids


def offsets(row: np.ndarray) -> set[tuple[int, int]]:
    return {(int(np.nonzero(s)[0].min()), int(np.nonzero(s)[1].min()))
            for s in row.reshape(SLOTS, CANVAS, CANVAS) if s.any()}


# --- the dataset ------------------------------------------------------------------------------------
def test_examples_hold_demonstrations_and_query_in_their_slots(context_data):
    """Every example, mapped back through its identifier's transform and colour map: K demonstration
    pairs of its own task (leave-one-out in train, the first K in test), then the query input, a PAD
    query-output slot in the input, and labels only in the query-output slot."""
    tasks = {name: t for subset in arc.load_subsets(TINY_ARC, ["training", "evaluation"]).values()
             for name, t in subset.items()}
    keys = arc.copy_keys(load_identifiers(context_data))
    as_bytes = lambda g: (g.shape, g.tobytes())
    for split_name in ("train", "test"):
        split = load_split(context_data, split_name)
        assert split.meta["seq_len"] == SLOTS * CANVAS * CANVAS and split.meta["context"] == K
        assert split.meta["slots"] == SLOTS and split.meta["canvas"] == CANVAS
        inputs, labels = split.examples(np.arange(len(split)))
        ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
        transformed = set()
        for x, y, ident in zip(inputs, labels, ids):
            task = tasks[keys.tasks[keys.task[ident]]]
            t, perm = keys.dihedral[ident], keys.perm[ident]
            transformed.add(t)
            assert not y.reshape(SLOTS, -1)[:-1].any() and not x.reshape(SLOTS, -1)[-1].any()
            assert len(offsets(x) | offsets(y)) == 1  # one translation for every grid of the example
            back = [None if g is None else arc.invert_grid(g, t, perm) for g in slot_grids(x)[:-1]]
            answer = arc.invert_grid(slot_grids(y)[-1], t, perm)
            demos = [(back[2 * j], back[2 * j + 1]) for j in range(K) if back[2 * j] is not None]
            query = (back[-1], answer)
            if split_name == "test":
                assert [tuple(map(as_bytes, p)) for p in demos] == [tuple(map(as_bytes, p)) for p in task.train[:K]]
                assert any(as_bytes(query[0]) == as_bytes(i) and (o is None or as_bytes(o) == as_bytes(query[1]))
                           for i, o in task.test)
                assert offsets(x) == {(0, 0)}
            else:
                pairs = [tuple(map(as_bytes, p)) for p in task.train]  # every task's test pairs are held out
                q = pairs.index(tuple(map(as_bytes, query)))
                expect = [pairs[(q + j) % len(pairs)] for j in range(1, len(pairs))][:K]
                assert [tuple(map(as_bytes, p)) for p in demos] == expect  # the pairs after it, never itself
        assert len(transformed) > 2


def test_context_zero_is_todays_layout_and_bad_values_are_one_line(plain_data, tmp_path, capsys):
    tasks = arc.load_subsets(TINY_ARC, ["training", "evaluation"])
    plain, zero = build_arc(tasks, "evaluation", 3, 1, canvas=CANVAS), build_arc(tasks, "evaluation", 3, 1,
                                                                                 canvas=CANVAS, context=0)
    for name in ("train", "test"):
        assert plain.splits[name].meta == zero.splits[name].meta
        for key, value in plain.splits[name].compact.items():
            np.testing.assert_array_equal(value, zero.splits[name].compact[key])
    assert "context" not in json.loads((plain_data / "train" / "dataset.json").read_text())
    with pytest.raises(PuzzleError, match="context"):
        build_arc(tasks, "evaluation", 3, 1, canvas=CANVAS, context=-1)
    with pytest.raises(PuzzleError, match="context"):
        ArcOptions(context=-1)
    assert BuildConfig(preset="quick", context=3).options("arc").context == 3
    with pytest.raises(ValueError, match="data.build: arc option context must be a count >= 0"):
        BuildConfig(context=-1).options("arc")
    with pytest.raises(ValueError, match="data.build.context is not an option of maze"):
        BuildConfig(context=3).options("maze")
    from puzzles.build import main as build_main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # the argument parser: usage, then one error line
        build_main(["arc", "--context", "-1", "--out", str(tmp_path / "x")])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert exit_.value.code == 2 and len(errors) == 1 and "--context: expected a count >= 0" in errors[0]
    assert not (tmp_path / "x").exists()


# --- 3-D rotary positions -----------------------------------------------------------------------------
def rope3d_reference(head_dim: int, theta: float, row, col, slot) -> torch.Tensor:
    """The angles written out per position: row and column frequencies as 2-D RoPE, the slot's the
    same frequencies reversed, added to both halves."""
    half = head_dim // 2
    f = [theta ** (-i / half) for i in range(0, half, 2)]
    angles = [[r * f[j] + s * f[::-1][j] for j in range(len(f))] + [c * f[j] + s * f[::-1][j] for j in range(len(f))]
              for r, c, s in zip(row, col, slot)]
    angles = torch.tensor(angles, dtype=torch.float64)
    return torch.cat((angles, angles), -1)


def test_rope3d_is_a_function_of_row_column_slot_and_is_rope2d_on_one_grid():
    prefix, slots, rows, cols, d = 1, 3, 2, 3, 16
    cos, sin = RotaryEmbedding(d, prefix + slots * rows * cols, 100.0, grid=(prefix, rows, cols), slots=slots)()
    # position p of the sequence: prefix at (0, 0, 0), then slot s, row r, column c in order
    row, col = grid_positions(0, rows, cols)
    where = [(0, 0, 0)] * prefix + [(int(r), int(c), s) for s in range(slots) for r, c in zip(row, col)]
    ref = rope3d_reference(d, 100.0, *zip(*where))
    torch.testing.assert_close(cos.double(), ref.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin.double(), ref.sin(), atol=1e-6, rtol=0)
    # one grid (or the first slot of several): exactly rope2d, bit for bit
    cos2, sin2 = RotaryEmbedding(d, prefix + rows * cols, 100.0, grid=(prefix, rows, cols))()
    one = RotaryEmbedding(d, prefix + rows * cols, 100.0, grid=(prefix, rows, cols), slots=1)()
    assert torch.equal(one[0], cos2) and torch.equal(one[1], sin2)
    assert torch.equal(cos[:prefix + rows * cols], cos2) and torch.equal(sin[:prefix + rows * cols], sin2)
    # relative: a score depends only on the (row, column, slot) offset of the two cells
    q, k = torch.randn(1, 1, 1, d, dtype=torch.float64), torch.randn(1, 1, 1, d, dtype=torch.float64)
    score = lambda a, b: float((apply_rope(q, cos[a:a + 1].double(), sin[a:a + 1].double())
                                * apply_rope(k, cos[b:b + 1].double(), sin[b:b + 1].double())).sum())
    at = lambda s, r, c: prefix + s * rows * cols + r * cols + c
    assert score(at(0, 0, 0), at(1, 1, 2)) == pytest.approx(score(at(1, 0, 0), at(2, 1, 2)), abs=1e-5)
    assert score(at(0, 0, 0), at(1, 0, 0)) != pytest.approx(score(at(0, 0, 0), at(0, 0, 0)), abs=1e-3)


def test_rope3d_model_on_one_grid_is_the_rope2d_model():
    arch = dict(hidden_size=32, num_heads=2, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=2)
    batch = {"inputs": torch.randint(0, 12, (2, 36)), "labels": torch.randint(0, 12, (2, 36)),
             "puzzle_identifiers": torch.zeros(2, dtype=torch.int32)}
    outs = []
    for pos, slots in (("rope2d", 0), ("rope3d", 1)):
        torch.manual_seed(0)
        model = build_model("trm", ArchConfig(**arch, pos_encodings=pos),
                            DataShape(seq_len=36, vocab_size=12, grid_slots=slots), "float32")
        carry = model.initial_carry(batch)
        outs.append(model.step(carry, batch)[1])  # logits
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="rope3d needs a dataset laid out in grid slots"):
        build_model("trm", ArchConfig(**arch, pos_encodings="rope3d"), DataShape(seq_len=36, vocab_size=12), "float32")


def test_grid_conv_keeps_each_slot_to_itself():
    conv = GridConv(channels=1, kernel=3, prefix=1, rows=2, cols=3, slots=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    h = torch.zeros(1, 1 + 12, 1)
    h[0, 1 + 5] = 1.0  # slot 0, last row, last column
    out = conv(h)[0, :, 0]
    assert out[1 + 6:].abs().sum() == 0  # slot 1 (the rows stacked right below) is untouched
    assert out[1:1 + 6].tolist() == [0, 1, 1, 0, 1, 2]  # the cell itself (kept + mixed) and its neighbours


# --- the loss, the voter, the trainer ----------------------------------------------------------------
def test_the_loss_sees_only_the_query_output(context_data):
    split = load_split(context_data, "train")
    batch = next(eval_batches(split, 4))
    labels = batch["labels"].long()
    outside = torch.zeros_like(labels, dtype=torch.bool).view(len(labels), SLOTS, -1)
    outside[:, :-1] = True
    outside = outside.view_as(labels)
    assert (labels[outside] == -100).all() and (labels[~outside] != -100).any()
    logits = torch.randn(*labels.shape, 12, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(len(labels), dtype=torch.float64)
    args = (q, q, None, torch.ones(len(labels), dtype=torch.bool), torch.ones(len(labels), dtype=torch.int32))
    loss, metrics, _ = act_loss(logits, labels, *args)
    loss.backward()
    assert logits.grad[outside].abs().max() == 0 and logits.grad[~outside].abs().max() > 0
    changed = logits.detach() + 10 * torch.randn_like(logits) * outside[..., None]
    loss2, metrics2, _ = act_loss(changed, labels, *args)
    assert loss2.item() == loss.item() and metrics2["exact_accuracy"] == metrics["exact_accuracy"]


def test_answers_in_the_query_slot_vote_back_and_other_slots_do_not_count(context_data, tmp_path):
    split = load_split(context_data, "test")
    right = Oracle(12, 1, labels_of)
    right.learn(split)
    metrics = evaluate_split(right, split, EvalConfig(), CPU, context_data, tmp_path, 4)
    assert metrics["pass@1"] == 1.0 and metrics["exact_accuracy"] == 1.0 and metrics["changed_cell_accuracy"] == 1.0
    submission = json.loads((tmp_path / "submission.json").read_text())
    puzzles = json.loads((context_data / "test_puzzles.json").read_text())
    assert all(entry["attempt_1"] == ex["output"] for task in puzzles for entry, ex in
               zip(submission[task], puzzles[task]["test"]))

    def shifted(batch):  # the answer written one slot early, over the query input
        y = labels_of(batch).view(len(batch["inputs"]), SLOTS, -1)
        return torch.cat((y[:, 1:], y[:, :1]), 1).reshape(len(y), -1)
    wrong = Oracle(12, 1, shifted)
    wrong.learn(split)
    metrics = evaluate_split(wrong, split, EvalConfig(), CPU, context_data, None, 4)
    assert metrics["pass@1"] == 0.0 and metrics["exact_accuracy"] == 0.0
    copy = Oracle(12, 1, lambda b: b["inputs"].long().view(len(b["inputs"]), SLOTS, -1)[:, -2:-1]
                  .expand(-1, SLOTS, -1).reshape(len(b["inputs"]), -1))  # the query input in every slot
    copy.learn(split)
    assert evaluate_split(copy, split, EvalConfig(), CPU, context_data, None, 4)["changed_cell_accuracy"] == 0.0


def test_tiny_in_context_run_trains_and_votes(context_data, plain_data, tmp_path, capsys):
    from train.cli import main
    from train.model_io import load_run
    run = tmp_path / "run"
    argv = ["--model", "trm", *TINY, "optim.max_steps=3", "arch.puzzle_emb_ndim=0", "arch.puzzle_emb_len=0",
            "arch.pos_encodings=rope3d", "arch.ffn_conv=3", f"data.path={context_data}", f"system.run_dir={run}"]
    assert run_cli(lambda a: main("arc", a), argv) == 0
    summary = json.loads((run / "summary.json").read_text())["eval"]
    assert {"pass@1", "pass@2", "exact_accuracy", "changed_cell_accuracy"} <= set(summary)
    loaded = load_run(run)
    assert loaded.shape.grid_slots == SLOTS and loaded.model.puzzle_emb is None
    assert loaded.model.config.slot_shape == (SLOTS, CANVAS, CANVAS)
    # train.solve reads the demonstrations of a task it never saw with each test input: no fitting
    from train.solve import main as solve_main

    from .test_solve_arc import check_submission, kaggle_files
    challenges, _ = kaggle_files(tmp_path)
    assert run_cli(solve_main, [str(run), str(tmp_path / "tasks.json"), "--solutions", str(tmp_path / "solutions.json"),
                                "--aug", "2", "--threads", "1", "--no-progress", "--dtype", "float32"]) == 0
    check_submission(json.loads((tmp_path / "tasks-answers" / "submission.json").read_text()), challenges)
    solved = json.loads((tmp_path / "tasks-answers" / "summary.json").read_text())
    assert solved["tasks"] == 3 and solved["bad_tasks"] == 0 and 0 <= solved["pass@2"] <= 1
    # rope3d on a dataset of one grid per example: one line, nothing written
    capsys.readouterr()
    argv = [a.replace(str(context_data), str(plain_data)).replace(str(run), str(tmp_path / "bad")) for a in argv]
    assert run_cli(lambda a: main("arc", a), argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "rope3d needs a dataset laid out in grid slots" in err
    assert not (tmp_path / "bad").exists()
