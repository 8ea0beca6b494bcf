"""Refusals found by user probes: outputs never replaced without --force (and a training run never),
config values checked before any work, a run too large for the machine's memory, negative checkpoint
steps, a test file equal to the train file, empty ARC attempts, an unbounded --samples, train.relax
--layers 0 and a foreign system.run_dir. Each refusal: exit code 2, exactly one `error:` line naming
the culprit, no traceback, every file that existed before unchanged (helpers of test_bad_inputs).
Run: python -m pytest -q tests/test_refusals.py
"""
from __future__ import annotations

import dataclasses

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from puzzles import arc, sudoku
from puzzles.errors import run_cli
from train.checkpoint import load_checkpoint, save_checkpoint
from train.errors import TrainError
from train.memory import GIB, check_memory
from train.presets import PRESETS
from train.relax import MARK
from train.relax import main as relax_main
from train.run import check_run_dir
from train.sampling import MAX_SAMPLES
from train.scoring import arc_vote

from .test_bad_inputs import base, build, fails, snapshot, solve_cli, trainer
from .test_train import _keep_threads, sudoku_data, tiny_cfg, trained_run  # noqa: F401 (fixtures)


def bench_learn(argv):
    from bench.learn import main
    return main(argv)


def bench_arc(argv):
    from bench.arc_baselines import main
    return main(argv)


def bench_inference(argv):
    from bench.inference import main
    return main(argv)


# --- 1. no overwrite without --force ------------------------------------------------------------
def test_bench_outputs_need_force(tmp_path, trained_run, capsys):  # noqa: F811
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    fails(bench_learn, [str(trained_run), "--write", str(mine)], capsys, mine, "--force", roots=(tmp_path,))
    fails(bench_arc, [str(tmp_path), "--out", str(mine)], capsys, mine, "--force", roots=(tmp_path,))
    fails(bench_inference, ["--checkpoint", str(tmp_path / "none.pt"), "--json", str(mine)], capsys, mine,
          "--force", roots=(tmp_path,))
    fails(bench_learn, [str(trained_run), "--write", str(tmp_path)], capsys, "is a folder", roots=(tmp_path,))
    # --force replaces only an earlier output of the same command, never a user's file of that name
    fails(bench_learn, [str(trained_run), "--write", str(mine), "--force"], capsys, mine,
          "not an earlier output", roots=(tmp_path,))
    fails(bench_arc, [str(tmp_path), "--out", str(mine), "--force"], capsys, mine, "not an earlier output",
          roots=(tmp_path,))
    fails(bench_inference, ["--checkpoint", str(tmp_path / "none.pt"), "--json", str(mine), "--force"], capsys,
          mine, "not an earlier output", roots=(tmp_path,))
    ours = tmp_path / "learn.json"
    assert run_cli(bench_learn, [str(trained_run), "--write", str(ours)]) == 0
    assert run_cli(bench_learn, [str(trained_run), "--write", str(ours), "--force"]) == 0
    assert json.loads(ours.read_text())[0]["run"] == str(trained_run)
    assert mine.read_text() == "my notes"


def test_relax_never_replaces_a_training_run(tmp_path, sudoku_data, trained_run, capsys):  # noqa: F811
    untied = tmp_path / "untied"
    assert run_cli(trainer(), base(sudoku_data, untied, "arch.unique_layers=3", "optim.max_steps=2")) == 0
    out = tmp_path / "relaxed"
    assert run_cli(relax_main, [str(untied), "--rank", "4", "--out", str(out)]) == 0
    assert load_checkpoint(out / "checkpoint.pt")[MARK] == str(untied)
    # another training run, the source run itself, or a user's folder: never, not even with --force
    for other in (trained_run, untied):
        fails(relax_main, [str(untied), "--out", str(other), "--force"], capsys, other, "training run",
              roots=(tmp_path, trained_run))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    fails(relax_main, [str(untied), "--out", str(notes), "--force"], capsys, notes, "not empty", roots=(tmp_path,))
    # an earlier train.relax output: only with --force
    fails(relax_main, [str(untied), "--out", str(out)], capsys, out, "--force", roots=(tmp_path,))
    before = (out / "checkpoint.pt").read_bytes()
    assert run_cli(relax_main, [str(untied), "--rank", "2", "--out", str(out), "--force"]) == 0
    assert (out / "checkpoint.pt").read_bytes() != before
    # --layers 0 no longer means "the default"
    fails(relax_main, [str(untied), "--layers", "0", "--out", str(tmp_path / "new")], capsys, "--layers",
          roots=(tmp_path,))


# --- 2. config checks before any work -----------------------------------------------------------
@pytest.mark.parametrize("override, name", [
    ("system.checkpoint_interval=0", "system.checkpoint_interval"), ("system.threads=-3", "system.threads"),
    ("system.seed=-1", "system.seed"), ("eval.samples=100000", "eval.samples"),
])
def test_trainer_config_refused_before_any_work(tmp_path, sudoku_data, capsys, override, name):  # noqa: F811
    run = tmp_path / "run"
    fails(trainer(), base(sudoku_data, run, override), capsys, name, roots=(tmp_path,))
    assert not run.exists()


@pytest.mark.parametrize("family, option", [("sudoku", "--train"), ("sudoku", "--test"), ("maze", "--train"),
                                            ("maze", "--test")])
def test_build_zero_puzzles_refused(tmp_path, capsys, family, option):
    fails(build, [family, "--preset", "tiny", option, "0", "--out", str(tmp_path / "d"), "--no-progress"], capsys,
          option, ">= 1", roots=(tmp_path,))


def test_model_too_large_for_memory_is_one_line(tmp_path, sudoku_data, capsys, monkeypatch):  # noqa: F811
    run = tmp_path / "run"
    fails(trainer(), base(sudoku_data, run, "arch.hidden_size=100000"), capsys, "arch.hidden_size=100000", "GiB",
          roots=(tmp_path,))
    assert not run.exists()
    # on a GPU the limit is the device's memory, named in the line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(total_memory=80 * GIB, name="Fake GPU"))
    with pytest.raises(TrainError, match=r"cuda:0 \(Fake GPU\) has 80.0 GiB"):
        check_memory(tiny_cfg(sudoku_data, run, "arch.hidden_size=100000", "system.device=cuda"))
    monkeypatch.undo()
    for preset in PRESETS.values():  # every shipped recipe fits this machine
        for family, model in (("sudoku", "trm-mlp"), ("maze", "trm"), ("arc", "hrm")):
            check_memory(preset(family, model))


def test_memory_estimate_counts_the_embedding_as_keyed():
    from models.embedding import TaskPuzzleEmbedding
    from train.memory import training_bytes
    cfg = next(iter(PRESETS.values()))("arc", "trm")
    ids, ndim = 100_000, cfg.arch.puzzle_emb_ndim
    assert ndim > 0
    per_copy, act = training_bytes(cfg, 900, ids)
    cfg.arch = dataclasses.replace(cfg.arch, puzzle_emb_keying="per_task")
    per_task, act2 = training_bytes(cfg, 900, ids)
    assert act == act2 and per_copy - per_task == ids * (4 * ndim - 4 * TaskPuzzleEmbedding.refs)
    # still a lower bound: the real per-task embedding's buffers for 1,000 copies of 10 tasks are larger
    emb = TaskPuzzleEmbedding(1000, 10, ndim, torch.float32)
    real = sum(b.numel() * b.element_size() for b in emb.buffers())
    assert 0 < training_bytes(cfg, 900, 1000)[0] - training_bytes(cfg, 900, 0)[0] <= real


# --- 3. smaller silent ones ---------------------------------------------------------------------
def test_negative_checkpoint_step_refused(tmp_path, sudoku_data, trained_run, capsys):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    payload = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint(run / "checkpoint.pt", payload | {"step": -3})
    fails(trainer(), base(sudoku_data, run, "optim.max_steps=4", "optim.ema=true", "--resume"), capsys,
          run / "checkpoint.pt", "step -3", roots=(tmp_path,))


def test_same_train_and_test_file_refused(tmp_path, capsys):
    grids, answers = sudoku.generate(4, box=(2, 2), seed=0)
    rows = "".join(f"gen,{sudoku.to_text(q)},{sudoku.to_text(a)},0\n" for q, a in zip(grids, answers))
    data = tmp_path / "puzzles.csv"
    data.write_text("source,question,answer,rating\n" + rows)
    copy = tmp_path / "copy.csv"
    copy.write_text(data.read_text())
    out = ["--out", str(tmp_path / "d"), "--no-progress"]
    fails(build, ["sudoku", "--box", "2x2", "--from-csv", str(data), "--test-csv", str(data), *out], capsys,
          data, "the same file", roots=(tmp_path,))
    fails(build, ["sudoku", "--box", "2x2", "--from-csv", str(data), "--test-csv", str(copy), *out], capsys,
          copy, "same contents", roots=(tmp_path,))
    text = tmp_path / "puzzles.txt"
    text.write_text("".join(sudoku.to_text(q) + "\n" for q in grids))
    fails(build, ["sudoku", "--box", "2x2", "--from-text", str(text), "--test-text", str(text), *out], capsys,
          text, "the same file", roots=(tmp_path,))
    # a partial overlap is allowed, with one warning line
    part = tmp_path / "part.txt"
    part.write_text("".join(sudoku.to_text(q) + "\n" for q in grids[:1]))
    assert run_cli(build, ["sudoku", "--box", "2x2", "--aug", "0", "--from-text", str(text), "--test-text",
                           str(part), *out]) == 0
    assert "warning: 1 of the 1 test puzzles" in capsys.readouterr().err


def test_arc_submission_never_holds_an_empty_attempt(tmp_path):
    puzzle, answer = [[1, 2], [3, 4]], [[4, 3], [2, 1]]
    tasks = {"a": {"train": [], "test": [{"input": puzzle, "output": answer}]},
             "b": {"train": [], "test": [{"input": answer, "output": puzzle}]}}
    (tmp_path / "test_puzzles.json").write_text(json.dumps(tasks))
    (tmp_path / "identifiers.json").write_text(json.dumps(["<blank>", "a", "b"]))
    x_a, x_b = (arc.encode_grid(np.array(g, np.uint8), canvas=10) for g in (puzzle, answer))
    empty = np.zeros(100, np.uint8)  # crops to a 0x0 grid
    # task a: the empty grid has the most votes, a real answer follows; task b: only empty grids
    res = {"puzzle_identifiers": np.array([1, 1, 1, 2]), "inputs": np.stack([x_a, x_a, x_a, x_b]),
           "preds": np.stack([empty, empty, arc.encode_grid(np.array(answer, np.uint8), canvas=10), empty]),
           "q_halt_logit": np.zeros(4)}
    metrics = arc_vote(res, tmp_path, tmp_path / "out", SimpleNamespace(distributed=False, is_main=True))
    sub = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert sub["a"] == [{"attempt_1": answer, "attempt_2": answer}]  # the other attempt stands in
    assert sub["b"] == [{"attempt_1": answer, "attempt_2": answer}]  # the test input stands in
    assert metrics["empty_attempts_replaced"] == 2.0 and metrics["pass@2"] == 0.5


def test_samples_are_capped(tmp_path, capsys):
    puzzles = tmp_path / "p.txt"
    puzzles.write_text(sudoku.to_text(sudoku.generate(1, box=(2, 2), seed=0)[0][0]) + "\n")
    fails(solve_cli, [str(tmp_path / "ckpt.pt"), str(puzzles), "--samples", "100000"], capsys, "--samples",
          str(MAX_SAMPLES), roots=(tmp_path,))


def test_foreign_run_dir_refused(tmp_path, sudoku_data, capsys, monkeypatch):  # noqa: F811
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "metrics.jsonl").write_text('{"mine": 1}\n')
    monkeypatch.chdir(work)
    fails(trainer(), base(sudoku_data, Path(".")), capsys, "system.run_dir", "notes.txt", roots=(tmp_path,))
    # new, empty and run folders (also one killed before its first checkpoint) pass
    empty = tmp_path / "empty"
    empty.mkdir()
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text("")
    (killed / ".lock").write_text("1\n")
    (killed / "metrics.jsonl.bak").write_text("{}\n")  # the logger keeps a repaired log's original
    for folder in (tmp_path / "new", empty, killed):
        check_run_dir(folder)
    before = snapshot(tmp_path)
    with pytest.raises(TrainError, match="notes.txt"):
        check_run_dir(work)
    assert snapshot(tmp_path) == before
