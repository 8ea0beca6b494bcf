"""Depth curriculum (train/curriculum.py): the schedule as a pure function of the step, bad specs,
and a resume in the middle of it that is bit-identical to an uninterrupted run.
Run: python -m pytest -q tests/test_curriculum.py
"""
from __future__ import annotations

import pytest

from train import curriculum
from train.checkpoint import load_checkpoint
from train.errors import ConfigError
from train.loop import train
from train.model_io import stored_config
from train.overrides import apply_overrides
from train.presets import PRESETS

from .test_train import _crash_at, _keep_threads, assert_same, final_state, ids_data, sudoku_data, tiny_cfg  # noqa: F401


def test_schedule_is_a_pure_function_of_the_step():
    stages = curriculum.parse("H_cycles:1->2@0.25, halt_max_steps:4->6@10 halt_max_steps:6->8@30")
    total = 100
    expect = {1: (1, 4), 9: (1, 4), 10: (1, 6), 24: (1, 6), 25: (2, 6), 29: (2, 6), 30: (2, 8), 100: (2, 8)}
    for step, (h, m) in expect.items():
        assert curriculum.depth_at(stages, step, total) == {"H_cycles": h, "halt_max_steps": m}
    assert curriculum.depth_at(stages, 24, 100) == curriculum.depth_at(stages, 24, 100)  # no hidden state
    assert curriculum.switch_step(curriculum.Stage("H_cycles", 1, 2, 0.0), 100) == 1
    assert curriculum.parse("") == []


def test_apply_depth_changes_copies_not_the_callers_config():
    import torch

    from models import build_model
    from models.config import DataShape
    arch = apply_overrides(PRESETS["quick"]("sudoku", "trm-mlp"), []).arch
    model = build_model("trm-mlp", arch, DataShape(seq_len=36, vocab_size=8), torch.float32)
    built = model.config
    assert curriculum.apply_depth(model, {"H_cycles": 1})
    assert model.config.H_cycles == 1 and model.core.config.H_cycles == 1
    assert arch.H_cycles == 2 and built.H_cycles == 2
    assert not curriculum.apply_depth(model, {"H_cycles": 1})  # nothing to change: no new objects


@pytest.mark.parametrize("spec, words", [
    ("H_cycles=1->2@0.3", "FIELD:FROM->TO@AT"),
    ("L_layers:1->2@0.3", "cannot grow"),
    ("H_cycles:0->2@0.3", "depths must be >= 1"),
    ("H_cycles:1->2@1.5", "fraction in [0, 1]"),
    ("H_cycles:1->2@0.5 H_cycles:3->2@0.6", "chain"),
    ("H_cycles:1->2@0.5 H_cycles:2->2@0.4", "chain"),
    ("H_cycles:1->3@0.3", "arch.H_cycles is 2"),
    ("H_cycles:1->3@0.3", 'optim.curriculum="" to train at one depth'),  # says how to get out
])
def test_bad_spec_is_one_clear_error(spec, words):
    with pytest.raises(ConfigError, match="optim.curriculum") as err:
        apply_overrides(PRESETS["quick"]("sudoku", "trm-mlp"), [f"optim.curriculum={spec}"])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_only_models_that_read_the_depth_per_forward():
    with pytest.raises(ConfigError, match="optim.curriculum works with models"):
        apply_overrides(PRESETS["quick"]("sudoku", "transformer"), ["optim.curriculum=H_cycles:1->1@0.5"])


def test_resume_mid_curriculum_is_bit_identical(tmp_path, ids_data, monkeypatch):
    """9 steps straight == killed at step 6 (checkpoint at 4) and resumed at step 5, where H_cycles is still 1 until step 7."""
    extra = ["arch.H_cycles=2", "optim.curriculum=H_cycles:1->2@7 halt_max_steps:2->3@0.3",
             "arch.puzzle_emb_ndim=32", "optim.ema=true", "optim.max_steps=9", "system.checkpoint_interval=4"]
    summary = train(tiny_cfg(ids_data, tmp_path / "a", *extra))
    cfg = tiny_cfg(ids_data, tmp_path / "b", *extra)
    _crash_at(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()
    payload = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert payload["step"] == 4 and stored_config(payload).H_cycles == 2  # the arch, not the stage
    assert train(cfg)["steps"] == 9
    assert_same(final_state(tmp_path / "a"), final_state(tmp_path / "b"))
    # and the curriculum did change training: the same run without it ends elsewhere
    plain = [e for e in extra if not e.startswith("optim.curriculum")]
    train(tiny_cfg(ids_data, tmp_path / "c", *plain))
    assert not all(torch_equal(final_state(tmp_path / "a")["model"], final_state(tmp_path / "c")["model"]))
    assert summary["steps"] == 9


def torch_equal(a: dict, b: dict) -> list[bool]:
    import torch
    return [torch.equal(a[k], b[k]) for k in a]
