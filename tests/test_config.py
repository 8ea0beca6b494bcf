"""Presets and the trainer's command line: `python -m pytest -q tests/test_config.py`."""
from __future__ import annotations

import subprocess
import sys

import pytest

from train.config import FAMILIES, MODEL_NAMES
from train.errors import ConfigError
from train.overrides import apply_overrides
from train.presets import PRESETS


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_preset_builds(preset, family, model):
    cfg = PRESETS[preset](family, model)
    assert cfg.model == model and cfg.data.family == family and cfg.preset == preset
    if model == "trm-mlp":
        assert cfg.arch.mlp_t and cfg.arch.pos_encodings == "none"


def test_paper_recipes_match_the_papers():
    trm_sudoku = PRESETS["paper"]("sudoku", "trm-mlp")
    assert (trm_sudoku.optim.lr, trm_sudoku.optim.puzzle_emb_lr) == (1e-4, 1e-4)
    assert (trm_sudoku.optim.weight_decay, trm_sudoku.optim.puzzle_emb_weight_decay) == (1.0, 1.0)
    assert (trm_sudoku.arch.H_cycles, trm_sudoku.arch.L_cycles) == (3, 6)
    assert trm_sudoku.optim.global_batch_size == 768 and trm_sudoku.optim.epochs == 50000
    assert trm_sudoku.optim.ema and trm_sudoku.optim.ema_rate == 0.999
    trm_arc = PRESETS["paper"]("arc", "trm")
    assert (trm_arc.arch.H_cycles, trm_arc.arch.L_cycles) == (3, 4)
    assert trm_arc.optim.puzzle_emb_lr == 1e-2 and trm_arc.optim.weight_decay == 0.1
    hrm = PRESETS["paper"]("arc", "hrm")
    assert (hrm.arch.H_layers, hrm.arch.L_layers, hrm.arch.H_cycles, hrm.arch.L_cycles) == (4, 4, 2, 2)


def test_overrides_and_dataset_keys():
    """The architecture holds no dataset fields: the dataset's shape and the compute dtype are not keys."""
    cfg = apply_overrides(PRESETS["quick"]("sudoku", "trm"), ["arch.L_cycles=2", "lr=3e-4"])
    assert cfg.arch.L_cycles == 2 and cfg.optim.lr == 3e-4
    for key in ("arch.seq_len", "arch.vocab_size", "arch.num_puzzle_identifiers", "forward_dtype"):
        with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
            apply_overrides(cfg, [f"{key}=1"])
    with pytest.raises(ConfigError, match="hidden_size"):
        apply_overrides(cfg, ["arch.hidden_size=100"])  # not divisible by 4 heads


def test_cli_unknown_key_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train.sudoku", "--model", "trm", "arch.L_cycle=3"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown config key 'arch.L_cycle'; did you mean 'arch.L_cycles'?"]
    assert not (tmp_path / "data").exists()  # nothing built for a typo


def test_cli_overrides_may_come_before_flags():
    """`python -m train.maze --model trm data.path=D --preset quick k=v` is how people type it:
    overrides on both sides of a flag all reach the config (argparse's plain parse refuses it)."""
    from train.cli import parser
    args = parser("maze").parse_intermixed_args(
        ["--model", "trm", "data.path=D", "--preset", "quick", "optim.lr=1e-3", "--resume"])
    assert args.overrides == ["data.path=D", "optim.lr=1e-3"]
    assert (args.model, args.preset, args.resume) == ("trm", "quick", True)


@pytest.mark.parametrize("model", ["ut", "rrt", "mor"])
def test_quick_variants_follow_trms_attention_recipe(model):
    """The survey's variants are attention models: on Sudoku and mazes their quick preset is trm's
    (2-D positions, lr decay), so a comparison with trm changes only the recursion."""
    from train.presets import quick
    for family in ("sudoku", "maze"):
        trm, var = quick(family, "trm"), quick(family, model)
        assert var.arch.pos_encodings == trm.arch.pos_encodings != "rope"
        assert var.arch.attn_bias == trm.arch.attn_bias
        assert (var.optim.lr, var.optim.lr_min_ratio, var.optim.global_batch_size) == \
               (trm.optim.lr, trm.optim.lr_min_ratio, trm.optim.global_batch_size)
    sudoku = quick("sudoku", model)
    assert sudoku.arch.ut_max_steps == 7 if model == "ut" else sudoku.arch.H_cycles == 2


def test_help_lists_the_values_of_the_model_asked_for(capsys):
    from train.cli import main
    for argv, line in ((["--help"], "optim.lr = 0.002"), (["--model", "trm", "--help"], "optim.lr = 0.0007"),
                       (["--model", "hrm", "--preset", "paper", "--help"], "paper preset with --model hrm")):
        with pytest.raises(SystemExit):
            main("sudoku", argv)
        assert line in capsys.readouterr().out, argv


def test_quick_preset_rows_name_real_pairs_and_say_why():
    """Every row of the quick table matches some (family, model), sets a real field, and gives a
    reason; a docs page it cites exists."""
    import dataclasses
    import re
    from pathlib import Path

    from models import ArchConfig
    from train.config import EvalConfig, OptimConfig
    from train.presets import QUICK
    root = Path(__file__).resolve().parents[1]
    fields = {"arch": ArchConfig, "optim": OptimConfig, "eval": EvalConfig}
    for row in QUICK:
        assert set(row.families) <= set(FAMILIES) and set(row.models) <= set(MODEL_NAMES) and row.models, row
        assert len(row.why) > 20, row
        for part, cls in fields.items():
            assert set(getattr(row, part)) <= {f.name for f in dataclasses.fields(cls)}, (row, part)
        for page in re.findall(r"docs/[\w.]+\.md", row.why):
            assert (root / page).is_file(), page
