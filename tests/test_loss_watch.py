"""Finite divergence: the trainer warns once when the logged loss climbs far above its lowest."""
from __future__ import annotations

import math

from puzzles.errors import run_cli
from train.guard import LossWatch

from .test_bad_inputs import base, trainer
from .test_train import _keep_threads, sudoku_data  # noqa: F401 (fixtures)

DIVERGING = "the run may be diverging"


def test_loss_watch_needs_twice_the_lowest_and_half_a_nat():
    watch = LossWatch()
    # a solved set: the loss near 0 triples on noise; no warning
    assert [watch.check(x, s) for s, x in enumerate([2.3, 0.4, 0.01, 0.03, 0.05, math.nan, 0.02], 1)] == [""] * 7
    assert (watch.lowest, watch.lowest_step) == (0.01, 3)
    assert watch.check(0.50, 8) == ""  # 50x, but under half a nat above the lowest
    warning = watch.check(0.52, 9)
    assert warning.startswith("warning: the training loss 0.520 at step 9 is 52.0x its lowest (0.010 at step 3)")
    assert DIVERGING in warning and "--resume optim.lr=<lower>" in warning
    assert watch.check(5.0, 10) == ""  # once per run
    zero = LossWatch()  # a loss of exactly 0 (fp rounding) still gives a readable line
    assert zero.check(0.0, 1) == "" and "0.600 at step 2 is above its lowest (0.000 at step 1)" in zero.check(0.6, 2)
    high = LossWatch()
    assert high.check(1.0, 1) == "" and high.check(1.9, 2) == "" and DIVERGING in high.check(2.0, 3)


def test_trainer_warns_once_when_a_huge_lr_sends_the_loss_up(tmp_path, sudoku_data, capsys):  # noqa: F811
    assert run_cli(trainer(), base(sudoku_data, tmp_path / "calm", "optim.max_steps=6")) == 0
    assert DIVERGING not in capsys.readouterr().out
    # lr 10: the loss climbs from ~1.9 past 10 within a few steps (then non-finite steps are skipped)
    assert run_cli(trainer(), base(sudoku_data, tmp_path / "wild", "optim.max_steps=6", "optim.lr=10")) == 0
    out = capsys.readouterr().out
    assert out.count(DIVERGING) == 1, out
