"""key=value config overrides, dict round trips and diffs. Run: python -m pytest -q tests/test_overrides.py"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import torch

from puzzles.errors import UserError
from train.errors import ConfigError
from train.overrides import apply_overrides, config_from_dict, config_leaves, config_to_dict, diff_configs


@dataclass(frozen=True)
class Arch:
    hidden_size: int = 64
    num_heads: int = 2
    L_cycles: int = 3
    pos_encodings: Literal["rope", "learned", "none"] = "rope"
    mlp_t: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.L_cycles < 1:
            raise ValueError(f"L_cycles must be >= 1, got {self.L_cycles}")


@dataclass
class Optim:
    lr: float = 1e-4
    beta1: float = 0.9
    weight_decay: float = 0.1
    warmup: Optional[int] = None


@dataclass
class Eval:
    lr: float = 0.0          # a second 'lr' leaf: short key 'lr' is ambiguous
    every: int | None = 100
    tag: str | None = None


@dataclass
class Config:
    arch: Arch = field(default_factory=Arch)
    optim: Optim = field(default_factory=Optim)
    eval: Eval = field(default_factory=Eval)
    run_name: str = "run"
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0

    def __post_init__(self):
        if self.arch.mlp_t and self.arch.pos_encodings != "none":
            raise ValueError("arch.mlp_t needs arch.pos_encodings='none'")


def test_dotted_and_short_keys_and_type_parsing():
    cfg = Config()
    new = apply_overrides(cfg, ["arch.L_cycles=4", "weight_decay=1", "beta1=0.8", "--seed=7",
                                "arch.pos_encodings=learned", "mlp_t=false", "optim.warmup=200",
                                "eval.every=None", "tag=a", "precision=bf16",
                                "run_name=hello world", "optim.lr=3e-4"])
    assert new.arch.L_cycles == 4 and isinstance(new.arch.L_cycles, int)
    assert new.optim.weight_decay == 1.0 and isinstance(new.optim.weight_decay, float)
    assert new.optim.beta1 == 0.8
    assert new.seed == 7
    assert new.arch.pos_encodings == "learned"
    assert new.arch.mlp_t is False
    assert new.optim.warmup == 200
    assert new.eval.every is None
    assert new.eval.tag == "a"
    assert new.precision == "bf16"
    assert new.run_name == "hello world"
    assert new.optim.lr == 3e-4
    assert cfg == Config()  # the input is not modified
    assert apply_overrides(cfg, []) is cfg


@pytest.mark.parametrize("text,expected", [("true", True), ("1", True), ("YES", True), ("false", False),
                                           ("0", False), ("no", False)])
def test_bool_spellings(text, expected):
    assert apply_overrides(Config(), [f"arch.mlp_t={text}", "pos_encodings=none"]).arch.mlp_t is expected


def test_later_override_wins_and_validation_sees_all_overrides_together():
    # num_heads=3 applied alone to hidden_size 64 fails; validation must run once on the result.
    cfg = apply_overrides(Config(), ["num_heads=3", "hidden_size=96"])
    assert (cfg.arch.hidden_size, cfg.arch.num_heads) == (96, 3)
    cfg = apply_overrides(Config(), ["mlp_t=true", "pos_encodings=none"])  # root check, both at once
    assert cfg.arch.mlp_t and cfg.arch.pos_encodings == "none"
    assert apply_overrides(Config(), ["seed=1", "seed=2"]).seed == 2


@pytest.mark.parametrize("override,message", [
    ("arch.L_cycle=4", "unknown config key 'arch.L_cycle'; did you mean 'arch.L_cycles'?"),
    ("L_cycle=4", "unknown config key 'L_cycle'; did you mean 'arch.L_cycles'?"),
    ("zzzz=1", "unknown config key 'zzzz'; valid keys: arch.hidden_size"),
    ("lr=3e-4", "config key 'lr' is ambiguous; use the full name: optim.lr, eval.lr"),
    ("arch=4", "config key 'arch' is a section, not a value; set one of its fields, e.g. 'arch.hidden_size'"),
    ("arch.L_cycles", "override 'arch.L_cycles' must look like key=value"),
    ("=4", "override '=4' must look like key=value"),
    ("arch.L_cycles=four", "arch.L_cycles expects int, got 'four'"),
    ("arch.L_cycles=4.5", "arch.L_cycles expects int, got '4.5'"),
    ("optim.lr=fast", "optim.lr expects float, got 'fast'"),
    ("mlp_t=maybe", "arch.mlp_t expects bool, got 'maybe'"),
    ("pos_encodings=alibi", "arch.pos_encodings expects one of 'rope', 'learned', 'none', got 'alibi'"),
    ("beta1=0.9,0.95", "optim.beta1 expects float, got '0.9,0.95'"),
    ("optim.warmup=soon", "optim.warmup expects int or None, got 'soon'"),
    ("precision=fp16", "precision expects one of 'fp32', 'bf16', got 'fp16'"),
    ("arch.L_cycles=0", "invalid config after setting arch.L_cycles: L_cycles must be >= 1, got 0"),
    ("num_heads=3", "hidden_size (64) must be divisible by num_heads (3)"),
    ("mlp_t=true", "arch.mlp_t needs arch.pos_encodings='none'"),
])
def test_errors(override, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), [override])
    assert message in str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in str(info.value)


def test_config_leaves():
    leaves = config_leaves(Config())
    assert leaves["arch.L_cycles"] == 3 and leaves["optim.beta1"] == 0.9 and leaves["seed"] == 0
    assert "arch" not in leaves


def test_dict_round_trip_through_json_and_torch():
    cfg = apply_overrides(Config(), ["beta1=0.5", "tag=x", "precision=bf16", "warmup=5"])
    d = config_to_dict(cfg)
    assert d["optim"]["beta1"] == 0.5 and d["precision"] == "bf16" and d["eval"]["tag"] == "x"
    assert config_from_dict(Config, json.loads(json.dumps(d))) == cfg
    buf = io.BytesIO()
    torch.save({"config": d}, buf)
    buf.seek(0)
    assert config_from_dict(Config, torch.load(buf, weights_only=True)["config"]) == cfg
    # Missing keys take the defaults (a checkpoint written before a field was added).
    del d["optim"]["weight_decay"]
    assert config_from_dict(Config, d).optim.weight_decay == 0.1


def test_config_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown key.*arch.L_cyclez"):
        config_from_dict(Config, {"arch": {"L_cyclez": 2}})
    with pytest.raises(ConfigError, match="L_cycles must be >= 1"):
        config_from_dict(Config, {"arch": {"L_cycles": 0}})
    with pytest.raises(ConfigError, match="should be a dict"):
        config_from_dict(Config, {"arch": 3})


def test_diff_configs():
    a = Config()
    b = apply_overrides(a, ["arch.L_cycles=4", "beta1=0.99", "seed=3"])
    assert diff_configs(a, a) == []
    assert diff_configs(a, b) == ["arch.L_cycles", "optim.beta1", "seed"]
    assert diff_configs(config_to_dict(a), b) == ["arch.L_cycles", "optim.beta1", "seed"]
    extra = config_to_dict(a)
    extra["arch"]["new_field"] = 1
    del extra["seed"]
    assert diff_configs(a, extra) == ["seed", "arch.new_field"]
