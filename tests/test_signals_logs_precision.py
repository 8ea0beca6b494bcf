"""A stopped run loses nothing and its rerun repeats nothing: SIGTERM is handled like Ctrl-C (a
checkpoint at the current step, exit code 143), a metrics.jsonl cut short by a kill is repaired on
resume, and the CPU precision probe is not fooled by one slow timing.
Run: python -m pytest -q tests/test_signals_logs_precision.py
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from puzzles.errors import run_cli
from train import setup
from train.checkpoint import load_checkpoint
from train.loop import train
from train.logger import MetricsLogger
from train.setup import choose_dtype, probe_matmul, setup_system

from .test_train import TINY, _crash_at, _keep_threads, assert_same, final_state, sudoku_data, tiny_cfg  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def trainer(argv):
    from train.cli import main
    return main("sudoku", argv)


def cli_args(data: Path, run: Path, *more: str) -> list[str]:
    return ["--model", "trm-mlp", "--preset", "quick", *TINY, f"data.path={data}", f"system.run_dir={run}", *more]


def train_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- SIGTERM ----------------------------------------------------------------------------------------
def test_sigterm_saves_the_current_step_and_the_rerun_matches(tmp_path, sudoku_data):
    """A real SIGTERM to a real trainer process (as `timeout`, a scheduler or `docker stop` sends it)."""
    extra = ["optim.epochs=1000", "optim.max_steps=300", "optim.ema=true", "system.device=cpu"]
    run = tmp_path / "r"
    argv = cli_args(sudoku_data, run, *extra)
    proc = subprocess.Popen([sys.executable, "-m", "train.sudoku", *argv], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 120
    try:  # wait until it is a few steps into training (one metrics line a step)
        while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "Traceback" not in err, err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 3 <= step < 300  # stopped mid-run ...
    assert [d["step"] for d in train_lines(run)] == list(range(1, step + 1))  # ... at the step it had reached
    assert "SIGTERM: stopping after this step and saving a checkpoint" in out
    assert err.strip().splitlines()[-1] == (f"interrupted: SIGTERM received; checkpoint at step {step} saved in "
                                            f"{run / 'checkpoint.pt'}; run the same command again to continue")
    # the same command again finishes the run exactly as an uninterrupted one
    assert run_cli(trainer, argv) == 0
    train(tiny_cfg(sudoku_data, tmp_path / "straight", *extra))
    assert_same(final_state(tmp_path / "straight"), final_state(run))
    assert [d["step"] for d in train_lines(run) if "train/lm_loss" in d] == list(range(1, 301))


def _signal_at(monkeypatch, signum: int, step_no: int, times: int) -> None:
    """Send `signum` to this process `times` times while optimiser step `step_no` runs."""
    from train.step import TrainStep
    original = TrainStep.__call__

    def call(self, carry, batch, step):
        if step == step_no:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return original(self, carry, batch, step)

    monkeypatch.setattr(TrainStep, "__call__", call)


def test_a_second_sigterm_stops_at_once(tmp_path, sudoku_data, monkeypatch, capsys):
    run = tmp_path / "twice"
    _signal_at(monkeypatch, signal.SIGTERM, 2, times=2)
    assert run_cli(trainer, cli_args(sudoku_data, run, "optim.max_steps=6")) == 143
    err = capsys.readouterr().err
    assert "interrupted: second SIGTERM: stopped at once, without a checkpoint" in err and "Traceback" not in err
    assert not (run / "checkpoint.pt").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone with the run


# --- metrics.jsonl after a crash --------------------------------------------------------------------
def test_a_cut_last_metrics_line_is_dropped_on_resume(tmp_path, sudoku_data, monkeypatch, capsys):
    run = tmp_path / "r"
    argv = cli_args(sudoku_data, run, "optim.max_steps=6", "system.checkpoint_interval=2")
    _crash_at(monkeypatch, 5)  # killed during step 5: the last checkpoint is at step 4
    assert run_cli(trainer, argv) == 130
    monkeypatch.undo()
    with open(run / "metrics.jsonl", "ab") as f:  # ... while it was writing step 5's line
        f.write(b'{"step": 5, "wall_seconds": 0.1, "train/lm_lo')
    capsys.readouterr()
    assert run_cli(trainer, [*argv, "--resume", "optim.max_steps=8"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "metrics.jsonl" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "last line (5)" in warnings[0], err
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n")
    lines = train_lines(run)  # every line a JSON object
    assert [d["step"] for d in lines if "train/lm_loss" in d] == list(range(1, 9))  # each step once
    assert [d["step"] for d in lines if "eval/exact_accuracy" in d] == [8]
    assert len(lines) == 9 and not list(run.glob("metrics.jsonl.bak*"))


def test_malformed_lines_inside_the_log_are_dropped_and_the_original_kept(tmp_path, sudoku_data, capsys):
    run = tmp_path / "r"
    run.mkdir()
    good = [json.dumps({"step": s, "train/lm_loss": 1.0}) for s in range(1, 6)]
    original = "\n".join([good[0], "garbage", good[1], "[1, 2]", good[2], '{"no_step": 1}', *good[3:]]) + "\n"
    (run / "metrics.jsonl").write_text(original)
    (run / "metrics.jsonl.bak").write_text("the user's own backup\n")
    logger = MetricsLogger(run, tiny_cfg(sudoku_data, run), resume_step=4)
    logger.log(5, {"train/lm_loss": 0.5})
    logger.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {run / 'metrics.jsonl'}: dropped 3 malformed lines "
                                                   f"(2, 4, 6); the original is kept as {run / 'metrics.jsonl.bak1'}")
    assert (run / "metrics.jsonl.bak").read_text() == "the user's own backup\n"  # never overwritten
    assert (run / "metrics.jsonl.bak1").read_text() == original
    assert [d["step"] for d in train_lines(run)] == [1, 2, 3, 4, 5]


def test_a_start_killed_before_its_first_checkpoint_is_not_logged_twice(tmp_path, sudoku_data, monkeypatch, capsys):
    run = tmp_path / "r"
    argv = cli_args(sudoku_data, run, "optim.max_steps=4", "system.checkpoint_interval=100")
    _crash_at(monkeypatch, 3)  # killed during step 3, before any checkpoint: the rerun starts afresh
    assert run_cli(trainer, argv) == 130
    monkeypatch.undo()
    assert not (run / "checkpoint.pt").exists()
    earlier = (run / "metrics.jsonl").read_text()
    assert earlier
    capsys.readouterr()
    assert run_cli(trainer, argv) == 0
    assert "held the log of an earlier start without a checkpoint" in capsys.readouterr().out
    assert [d["step"] for d in train_lines(run) if "train/lm_loss" in d] == [1, 2, 3, 4]  # each step once
    assert (run / "metrics.jsonl.bak").read_text() == earlier


# --- the CPU precision probe --------------------------------------------------------------------------
def fake_timer(gflops: dict, width: int, slow_first_bf16: float = 1.0, log: list | None = None):
    """A `time_one` for the probe: each timing at `gflops` GFLOP/s, the first bf16 one
    `slow_first_bf16` times slower (another process took the core for a moment)."""
    seen = []

    def time_one(dtype):
        seen.append(dtype)
        if log is not None:
            log.append(dtype)
        slow = slow_first_bf16 if dtype == torch.bfloat16 and seen.count(dtype) == 1 else 1.0
        return setup.matmul_flops(width) / (gflops[dtype] * 1e9) * slow
    return time_one


QUIET_AMX = {torch.bfloat16: 280.0, torch.float32: 160.0}  # a 2-core AMX Xeon at width 128
NO_BF16 = {torch.bfloat16: 2.5, torch.float32: 150.0}      # bf16 emulated: 60x slower


def test_one_slow_bf16_timing_does_not_cost_bf16_on_a_bf16_cpu(monkeypatch, capsys):
    monkeypatch.setattr(setup, "bf16_hardware", lambda: True)
    dtype, why = choose_dtype("auto", CPU, 128, time_one=fake_timer(QUIET_AMX, 128, slow_first_bf16=50))
    assert dtype == torch.bfloat16, why
    assert why.startswith("bf16 matmul 280.0 GFLOP/s vs float32 160.0 GFLOP/s at width 128")  # the best of each
    # through setup_system, as the trainer calls it: the printed line gives the figures and the reason
    monkeypatch.setattr(setup, "_PROBES", {})
    monkeypatch.setattr(setup, "matmul_timer", lambda device, width: fake_timer(QUIET_AMX, width, 50))
    assert setup_system("cpu", "auto", "off", width=128).dtype == torch.bfloat16
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("precision:"))
    assert line.startswith("precision: bfloat16 compute, float32 weights (bf16 matmul 280.0 GFLOP/s vs float32 160.0")
    assert "bf16 hardware reported and bf16 not clearly slower" in line


def test_a_cpu_without_bf16_gets_float32(monkeypatch):
    monkeypatch.setattr(setup, "bf16_hardware", lambda: False)
    dtype, why = choose_dtype("auto", CPU, 128, time_one=fake_timer(NO_BF16, 128))
    assert dtype == torch.float32 and "no bf16 hardware reported and bf16 not clearly faster" in why


def test_measurements_overrule_the_reported_capability_only_when_clear(monkeypatch):
    monkeypatch.setattr(setup, "bf16_hardware", lambda: True)  # reported, but 3x slower every time
    dtype, why = choose_dtype("auto", CPU, 64, time_one=fake_timer({torch.bfloat16: 50.0, torch.float32: 150.0}, 64))
    assert dtype == torch.float32 and "bf16 measured 3.0x slower" in why
    monkeypatch.setattr(setup, "bf16_hardware", lambda: None)  # PyTorch cannot tell; bf16 2x faster
    assert choose_dtype("auto", CPU, 64, time_one=fake_timer({torch.bfloat16: 300.0, torch.float32: 150.0}, 64))[0] \
        == torch.bfloat16


def test_a_cpu_busy_for_every_timing_keeps_the_reported_capability(monkeypatch):
    """Each timing waits for a core (ms instead of 0.2 ms): the best timings are a lottery (here
    float32's best is 2.4x bf16's), but round by round neither is faster, so the hardware decides."""
    waits = {torch.bfloat16: [15.0, 30.0, 12.0, 25.0, 18.0], torch.float32: [14.0, 31.0, 13.0, 5.0, 19.0]}
    seen = {torch.bfloat16: 0, torch.float32: 0}

    def time_one(dtype):
        seen[dtype] += 1
        return waits[dtype][(seen[dtype] - 1) % 5] / 1000
    monkeypatch.setattr(setup, "bf16_hardware", lambda: True)
    dtype, why = choose_dtype("auto", CPU, 128, time_one=time_one)
    assert dtype == torch.bfloat16 and "best of 6 alternating timings, median bf16/float32 speed 0.98" in why, why


def test_the_probe_alternates_and_keeps_to_its_budget():
    order = []
    probe = probe_matmul(CPU, 128, time_one=fake_timer(QUIET_AMX, 128, log=order))
    assert probe.rounds == setup.PROBE_MAX_ROUNDS  # fast timings: the round limit ends it
    assert order[:4] == [torch.bfloat16, torch.float32, torch.float32, torch.bfloat16]  # neither always first
    assert order.count(torch.bfloat16) == order.count(torch.float32) == probe.rounds
    # emulated bf16 (~64 ms a timing): the time budget ends it after the minimum rounds, well under a second
    order.clear()
    timer = fake_timer({torch.bfloat16: 1.0, torch.float32: 60.0}, 128, log=order)
    probe = probe_matmul(CPU, 128, time_one=timer)
    measured = sum(setup.matmul_flops(128) / ({torch.bfloat16: 1.0, torch.float32: 60.0}[d] * 1e9) for d in order)
    assert probe.rounds == 4 and measured < 0.5  # 65 ms a round: past the 0.2 s budget after the 4th
