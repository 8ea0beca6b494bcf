"""ARC puzzle embedding keyed per task (`arch.puzzle_emb_keying=per_task`) and the ARC proxy metrics
(changed_cell_accuracy, the train-split rows of `eval.train_examples`).
Run: python -m pytest -q tests/test_arc_keying.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ArchConfig, DataShape, build_model
from models.embedding import NUM_DIHEDRAL, TaskPuzzleEmbedding
from puzzles import arc
from puzzles.arc.build import build_arc
from puzzles.dataset import load_identifiers, load_split
from puzzles.errors import PuzzleError, run_cli
from puzzles.splits import SplitRows
from train.config import EvalConfig, OptimConfig
from train.evaluation import evaluate_split
from train.model_io import load_run, model_record
from train.scoring import collapse_warning
from train.step import TrainStep

from .test_evaluate import CPU, Oracle, labels_of
from .test_train import TINY, _keep_threads, sudoku_data  # noqa: F401  (fixtures)

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference" / "datasets"
TINY_ARC = REFERENCE / "inputs" / "arc" / "arc-tiny"


@pytest.fixture(scope="module")
def arc_data(tmp_path_factory) -> Path:
    """The three tiny tasks on a 6x6 canvas, 6 augmented copies each, every task's test pairs held out."""
    from puzzles.build import main as build_main
    out = tmp_path_factory.mktemp("arc") / "arc-tiny-6"
    assert build_main(["arc", "--prefix", str(TINY_ARC), "--canvas", "6", "--aug", "6", "--test-set", "training",
                       "evaluation", "--out", str(out), "--no-progress"]) in (0, None)
    return out


def keyed_embedding(keys: arc.CopyKeys, ndim: int = 8) -> TaskPuzzleEmbedding:
    emb = TaskPuzzleEmbedding(len(keys.task), len(keys.tasks), ndim, torch.float32)
    emb.set_keys(keys.task, keys.dihedral, keys.perm)
    return emb


# --- the keys -------------------------------------------------------------------------------------
def test_copy_keys_are_the_augmentation_each_copy_was_built_with():
    tasks = arc.load_subsets(TINY_ARC, ["training", "evaluation"])
    build = build_arc(tasks, "evaluation", 6, 3)
    keys = arc.copy_keys(build.identifiers)
    assert keys.tasks[0] == "<blank>" and keys.task[0] == 0
    assert set(keys.tasks[1:]) == {name for subset in tasks.values() for name in subset}
    for split in build.splits.values():  # the compact arrays the examples are expanded from
        c = split.compact
        for p, ident in enumerate(split.puzzle_identifiers):
            assert keys.dihedral[ident] == c["puzzle_t"][p]
            np.testing.assert_array_equal(keys.perm[ident], c["puzzle_perm"][p])
            # undoing the key's augmentation gives the task's own pairs back
            task = {**tasks["training"], **tasks["evaluation"]}[keys.tasks[keys.task[ident]]]
            rows = np.arange(c["puzzle_indices"][p], c["puzzle_indices"][p + 1])
            pairs = {(i.shape, i.tobytes(), o.shape, o.tobytes()) for i, o in task.train + task.test if o is not None}
            for r, xi, yi in zip(rows, *arc.expand_examples(c, rows)):
                back = ()
                for g in (xi, yi):
                    (dr, dc), moved = c["example_offset"][r], np.zeros((30, 30), np.uint8)
                    moved[:30 - dr, :30 - dc] = g.reshape(30, 30)[dr:, dc:]  # the translation undone
                    grid = arc.invert_grid(arc.crop(moved.ravel()), keys.dihedral[ident], keys.perm[ident])
                    back += (grid.shape, grid.tobytes())
                assert back in pairs


def test_copy_keys_read_datasets_built_before_them():
    """The reference builder's dataset (names only, no key arrays) has its keys too."""
    keys = arc.copy_keys(load_identifiers(REFERENCE / "arc-tiny-aug-2"))
    assert keys.tasks == ["<blank>", "49d1d64f", "6150a2bd", "25ff71a9"]
    assert keys.task.tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert keys.dihedral.tolist() == [0, 0, 3, 7, 0, 1, 2, 0, 6, 1]
    assert keys.perm[2].tolist() == [0, 6, 1, 4, 7, 3, 2, 9, 5, 8]
    with pytest.raises(PuzzleError, match="expected"):
        arc.copy_keys(["<blank>", "abc|||t9|||0123456789"])


# --- the embedding ----------------------------------------------------------------------------------
def test_copies_share_their_task_vector_and_tasks_differ(arc_data):
    keys = arc.copy_keys(load_identifiers(arc_data))
    emb = keyed_embedding(keys).eval()
    torch.manual_seed(0)
    emb.weights.normal_()
    ids = torch.arange(len(keys.task))
    rows = emb.rows[ids]
    assert rows[:, 0].tolist() == keys.task.tolist()  # the task row: the same for every copy of a task
    assert (rows[:, 1] - len(keys.tasks)).tolist() == keys.dihedral.tolist()
    out = emb(ids)
    # with the augmentation codes zeroed, a copy's vector is its task's: equal within, different across
    emb.weights[len(keys.tasks):] = 0
    plain = emb(ids)
    for a in range(1, len(ids)):
        for b in range(1, len(ids)):
            same = keys.task[a] == keys.task[b]
            assert torch.equal(plain[a], plain[b]) == same
    # the code tells copies apart: every copy of a task differs from its siblings
    for t in range(1, len(keys.tasks)):
        copies = out[torch.from_numpy(keys.task == t)]
        assert len(copies) == 7 and len({tuple(v.tolist()) for v in copies}) == 7
    assert torch.equal(plain[1], emb.weights[keys.task[1]])


def test_an_optimiser_step_moves_exactly_the_rows_the_batch_read(arc_data):
    keys = arc.copy_keys(load_identifiers(arc_data))
    arch = ArchConfig(hidden_size=16, num_heads=2, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=2,
                      puzzle_emb_ndim=16, puzzle_emb_keying="per_task")
    shape = DataShape(seq_len=36, vocab_size=12, num_puzzle_identifiers=len(keys.task), num_puzzle_tasks=len(keys.tasks))
    torch.manual_seed(0)
    model = build_model("trm", arch, shape, "float32")
    model.puzzle_emb.set_keys(keys.task, keys.dihedral, keys.perm)
    table = model.puzzle_emb.weights
    assert table.shape == (len(keys.tasks) + NUM_DIHEDRAL + 100, 16)
    table.normal_()  # nonzero rows: weight decay alone moves a row the step touches
    step = TrainStep(model, OptimConfig(global_batch_size=4, lr_warmup_steps=0), total_steps=10)
    ids = torch.tensor([2, 3, 9, 2], dtype=torch.int32)  # two copies of one task, a copy of another
    batch = {"inputs": torch.randint(0, 12, (4, 36)), "labels": torch.randint(2, 12, (4, 36)),
             "puzzle_identifiers": ids}
    before = table.clone()
    assert step(model.initial_carry(batch), batch, step=1).finite
    moved = set((table != before).any(-1).nonzero().flatten().tolist())
    assert moved == set(model.puzzle_emb.rows[ids.long()].flatten().tolist())
    assert {keys.task[2], keys.task[9]} <= moved and keys.task[2] != keys.task[9]


# --- trainer, checkpoints, errors ---------------------------------------------------------------------
def tiny_arc_run(arc_data: Path, run: Path, *more: str) -> list[str]:
    return ["--model", "trm", *TINY, "optim.max_steps=2", "arch.puzzle_emb_ndim=16", f"data.path={arc_data}",
            f"system.run_dir={run}", *more]


def test_per_task_run_round_trips_and_logs_the_train_rows(arc_data, tmp_path, capsys):
    from train.cli import main
    run = tmp_path / "run"
    argv = tiny_arc_run(arc_data, run, "arch.puzzle_emb_keying=per_task", "eval.train_examples=12")
    assert run_cli(lambda a: main("arc", a), argv) == 0
    summary = json.loads((run / "summary.json").read_text())["eval"]
    assert {"changed_cell_accuracy", "pass@2", "train_exact_accuracy", "train_changed_cell_accuracy"} <= set(summary)
    out = capsys.readouterr().out
    copy = arc.copy_input_score(json.loads((arc_data / "test_puzzles.json").read_text()))
    assert (f"pass@2 {summary['pass@2']:.3f} (copying the input: {copy:.3f}); an untrained model of this shape: "
            f"python -m bench.arc_baselines {arc_data} --checkpoint {run}") in out
    # four test inputs with four different true outputs; after two steps (on this machine: half of them
    # answered with one grid) the final lines warn exactly when collapse_warning says so
    assert summary["same_truth_share"] == 0.25 and 0.25 <= summary["same_answer_share"] <= 1
    warning = collapse_warning(summary, run)
    assert warning in out if warning else "got the same answer grid" not in out
    loaded = load_run(run)
    keys = arc.copy_keys(load_identifiers(arc_data))
    emb = loaded.model.puzzle_emb
    assert loaded.arch.puzzle_emb_keying == "per_task" and loaded.shape.num_puzzle_tasks == len(keys.tasks)
    assert isinstance(emb, TaskPuzzleEmbedding) and emb.keyed
    assert torch.equal(emb.rows, keyed_embedding(keys).rows)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    assert torch.equal(emb.weights, payload["model"]["embedding.puzzle_emb.weights"])


def test_checkpoints_without_the_field_load_per_copy(tmp_path):
    arch = ArchConfig(hidden_size=16, num_heads=2, L_layers=1, H_cycles=1, L_cycles=1, puzzle_emb_ndim=16)
    model = build_model("trm", arch, DataShape(seq_len=36, vocab_size=12, num_puzzle_identifiers=5), "float32")
    payload = model_record("trm", model, None) | {"model": model.state_dict()}
    del payload["arch"]["puzzle_emb_keying"], payload["shape"]["num_puzzle_tasks"]  # as older versions wrote
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_run(tmp_path / "old.pt")
    assert loaded.arch.puzzle_emb_keying == "per_copy" and type(loaded.model.puzzle_emb).__name__ == "SparsePuzzleEmbedding"
    assert torch.equal(loaded.model.puzzle_emb.weights, model.puzzle_emb.weights)


@pytest.mark.parametrize("family,more,says", [
    ("arc", ["arch.puzzle_emb_keying=bogus"], "arch.puzzle_emb_keying expects one of 'per_copy', 'per_task'"),
    ("sudoku", ["arch.puzzle_emb_keying=per_task", "arch.puzzle_emb_ndim=0"], "no puzzle embedding to key"),
    ("sudoku", ["arch.puzzle_emb_keying=per_task"], "needs an ARC dataset"),
])
def test_bad_keyings_are_one_line_errors(family, more, says, arc_data, sudoku_data, tmp_path, capsys):  # noqa: F811
    from train.cli import main
    data = arc_data if family == "arc" else sudoku_data
    argv = tiny_arc_run(data, tmp_path / "run", *more)
    capsys.readouterr()
    assert run_cli(lambda a: main(family, a), argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err and says in err, err
    assert not (tmp_path / "run").exists()


# --- voting and the proxy metrics ----------------------------------------------------------------------
def test_answers_given_in_each_copys_frame_vote_back_to_the_solution(arc_data, tmp_path):
    """A stub that answers through the per-task keys (task, dihedral, colour map) of each row's
    identifier, in the augmented frame, scores pass@1 = 1: the voter maps them back."""
    keys = arc.copy_keys(load_identifiers(arc_data))
    puzzles = json.loads((arc_data / "test_puzzles.json").read_text())
    split = load_split(arc_data, "test")

    def answer(batch):
        out = []
        for x, ident in zip(batch["inputs"].numpy(), batch["puzzle_identifiers"].numpy()):
            task, t, perm = keys.tasks[keys.task[ident]], keys.dihedral[ident], keys.perm[ident]
            grid = arc.invert_grid(arc.crop(x), t, perm).tolist()
            solution = next(ex["output"] for ex in puzzles[task]["test"] if ex["input"] == grid)
            out.append(arc.encode_grid(arc.augment_grid(np.array(solution, np.uint8), t, perm), canvas=6))
        return torch.from_numpy(np.stack(out)).long()

    oracle = Oracle(12, 1, answer)
    oracle.learn(split)
    metrics = evaluate_split(oracle, split, EvalConfig(), CPU, arc_data, tmp_path, 4)
    assert len({keys.dihedral[i] for i in split.puzzle_identifiers}) > 3  # most rows are transformed copies
    assert metrics["pass@1"] == 1.0 and metrics["exact_accuracy"] == 1.0 and metrics["changed_cell_accuracy"] == 1.0


def test_changed_cell_accuracy_scores_copying_zero_and_the_answer_one(arc_data):
    split = load_split(arc_data, "test")
    results = {}
    for name, answer in (("copy", lambda b: b["inputs"].long()), ("label", labels_of)):
        oracle = Oracle(12, 1, answer)
        oracle.learn(split)
        results[name] = evaluate_split(oracle, split, EvalConfig(), CPU, arc_data, None, 4)
    assert results["copy"]["changed_cell_accuracy"] == 0.0 and results["copy"]["accuracy"] > 0.0
    assert results["label"]["changed_cell_accuracy"] == 1.0


def test_train_rows_are_a_fixed_spread_scored_like_a_split(arc_data):
    train = load_split(arc_data, "train")
    rows = SplitRows.spread(train, 10)
    assert len(rows) == 10 and rows.rows[0] == 0 and rows.rows[-1] == len(train) - 1
    assert np.array_equal(rows.rows, SplitRows.spread(train, 10).rows)
    assert len(SplitRows.spread(train, 10 ** 6)) == len(train)
    ids = np.repeat(train.puzzle_identifiers, np.diff(train.puzzle_indices))
    np.testing.assert_array_equal(rows.puzzle_identifiers, ids[rows.rows])
    keys = arc.copy_keys(load_identifiers(arc_data))
    assert len(set(keys.task[rows.puzzle_identifiers])) == 3  # every task represented
    oracle = Oracle(12, 1, labels_of)
    oracle.learn(train)
    metrics = evaluate_split(oracle, rows, EvalConfig(), CPU, arc_data, None, 4)
    assert metrics["exact_accuracy"] == 1.0 and metrics["count"] == 10
