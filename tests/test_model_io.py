"""The model config built once: build_model(name, arch, shape, dtype), checkpoints that store the
architecture and the data shape apart, and load_run reading them back (older formats too).
Run: python -m pytest -q tests/test_model_io.py
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models import ArchConfig, DataShape, ModelConfig, build_model
from train.checkpoint import load_checkpoint, save_checkpoint
from train.errors import TrainError
from train.model_io import config_from_checkpoint, load_run, model_record
from train.overrides import config_to_dict
from train.presets import PRESETS

ARCH = ArchConfig(hidden_size=32, num_heads=2, H_cycles=1, L_cycles=2, L_layers=1, halt_max_steps=3,
                  puzzle_emb_ndim=32, puzzle_emb_len=1, pos_encodings="rope2d")
SHAPE = DataShape(seq_len=16, vocab_size=6, num_puzzle_identifiers=3)
GRID = {"family": "sudoku", "size": 4, "box": [2, 2]}


def batch(n: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"inputs": torch.randint(0, 6, (n, 16), generator=g, dtype=torch.int32),
            "puzzle_identifiers": torch.randint(0, 3, (n,), generator=g, dtype=torch.int32)}


def outputs(model) -> tuple[torch.Tensor, ...]:
    model.eval()
    b = batch()
    with torch.inference_mode():
        carry, logits, q_halt, q_continue = model.step(model.initial_carry(b), b)
        _, logits2, _, _ = model.step(carry, b)
    return logits, logits2, q_halt, q_continue


@pytest.mark.parametrize("name", ["trm", "hrm", "trm-mlp"])
def test_round_trip_stores_arch_and_shape_and_rebuilds_the_same_model(tmp_path, name):
    arch = dataclasses.replace(ARCH, pos_encodings="none") if name == "trm-mlp" else ARCH
    torch.manual_seed(0)
    model = build_model(name, arch, SHAPE, "float32")
    with torch.no_grad():  # weights the checkpoint must carry (not just the seeded init)
        model.lm_head.weight.add_(0.5)
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"model": model.state_dict(), **model_record(name, model, GRID)})

    payload = load_checkpoint(path)
    assert payload["shape"] == {"seq_len": 16, "vocab_size": 6, "num_puzzle_identifiers": 3, "num_puzzle_tasks": 0,
                                "grid_slots": 0}
    assert "seq_len" not in payload["arch"] and payload["arch"]["hidden_size"] == 32
    assert payload["dtype"] == "float32" and payload["grid"] == GRID
    run = load_run(path)
    assert (run.name, run.shape) == (name, SHAPE) and run.arch == model.config.arch
    assert run.model.config == model.config
    for a, b in zip(outputs(model), outputs(run.model)):
        assert torch.equal(a, b)
    assert load_run(path, dtype="bfloat16").model.config.forward_dtype == "bfloat16"


def test_build_model_is_the_model_config_of_the_parts():
    config = ModelConfig.of(ARCH, SHAPE, torch.float32)
    assert (config.arch, config.shape, config.forward_dtype) == (ARCH, SHAPE, "float32")
    with pytest.raises(ValueError, match="grid_width"):  # 2-D positions on 14 tokens: not a grid
        build_model("trm", ARCH, DataShape(seq_len=14, vocab_size=6), "float32")


def test_older_checkpoints_load(tmp_path):
    """Written before arch and shape were stored apart: the architecture held the dataset fields
    (placeholders in the config, real ones in model_config) and a retired eval_adaptive switch."""
    torch.manual_seed(0)
    model = build_model("trm", ARCH, SHAPE, "float32")
    cfg = config_to_dict(PRESETS["quick"]("sudoku", "trm"))
    cfg["arch"] |= {"seq_len": 1, "vocab_size": 1, "num_puzzle_identifiers": 1, "forward_dtype": "bfloat16",
                    "eval_adaptive": False}
    old = {"config": cfg, "model": model.state_dict(), "model_name": "trm", "grid": GRID,
           "model_config": config_to_dict(model.config) | {"eval_adaptive": False}}
    save_checkpoint(tmp_path / "old.pt", old)
    run = load_run(tmp_path / "old.pt")
    assert run.shape == SHAPE and run.cfg == PRESETS["quick"]("sudoku", "trm")
    assert config_from_checkpoint(old).arch == PRESETS["quick"]("sudoku", "trm").arch
    for a, b in zip(outputs(model), outputs(run.model)):
        assert torch.equal(a, b)


def test_a_checkpoint_without_its_shape_is_a_one_line_error(tmp_path):
    torch.manual_seed(0)
    model = build_model("trm", ARCH, SHAPE, "float32")
    record = model_record("trm", model, GRID)
    del record["shape"]
    assert "model_config" not in record  # the model is recorded once
    save_checkpoint(tmp_path / "x.pt", {"model": model.state_dict(), **record})
    with pytest.raises(TrainError) as err:
        load_run(tmp_path / "x.pt")
    message = str(err.value)
    assert "\n" not in message and "does not say its data shape" in message and "x.pt" in message
    with pytest.raises(TrainError, match="weights do not fit"):  # an architecture the weights do not fit
        save_checkpoint(tmp_path / "y.pt", {"model": model.state_dict(), **model_record("trm", model, GRID)})
        load_run(tmp_path / "y.pt", arch=dataclasses.replace(ARCH, hidden_size=64, puzzle_emb_ndim=64))
