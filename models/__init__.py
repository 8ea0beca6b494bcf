"""Recursive reasoning models: HRM, TRM (attention / token-MLP) and a transformer baseline, all
inside one halting (deep-supervision) wrapper with the reference loss head.

    from models import MODELS, ModelConfig
    model = MODELS["trm"](ModelConfig(seq_len=81, vocab_size=11))
    carry = model.initial_carry(batch)
    carry, loss, metrics, outputs, all_finish = model(carry, batch)

See models/halting.py for the step API and models/reference.py to import reference weights.
"""
from .config import ArchConfig, DataShape, ModelConfig
from .embedding import SparsePuzzleEmbedding
from .halting import Carry, HaltingModel
from .reference import config_from_reference, load_reference_state_dict
from .registry import MODELS, build_model

__all__ = ["MODELS", "ArchConfig", "Carry", "DataShape", "HaltingModel", "ModelConfig", "SparsePuzzleEmbedding", "build_model",
           "config_from_reference", "load_reference_state_dict"]
