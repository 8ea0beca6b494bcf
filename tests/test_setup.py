"""Precision and compile choices (train/setup.py): measured on the machine, printed with the reason,
and used by the trainer, the evaluator and train.solve alike. The probe's timer and the reported
bf16 capability are monkeypatched to play a CPU without bf16 hardware (bf16 ~60x slower) or one with
it (bf16 2x faster); the probe's own tests live in tests/test_signals_logs_precision.py.
Run: python -m pytest -q tests/test_setup.py
"""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from puzzles.errors import UserError, run_cli
from train import setup
from train.checkpoint import load_checkpoint
from train.evaluate import main as evaluate_main
from train.loop import train
from train.model_io import stored_config
from train.setup import choose_dtype, probe_matmul, setup_system
from train.solve import main as solve_main

from . import browser
from .test_infer import write_checkpoint
from .test_train import _keep_threads, sudoku_data, tiny_cfg  # noqa: F401

CPU = torch.device("cpu")
SLOW = {torch.bfloat16: 1.0, torch.float32: 70.0}   # e.g. AMD Zen 3: AVX2 only
FAST = {torch.bfloat16: 140.0, torch.float32: 70.0}  # AVX512-BF16 or AMX


def fake_probe(monkeypatch, speeds: dict, hardware: bool | None = False) -> list:
    """Every matmul timing answers at `speeds` GFLOP/s; the CPU reports bf16 hardware `hardware`."""
    calls = []

    def matmul_timer(device, width):
        def time_one(dtype):
            calls.append((device.type, dtype, width))
            return setup.matmul_flops(width) / (speeds[dtype] * 1e9)
        return time_one
    monkeypatch.setattr(setup, "matmul_timer", matmul_timer)
    monkeypatch.setattr(setup, "bf16_hardware", lambda: hardware)
    monkeypatch.setattr(setup, "_PROBES", {})  # no real measurement cached by an earlier test
    return calls


def test_probe_times_real_matmuls_once_per_process(monkeypatch):
    monkeypatch.setattr(setup, "_PROBES", {})
    first = probe_matmul(CPU, 48)
    assert math.isfinite(first.bf16) and first.bf16 > 0 and math.isfinite(first.fp32) and first.fp32 > 0
    assert first.rounds >= setup.PROBE_MIN_ROUNDS and first.seconds < 1.0
    assert probe_matmul(CPU, 48) is first  # cached, not re-measured


def test_auto_picks_float32_where_bf16_is_slow_and_says_why(monkeypatch):
    calls = fake_probe(monkeypatch, SLOW)
    dtype, why = choose_dtype("auto", CPU, width=96)
    assert dtype == torch.float32
    assert "bf16 matmul 1.0 GFLOP/s vs float32 70.0 GFLOP/s" in why and "width 96" in why
    assert {w for _, _, w in calls} == {96}


def test_auto_picks_bf16_where_it_is_faster(monkeypatch):
    fake_probe(monkeypatch, FAST)
    assert choose_dtype("auto", CPU)[0] == torch.bfloat16


def test_a_near_tie_follows_the_reported_bf16_hardware(monkeypatch):
    fake_probe(monkeypatch, {torch.bfloat16: 80.0, torch.float32: 70.0}, hardware=False)
    assert choose_dtype("auto", CPU)[0] == torch.float32
    fake_probe(monkeypatch, {torch.bfloat16: 65.0, torch.float32: 70.0}, hardware=True)
    assert choose_dtype("auto", CPU)[0] == torch.bfloat16


def test_explicit_requests_are_honoured(monkeypatch, capsys):
    calls = fake_probe(monkeypatch, SLOW)
    assert choose_dtype("float32", CPU) == (torch.float32, "asked for") and calls == []  # no probe needed
    dtype, why = choose_dtype("bfloat16", CPU)
    assert (dtype, why) == (torch.bfloat16, "asked for")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: system.dtype=bfloat16 runs 70.0x slower than float32" in err
    fake_probe(monkeypatch, FAST)
    choose_dtype("bfloat16", CPU)
    assert capsys.readouterr().err == ""  # nothing to warn about


def test_unknown_dtype_is_a_one_line_error():
    with pytest.raises(UserError, match="system.dtype must be auto, float32 or bfloat16, got 'float16'"):
        choose_dtype("float16", CPU)


def test_setup_prints_the_figures_and_the_cpu(monkeypatch, capsys):
    fake_probe(monkeypatch, SLOW)
    system = setup_system("cpu", "auto", "auto", width=64)
    out = capsys.readouterr().out
    assert system.dtype == torch.float32
    assert "precision: float32 compute, float32 weights (bf16 matmul 1.0 GFLOP/s vs float32 70.0" in out
    assert "bf16 matmul hardware:" in out.splitlines()[0]  # the device line names the CPU
    if system.compile:
        assert "beat eager in float32" in out


# --- every entry point goes through the same decision ------------------------------------------

@pytest.mark.parametrize("speeds, want", [(SLOW, "float32"), (FAST, "bfloat16")])
def test_trainer_evaluate_and_solve_follow_the_probe(monkeypatch, capsys, tmp_path, sudoku_data, speeds, want):
    fake_probe(monkeypatch, speeds)
    run = tmp_path / "run"
    train(tiny_cfg(sudoku_data, run, "optim.max_steps=2", "system.dtype=auto"))
    out = capsys.readouterr().out
    assert f"precision: {want} compute" in out and "GFLOP/s" in out
    assert stored_config(load_checkpoint(run / "checkpoint.pt")).forward_dtype == want

    assert run_cli(evaluate_main, [str(run), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert f"precision: {want} compute" in out and "GFLOP/s" in out

    ckpt = tmp_path / "s4.pt"
    write_checkpoint(ckpt, "sudoku")  # saved with float32 compute
    src = tmp_path / "p.txt"
    src.write_text("1...............\n")
    assert run_cli(solve_main, [str(ckpt), str(src)]) == 0
    err = capsys.readouterr().err
    assert f"slots, {want}" in err and f"precision: {want} compute" in err and "GFLOP/s" in err


def test_explicit_bf16_on_a_slow_cpu_warns_and_trains(monkeypatch, capsys, tmp_path, sudoku_data):
    fake_probe(monkeypatch, SLOW)
    run = tmp_path / "run"
    summary = train(tiny_cfg(sudoku_data, run, "optim.max_steps=2", "system.dtype=bfloat16"))
    out, err = capsys.readouterr()
    assert summary["steps"] == 2 and "precision: bfloat16 compute, float32 weights (asked for)" in out
    assert "warning: system.dtype=bfloat16 runs 70.0x slower" in err


# --- browser tests on a machine without Chromium -------------------------------------------------

def test_browser_tests_skip_without_chromium_unless_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="headless Chromium not found"):
        browser.chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        browser.chromium()
