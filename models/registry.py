"""Model registry: name -> constructor taking a ModelConfig and returning the halting wrapper, and
`build_model`, the one way to make a model from what the user chose and what the dataset dictates.

    from models import ArchConfig, DataShape, build_model
    model = build_model("trm", ArchConfig(hidden_size=128), DataShape(seq_len=81, vocab_size=11), "float32")
    model = MODELS["trm"](config)            # from a complete ModelConfig (e.g. a checkpoint's model.config)

Each constructor fills the config fields left as None (`halt_rule`, `grad_mode`) with its
core's reference default and stores the resolved config as `model.config`:
    hrm         HRM core, q_halt_vs_continue, one_step
    trm         TRM core, q_halt, last_cycle (attention, or the token MLP if mlp_t=True)
    trm-mlp     TRM with mlp_t=True; pos_encodings 'rope' becomes 'none' (the paper's setting)
    transformer non-recursive baseline (models/transformer.py), q_halt
    ut          Universal Transformer with per-cell ACT (models/ut.py), q_halt, full
    rrt         Relaxed Recursive Transformer: TRM's tied blocks + per-position LoRA (models/lora.py)
    mor         Mixture-of-Recursions over TRM's H-cycles (models/mor.py), q_halt, last_cycle
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

import torch

from .config import ArchConfig, DataShape, ModelConfig
from .halting import HaltingModel
from .hrm import HRMCore
from .transformer import TransformerCore
from .trm import TRMCore
from .lora import RRTCore
from .mor import MoRCore
from .ut import UTCore


def _resolve(config: ModelConfig, core_cls: type[nn.Module], **overrides) -> ModelConfig:
    return dataclasses.replace(
        config,
        halt_rule=config.halt_rule or core_cls.default_halt_rule,
        grad_mode=config.grad_mode or core_cls.default_grad_mode,
        **overrides)


def build_hrm(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, HRMCore), HRMCore)


def build_trm(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, TRMCore), TRMCore)


def build_trm_mlp(config: ModelConfig) -> HaltingModel:
    pos = "none" if config.pos_encodings == "rope" else config.pos_encodings
    return HaltingModel(_resolve(config, TRMCore, mlp_t=True, pos_encodings=pos), TRMCore)


def build_transformer(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, TransformerCore), TransformerCore)


def build_ut(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, UTCore), UTCore)


def build_rrt(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, RRTCore), RRTCore)


def build_mor(config: ModelConfig) -> HaltingModel:
    return HaltingModel(_resolve(config, MoRCore), MoRCore)


MODELS: dict[str, Callable[[ModelConfig], HaltingModel]] = {
    "hrm": build_hrm,
    "trm": build_trm,
    "trm-mlp": build_trm_mlp,
    "transformer": build_transformer,
    "ut": build_ut,
    "rrt": build_rrt,
    "mor": build_mor,
}


def build_model(name: str, arch: ArchConfig, shape: DataShape, dtype: str | torch.dtype) -> HaltingModel:
    """The `name` model with architecture `arch` fitted to `shape`, computing in `dtype` (weights stay
    float32). ValueError for an unknown name or an architecture that does not fit the shape.
    Lives beside MODELS so that models/ alone can build any model (no trainer needed)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](ModelConfig.of(arch, shape, dtype))
