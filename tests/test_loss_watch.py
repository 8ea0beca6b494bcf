"""Finite divergence: the trainer warns once when the logged loss stays far above its lowest."""
from __future__ import annotations

import math

from puzzles.errors import run_cli
from train.guard import LossWatch

from .test_bad_inputs import base, trainer
from .test_train import _keep_threads, sudoku_data  # noqa: F401 (fixtures)

DIVERGING = "the run may be diverging"


def feed(watch: LossWatch, losses: list[float]) -> list[str]:
    return [watch.check(x, step) for step, x in enumerate(losses, 1)]


def test_loss_watch_needs_three_lines_at_twice_the_lowest_and_half_a_nat_above():
    watch = LossWatch()
    # a solved set: the loss near 0 triples on noise; a single spike that recovers; NaN lines skipped
    assert feed(watch, [2.3, 0.4, 0.01, 0.03, 0.05, 0.04, math.nan, 0.9, 0.02, 0.5, 0.50, 0.50]) == [""] * 12
    assert (watch.lowest, watch.lowest_step) == (0.01, 3)
    assert watch.check(0.52, 13) == "" and watch.check(math.nan, 14) == "" and watch.check(0.6, 15) == ""
    warning = watch.check(0.7, 16)  # the third line in a row at >= 0.51 (NaN in between does not break it)
    assert warning.startswith("warning: the training loss 0.700 at step 16 is 70.0x its lowest (0.010 at step 3), "
                              "3 log lines in a row")
    assert DIVERGING in warning and "--resume optim.lr=<lower>" in warning
    assert watch.check(5.0, 17) == "" and watch.check(0.005, 18) == ""  # once per run
    assert watch.state_dict() == {"lowest": 0.005, "lowest_step": 18}  # still followed after the warning
    high = LossWatch()  # at loss ~1 the factor 2 is the binding bound
    assert feed(high, [1.0, 1.9, 2.0, 2.0]) == [""] * 4 and DIVERGING in high.check(2.1, 5)
    zero = LossWatch()  # a loss of exactly 0 still gives a readable line
    assert feed(zero, [0.0, 0.6, 0.6]) == ["", "", ""]
    assert "0.600 at step 4 is above its lowest (0.000 at step 1)" in zero.check(0.6, 4)


def test_trainer_warns_once_when_a_huge_lr_sends_the_loss_up(tmp_path, sudoku_data, capsys):  # noqa: F811
    assert run_cli(trainer(), base(sudoku_data, tmp_path / "calm", "optim.max_steps=8")) == 0
    assert DIVERGING not in capsys.readouterr().out
    # lr 3 on the tiny model: the loss climbs from ~1.9 every step (3.5, 6.1, 7.6, ... in float32)
    assert run_cli(trainer(), base(sudoku_data, tmp_path / "wild", "optim.max_steps=8", "optim.lr=3")) == 0
    out = capsys.readouterr().out
    assert out.count(DIVERGING) == 1, out


def test_a_resumed_run_keeps_the_lowest_loss(tmp_path, sudoku_data, capsys):  # noqa: F811
    run = tmp_path / "run"
    # lr 3: losses ~1.9, 3.5, 6.1 in the first three steps, under three high lines: no warning yet
    assert run_cli(trainer(), base(sudoku_data, run, "optim.max_steps=3", "optim.lr=3")) == 0
    assert DIVERGING not in capsys.readouterr().out
    # resumed, the watch still knows step 1's loss; started afresh, its lowest would be step 4's
    assert run_cli(trainer(), base(sudoku_data, run, "optim.max_steps=8", "optim.lr=3", "--resume")) == 0
    out = capsys.readouterr().out
    assert out.count(DIVERGING) == 1 and "its lowest (1.9" in out and " at step 1)" in out, out
