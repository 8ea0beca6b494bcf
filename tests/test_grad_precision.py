"""bench.grad_precision: a mode's gradient against float32's at a checkpoint, and its refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.grad_precision import main
from puzzles.errors import run_cli
from tests.test_train import build_sudoku, tiny_cfg
from train.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("gradprec")
    data = build_sudoku(root / "sudoku")
    run_dir = root / "run"
    train(tiny_cfg(data, run_dir, "optim.max_steps=3", model="trm"))
    torch.set_num_threads(threads)
    return run_dir, data


def test_bf16_gradient_is_near_but_not_equal_to_float32(run, capsys):
    run_dir, data = run
    argv = [str(run_dir), "--data", str(data), "--modes", "bfloat16,bf16-weights", "--batch", "4", "--batches", "2", "--json"]
    assert run_cli(main, argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["step"] == 3 and first["batches"] == 2
    for mode in ("bfloat16", "bf16-weights"):
        errs, cos = first["modes"][mode]["rel_err"], first["modes"][mode]["cosine"]
        assert len(errs) == 2
        # bf16 rounds (relative 2^-9 per value): the gradient moves, but a 3-step model is not chaotic
        assert all(1e-4 < e < 0.05 for e in errs), errs  # measured: 0.006
        assert all(c > 0.999 for c in cos), cos
    assert run_cli(main, argv) == 0  # same batches, same weights: the same figures
    assert json.loads(capsys.readouterr().out) == first


def test_table_names_each_mode(run, capsys):
    run_dir, data = run
    assert run_cli(main, [str(run_dir), "--data", str(data), "--batch", "4", "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert "(step 3)" in out and "bfloat16" in out and "relative error" in out


@pytest.mark.parametrize("extra, message", [
    (["--modes", "fp16"], "unknown mode fp16"),
    (["--batch", "100000"], "larger than the train split"),
    (["--batches", "0"], "at least 1"),
])
def test_bad_options_are_one_line_errors(run, capsys, extra, message):
    run_dir, data = run
    assert run_cli(main, [str(run_dir), "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_missing_run_and_missing_data_are_refused(run, tmp_path, capsys):
    run_dir, _ = run
    assert run_cli(main, [str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run_cli(main, [str(run_dir), "--data", str(tmp_path / "no-data")]) == 2
    assert "pass --data" in capsys.readouterr().err


def test_data_that_does_not_fit_the_model_is_refused(run, tmp_path, capsys):
    from puzzles.build import main as build_main
    run_dir, _ = run
    maze = tmp_path / "maze"
    build_main(["maze", "--preset", "tiny", "--out", str(maze), "--no-progress"])
    assert run_cli(main, [str(run_dir), "--data", str(maze), "--batch", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "but the model expects" in err and "\n" not in err
