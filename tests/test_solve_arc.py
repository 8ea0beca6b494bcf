"""`python -m train.solve CHECKPOINT tasks.json` for ARC checkpoints: a Kaggle challenges file in,
a folder with submission.json and summary.json out; new tasks' puzzle vectors fitted first.
Run: python -m pytest -q tests/test_solve_arc.py
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import ArchConfig, DataShape, build_model
from puzzles import arc
from puzzles.arc.build import build_arc
from puzzles.errors import run_cli
from train import solve_arc
from train.arc_fit import TABLE, FitOptions, NewTask, fit
from train.checkpoint import save_checkpoint
from train.infer import SolveResult
from train.model_io import model_record
from train.solve import main as solve_main

from .test_arc_keying import TINY_ARC, arc_data, tiny_arc_run  # noqa: F401  (fixture)
from .test_bad_inputs import fails
from .test_infer import write_checkpoint
from .test_train import _keep_threads  # noqa: F401  (fixture)

FAST = ["--aug", "2", "--threads", "1", "--no-progress", "--dtype", "float32"]


def kaggle_files(folder: Path) -> tuple[dict, dict]:
    """The three tiny fixture tasks as one Kaggle challenges file and its solutions."""
    challenges, solutions = {}, {}
    for subset in ("training", "evaluation"):
        challenges |= json.loads(Path(f"{TINY_ARC}_{subset}_challenges.json").read_text())
        solutions |= json.loads(Path(f"{TINY_ARC}_{subset}_solutions.json").read_text())
    (folder / "tasks.json").write_text(json.dumps(challenges))
    (folder / "solutions.json").write_text(json.dumps(solutions))
    return challenges, solutions


def tiny_arc_model(name: str = "trm", keying: str | None = "per_copy"):
    """A 6x6-canvas ARC model whose puzzle table (random rows, as if trained) covers the fixture's
    tasks in 3 copies each; keying None: no puzzle embedding."""
    built = build_arc(arc.load_subsets(TINY_ARC, ["training", "evaluation"]), ["training", "evaluation"], 2, 0, canvas=6)
    keys = arc.copy_keys(built.identifiers)
    emb = {"puzzle_emb_ndim": 32, "puzzle_emb_keying": keying} if keying else {}
    arch = ArchConfig(hidden_size=32, num_heads=2, L_layers=1, H_cycles=1, L_cycles=2, halt_max_steps=3, **emb)
    shape = DataShape(36, arc.VOCAB_SIZE, len(keys.task), len(keys.tasks) if keying == "per_task" else 0)
    torch.manual_seed(0)
    model = build_model(name, arch, shape, "float32")
    if model.puzzle_emb is not None:
        model.puzzle_emb.weights.normal_()
        if keying == "per_task":
            model.puzzle_emb.set_keys(keys.task, keys.dihedral, keys.perm)
    return model


@pytest.fixture(scope="module", params=["per_copy", "per_task", None])
def arc_ckpt(request, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "arc.pt"
    model = tiny_arc_model("trm", request.param)
    save_checkpoint(path, model_record("trm", model, {"family": "arc", "canvas": 6})
                    | {"model": model.state_dict(), "config": {"data": {"family": "arc"}}})
    return path


def has_embedding(ckpt: Path) -> bool:
    return torch.load(ckpt, weights_only=True)["arch"]["puzzle_emb_ndim"] > 0


def fast(ckpt: Path) -> list[str]:
    """Quick options; a few fitting steps where there is a puzzle embedding to fit."""
    return FAST + ["--fit-steps", "3"] * has_embedding(ckpt)


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_submission(sub: dict, challenges: dict) -> None:
    """Kaggle format: every task id, one entry per test input, two attempts of colours 0..9."""
    assert list(sub) == list(challenges)
    for tid, entries in sub.items():
        assert len(entries) == len(challenges[tid]["test"])
        for entry in entries:
            assert set(entry) == {"attempt_1", "attempt_2"}
            for grid in entry.values():
                assert grid and all(isinstance(r, list) and r and len(r) == len(grid[0]) for r in grid)
                assert all(isinstance(v, int) and 0 <= v <= 9 for r in grid for v in r)


# --- end to end ---------------------------------------------------------------------------------------
def test_a_trained_run_answers_every_test_input(arc_data, tmp_path, capsys):  # noqa: F811
    from train.cli import main
    run = tmp_path / "run"
    assert run_cli(lambda a: main("arc", a), tiny_arc_run(arc_data, run)) == 0
    challenges, _ = kaggle_files(tmp_path)
    before = digest(run / "checkpoint.pt")
    for more in ([], ["--fit-all", "--force"]):
        capsys.readouterr()
        assert run_cli(solve_main, [str(run), str(tmp_path / "tasks.json"), "--solutions",
                                    str(tmp_path / "solutions.json"), *fast(run / "checkpoint.pt"), *more]) == 0
        out = tmp_path / "tasks-answers"  # the default: beside the input
        check_submission(json.loads((out / "submission.json").read_text()), challenges)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["tasks"] == 3 and summary["bad_tasks"] == 0 and summary["test_inputs"] == 4
        assert summary["copies"] == 3 and summary["fit"]["all"] == bool(more) and 0 <= summary["pass@2"] <= 1
        assert [e["task"] for e in summary["per_task"]] == list(challenges)
        assert all(e["fit_loss"]["steps"] == 3 and e["seconds"] > 0 for e in summary["per_task"])
        err = capsys.readouterr().err
        assert "3 of 3 tasks answered (4 test inputs" in err and "over 3 tasks with solutions" in err
        assert digest(run / "checkpoint.pt") == before  # fitting works on a copy


def test_answers_stay_aligned_with_their_tasks_around_bad_ones(arc_ckpt, tmp_path, capsys):
    challenges, _ = kaggle_files(tmp_path)
    assert run_cli(solve_main, [str(arc_ckpt), str(tmp_path / "tasks.json"), *fast(arc_ckpt)]) == 0
    clean = json.loads((tmp_path / "tasks-answers" / "submission.json").read_text())
    a, b, c = challenges
    colour = json.loads(json.dumps(challenges[a]))
    colour["train"][0]["input"][0][0] = 12
    big = {"train": challenges[a]["train"], "test": [{"input": [[1] * 7] * 7}]}
    mixed = {"bad_colour": colour, a: challenges[a], "no_tests": {"train": challenges[a]["train"], "test": []},
             b: challenges[b], "too_big": big, c: challenges[c], "not_a_task": "hello"}
    src = tmp_path / "mixed.json"
    src.write_text(json.dumps(mixed))
    capsys.readouterr()
    assert run_cli(solve_main, [str(arc_ckpt), str(src), *fast(arc_ckpt)]) == 1
    err = capsys.readouterr().err
    out = tmp_path / "mixed-answers"
    sub = json.loads((out / "submission.json").read_text())
    per_task = json.loads((out / "summary.json").read_text())["per_task"]
    assert list(sub) == [e["task"] for e in per_task] == list(mixed)
    assert {t: sub[t] for t in clean} == clean  # every good task answered as in a file of its own
    errors = {e["task"]: e["error"] for e in per_task if "error" in e}
    assert list(errors) == ["bad_colour", "no_tests", "too_big", "not_a_task"]
    assert "colour 12 outside 0..9" in errors["bad_colour"] and "no test pairs" in errors["no_tests"]
    assert "7x7 grid, larger than the model's 6x6 canvas" in errors["too_big"]
    assert "needs 'train' and 'test'" in errors["not_a_task"]
    assert [len(sub[t]) for t in errors] == [1, 0, 1, 0] and sub["too_big"][0]["attempt_1"] == [[0]]
    assert err.count("error: ") == 4 and "3 of 7 tasks answered" in err and "4 bad tasks" in err


def test_an_oracle_in_the_augmented_frame_scores_pass_at_1(arc_ckpt, tmp_path, monkeypatch, capsys):
    """A stand-in model that answers each row with the solution in that copy's frame (read from the
    copy's name): the voter maps every answer back, so pass@1 = 1 and attempt 1 is the solution."""
    challenges, solutions = kaggle_files(tmp_path)

    def oracle(engine, rows):
        preds = []
        for x, copy in zip(rows.inputs, rows.copy_ids):
            task, t, perm = arc.parse_name(rows.names[copy])
            grid = arc.invert_grid(arc.crop(x), t, perm).tolist()
            k = [ex["input"] for ex in challenges[task]["test"]].index(grid)
            solution = np.array(solutions[task][k], np.uint8)
            preds.append(arc.encode_grid(arc.augment_grid(solution, t, perm), canvas=6))
        n = len(preds)
        return SolveResult(np.stack(preds).astype(np.int32), np.ones(n, np.int32), np.ones(n, np.float32),
                           np.ones(n, np.float32))

    monkeypatch.setattr(solve_arc, "answer", oracle)
    argv = [str(arc_ckpt), str(tmp_path / "tasks.json"), "--solutions", str(tmp_path / "solutions.json"), *fast(arc_ckpt)]
    assert run_cli(solve_main, argv + ["--aug", "5"]) == 0
    out = tmp_path / "tasks-answers"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass@1"] == summary["pass@2"] == 1.0 and summary["scored_tasks"] == 3
    sub = json.loads((out / "submission.json").read_text())
    assert {t: [e["attempt_1"] for e in entries] for t, entries in sub.items()} == solutions
    assert "pass@1 1.000, pass@2 1.000 over 3 tasks" in capsys.readouterr().err


# --- fitting --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,keying", [("trm", "per_copy"), ("trm", "per_task"), ("hrm", "per_copy")])
@pytest.mark.parametrize("fit_all", [False, True])
def test_fitting_moves_only_the_new_tasks_vectors_unless_fit_all(name, keying, fit_all):
    model = tiny_arc_model(name, keying)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    old = original[TABLE]
    task = arc.load_subsets(TINY_ARC, ["evaluation"])["evaluation"]
    built = build_arc({"new": task}, "new", 3, 0, materialize=True, canvas=6)
    keys = arc.copy_keys(built.identifiers)
    train = built.splits["train"]
    ids = np.repeat(train.puzzle_identifiers, np.diff(train.puzzle_indices))
    new = NewTask(model, name, copies=4)
    new.start(keys.dihedral[1:], keys.perm[1:])
    table = new.table
    T = len(old) if keying == "per_copy" else model.config.num_puzzle_tasks
    trained = old[1:] if keying == "per_copy" else old[1:T]
    assert torch.allclose(table[new.new_rows], trained.mean(0).expand(len(new.new_rows), -1))  # the mean row
    before = {k: v.clone() for k, v in new.model.state_dict().items()}
    losses = fit(new, train.inputs, train.labels, ids, FitOptions(steps=4, all=fit_all))
    assert len(losses) == 4 and all(np.isfinite(losses))
    after = new.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    moved = set((after[TABLE] != before[TABLE]).any(-1).nonzero().flatten().tolist())
    assert set(new.new_rows.tolist()) <= moved <= set(new.fitted_rows(fit_all).tolist())
    if fit_all:
        assert {"lm_head.weight", "embedding.embed_tokens.embedding_weight"} <= changed
    else:
        assert changed == {TABLE}
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # the loaded model: untouched
    new.start(keys.dihedral[1:], keys.perm[1:])  # the next task starts from the checkpoint's weights again
    assert all(torch.equal(v, before[k]) for k, v in new.model.state_dict().items())


# --- refusals -------------------------------------------------------------------------------------------
def test_bad_files_options_and_outputs_are_one_line_errors(arc_ckpt, tmp_path, capsys):
    kaggle_files(tmp_path)
    tasks, sols = tmp_path / "tasks.json", tmp_path / "solutions.json"
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "broken.json").write_text('{"a": ')
    short = {k: v[:1] for k, v in json.loads(sols.read_text()).items()}
    (tmp_path / "short.json").write_text(json.dumps(short))
    sudoku = tmp_path / "s4.pt"
    write_checkpoint(sudoku, "sudoku")
    cases = [
        ([str(tmp_path / "none.json")], ["none.json", "does not exist"]),
        ([str(tmp_path / "broken.json")], ["broken.json", "invalid JSON"]),
        ([str(tmp_path / "list.json")], ["list.json", "expected a JSON object of tasks"]),
        ([str(tmp_path / "empty.json")], ["empty object"]),
        ([str(tasks), "--solutions", str(tmp_path / "short.json")], ["short.json", "expected 2 solution grid(s), got 1"]),
        ([str(tasks), "--fit-batch", "0"], ["--fit-batch must be an integer >= 1"]),
        ([str(tasks), "--fit-lr", "0"], ["--fit-lr must be a finite number > 0"]),
        ([str(tasks), "--samples", "4"], ["--samples applies to Sudoku and maze models"]),
        ([str(tasks), "--out", str(tasks)], [tasks, "is a file"]),
    ]
    if not has_embedding(arc_ckpt):
        cases.append(([str(tasks), "--fit-all"], ["no puzzle embedding"]))
    for argv, names in cases:
        fails(solve_main, [str(arc_ckpt), *argv], capsys, *names, roots=(tmp_path,))
    fails(solve_main, [str(sudoku), str(tasks), "--fit-steps", "3"], capsys, "--fit-steps applies to ARC models",
          roots=(tmp_path,))
    # an existing output folder: only with --force, and only an earlier output of train.solve
    assert run_cli(solve_main, [str(arc_ckpt), str(tasks), *fast(arc_ckpt)]) == 0
    out = tmp_path / "tasks-answers"
    fails(solve_main, [str(arc_ckpt), str(tasks), *fast(arc_ckpt)], capsys, out, "pass --force", roots=(tmp_path,))
    assert run_cli(solve_main, [str(arc_ckpt), str(tasks), *fast(arc_ckpt), "--force"]) == 0
    (out / "notes.txt").write_text("mine")
    fails(solve_main, [str(arc_ckpt), str(tasks), *fast(arc_ckpt), "--force"], capsys, "holds other files", roots=(tmp_path,))
