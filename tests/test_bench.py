"""bench.train_step: the measurement record, architecture changes from the command line, the
fastest-mode pick, and its one-line errors (figures themselves are benchmarks, not tests); where a
TinyRecursiveModels checkout is named by REF_DIR, the reference's step beside ours.
Run: python -m pytest -q tests/test_bench.py   (REF_DIR=/path/to/TinyRecursiveModels for the reference)
"""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

from bench import train_step
from puzzles.errors import run_cli


def test_a_measurement_names_the_cpu_and_follows_arch_changes(capsys):
    argv = ["--config", "Q", "--batch", "4", "--steps", "1", "--warmup", "1", "--threads", "1", "--json"]
    assert run_cli(train_step.main, argv) == 0
    assert run_cli(train_step.main, [*argv, "--arch", "H_cycles=1"]) == 0
    out = capsys.readouterr().out
    assert "bf16 matmul hardware:" in out
    full, one = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert full["dtype"] == "fp32" and not full["compile"] and full["batch"] == 4 and "cpu" in full
    assert one["gflop_per_step"] < full["gflop_per_step"]  # H_cycles 3 -> 1: fewer no-grad cycles


def test_fastest_mode_per_config():
    rows = [{"config": "Q", "median_s": 2.0, "dtype": "fp32", "compile": False},
            {"config": "Q", "median_s": 1.5, "dtype": "fp32", "compile": True},
            {"config": "A", "median_s": 3.0, "dtype": "bf16", "compile": True}]
    best = train_step.fastest(rows)
    assert best["Q"]["compile"] and best["Q"]["median_s"] == 1.5 and best["A"]["median_s"] == 3.0


@pytest.mark.parametrize("argv, message", [
    (["--arch", "H_cycle=2"], "--arch 'H_cycle=2': expected KEY=VALUE"),
    (["--arch", "H_cycles=two"], "integer for integer fields"),
    (["--steps", "0"], "--steps must be >= 1"),
])
def test_bad_arguments_are_one_line(capsys, argv, message):
    assert run_cli(train_step.main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "no such folder"),
    (lambda tmp: tmp, "not a TinyRecursiveModels checkout (no models/losses.py)"),
])
def test_bad_ref_dir_is_one_line(tmp_path, capsys, make, message):
    """Refused before any timing: a --ref-dir that is no folder, or a folder that is not a checkout."""
    argv = ["--config", "Q", "--batch", "4", "--steps", "1", "--threads", "1", "--ref-dir", str(make(tmp_path))]
    assert run_cli(train_step.main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.skipif(not os.environ.get("REF_DIR") or importlib.util.find_spec("pydantic") is None,
                    reason="needs REF_DIR (a TinyRecursiveModels checkout) and pydantic")
def test_reference_step_beside_ours_from_the_same_weights(capsys):
    """Same weights, same batch, float32: the first step's loss per example is the same number."""
    r = train_step.measure("Q", "fp32", compile=False, steps=2, warmup=1, batch=4, ref_dir=os.environ["REF_DIR"])
    assert r["ref_loss1"] == pytest.approx(r["loss1"], rel=1e-4)
    assert r["ref_s"] > 0 and r["speedup_vs_ref"] > 0 and "ref_note" in r
    argv = ["--config", "QU", "--batch", "4", "--steps", "1", "--ref-dir", os.environ["REF_DIR"]]
    assert run_cli(train_step.main, argv) == 2  # the recursion variants have no counterpart there
    assert "no counterpart of model 'ut'" in capsys.readouterr().err
