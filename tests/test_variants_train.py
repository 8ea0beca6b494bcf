"""The recursion variants through the trainer's entry point, and `python -m train.relax` from a
trained untied run to an uptrained RRT run (4x4 Sudoku, tiny sizes, fp32, one thread).

Run: python -m pytest -q tests/test_variants_train.py
"""
from __future__ import annotations

import json
import shlex

import pytest
import torch

from models import MODELS
from puzzles.errors import run_cli
from train.checkpoint import load_checkpoint
from train.cli import main as cli_main
from train.model_io import stored_config
from train.relax import main as relax_main

from .test_train import TINY, _keep_threads, sudoku_data  # noqa: F401 (fixtures)

SHORT = [*TINY, "arch.L_cycles=2", "arch.H_cycles=2", "arch.ut_max_steps=2", "optim.max_steps=2"]


@pytest.mark.parametrize("model, extra", [
    ("ut", []), ("rrt", ["arch.rrt_rank=4"]), ("mor", []), ("mor", ["arch.mor_router=token"]),
    ("trm", ["arch.unique_layers=3", "arch.share_order=cycle_rev"]),
])
def test_each_variant_trains_from_the_cli(tmp_path, sudoku_data, model, extra):  # noqa: F811
    run = tmp_path / model
    assert cli_main("sudoku", ["--model", model, f"data.path={sudoku_data}", f"system.run_dir={run}",
                               *SHORT, *extra]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_keys = set().union(*(line.keys() for line in lines))
    if model == "ut":
        assert "train/ponder_loss" in train_keys and "train/mean_ut_steps" in train_keys
    if model == "mor":
        assert {"train/router_loss", "train/mean_active_r0", "train/mean_active_r1"} <= train_keys
    assert "eval/exact_accuracy" in train_keys


def test_relax_converts_an_untied_run_and_the_trainer_uptrains_it(tmp_path, sudoku_data, capsys):  # noqa: F811
    untied = tmp_path / "untied"
    # attn_bias off: a pairwise score bias is shared by averaging (no LoRA), so only linear
    # layers convert exactly at full rank
    common = [f"data.path={sudoku_data}", *TINY, "arch.L_cycles=2", "arch.H_cycles=2", "optim.max_steps=2",
              "arch.attn_bias=none"]
    assert cli_main("sudoku", ["--model", "trm", f"system.run_dir={untied}", "arch.unique_layers=3",
                               "arch.share_order=sequence", *common]) == 0
    out = tmp_path / "relaxed"
    capsys.readouterr()
    assert run_cli(relax_main, [str(untied), "--init", "average", "--rank", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    command = next(line for line in printed.splitlines() if line.startswith("uptrain: "))
    # at full rank the converted model computes the untied one
    old, new = load_checkpoint(untied / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    models = []
    for payload in (old, new):
        model = MODELS[payload["model_name"]](stored_config(payload))
        model.load_state_dict(payload["model"])
        models.append(model.eval())
    batch = {"inputs": torch.randint(1, 6, (2, 16), dtype=torch.int32), "labels": torch.randint(2, 6, (2, 16)),
             "puzzle_identifiers": torch.zeros(2, dtype=torch.int32)}
    with torch.no_grad():
        a, b = (m.step(m.initial_carry(batch), batch)[1] for m in models)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the printed command continues the converted run with the normal trainer
    args = shlex.split(command[len("uptrain: "):])
    assert args[:2] == ["python", "-m"] and args[2] == "train.sudoku"
    assert cli_main("sudoku", [*args[3:], "optim.max_steps=4"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    # and it refuses to overwrite the uptrained run (even with --force), or to convert a tied run, in one line
    assert run_cli(relax_main, [str(untied), "--out", str(out), "--force"]) == 2
    assert "is a training run" in capsys.readouterr().err
    assert run_cli(relax_main, [str(out), "--out", str(tmp_path / "again")]) == 2
    assert "trm or trm-mlp run" in capsys.readouterr().err
