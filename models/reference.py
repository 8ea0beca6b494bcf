"""Import configs and weights written by the reference code (sapientinc/HRM,
SamsungSAILMontreal/TinyRecursiveModels) into our models.

    from models import MODELS, config_from_reference, load_reference_state_dict
    model = MODELS["hrm"](config_from_reference(arch_cfg_dict, "hrm"))
    warnings = load_reference_state_dict(model, "checkpoint/step_12345")

Key mapping (reference -> ours): the prefixes `_orig_mod.` (torch.compile), `model.` (loss-head
wrapper) and `inner.` (ACT wrapper) are stripped in any combination; then
    embed_tokens.*, puzzle_emb.*, embed_pos.*  -> embedding.<same>
    H_level.*, L_level.*                        -> core.<same>
    lm_head.*, q_head.*, H_init, L_init         -> unchanged
Non-persistent tables (rotary_emb.*) are skipped. Tensors are cast to our float32 storage.
A puzzle table whose number of rows differs from the model's (e.g. fine-tuning on other
puzzles) is replaced, like the reference trainer does, by the mean of the loaded rows repeated
for every identifier; that is reported as a warning. Any other missing, unexpected or
mis-shaped key raises ValueError.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from .config import ModelConfig

_STRIP = ("_orig_mod.", "model.", "inner.")
_EMBEDDING = ("embed_tokens.", "puzzle_emb.", "embed_pos.")
_CORE = ("H_level.", "L_level.")
_SKIP = ("rotary_emb.",)
PUZZLE_KEY = "embedding.puzzle_emb.weights"


def map_reference_key(key: str) -> str | None:
    """Our name for a reference state-dict key, or None for keys we do not store."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _STRIP:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    if key.startswith(_SKIP):
        return None
    if key.startswith(_EMBEDDING):
        return "embedding." + key
    if key.startswith(_CORE):
        return "core." + key
    return key


def load_reference_state_dict(model: nn.Module, state_dict_or_path: Mapping[str, torch.Tensor] | str | os.PathLike,
                              ) -> list[str]:
    """Load reference weights into `model` (a models.HaltingModel); returns warnings."""
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        state = torch.load(state_dict_or_path, map_location="cpu", weights_only=True)
    else:
        state = state_dict_or_path
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):  # e.g. a fixture file
        state = state["state_dict"]
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = map_reference_key(key)
        if name is not None:
            mapped[name] = value
    warnings: list[str] = []
    if PUZZLE_KEY in mapped and PUZZLE_KEY in ours and mapped[PUZZLE_KEY].shape != ours[PUZZLE_KEY].shape:
        loaded, want = mapped[PUZZLE_KEY], ours[PUZZLE_KEY].shape
        if loaded.ndim != 2 or loaded.shape[1] != want[1]:
            raise ValueError(f"puzzle embedding width {tuple(loaded.shape)} does not fit the model's {tuple(want)}")
        mapped[PUZZLE_KEY] = loaded.float().mean(dim=0, keepdim=True).expand(want).contiguous()
        warnings.append(f"puzzle embedding table has {loaded.shape[0]} rows but the model has {want[0]}: "
                        f"every row re-initialised to the mean of the loaded table")
    missing = sorted(set(ours) - set(mapped))
    unexpected = sorted(set(mapped) - set(ours))
    if missing or unexpected:
        raise ValueError(f"reference state dict does not fit the model: missing {missing}, unexpected {unexpected}")
    for name, value in mapped.items():
        if value.shape != ours[name].shape:
            raise ValueError(f"{name}: reference shape {tuple(value.shape)} != model shape {tuple(ours[name].shape)}")
    model.load_state_dict(mapped, strict=True)
    return warnings


# Reference config keys that describe the run, not the model.
_IGNORED_KEYS = {"batch_size", "name", "causal"}
_LOSSES = {"stablemax_cross_entropy": "stablemax", "softmax_cross_entropy": "softmax"}


def config_from_reference(cfg: Mapping[str, Any], model: str, **overrides: Any) -> ModelConfig:
    """ModelConfig from a reference arch config dict (as in the fixtures' `config`).

    `no_ACT_continue` (TRM) becomes halt_rule 'q_halt' (True, its default) or
    'q_halt_vs_continue'; HRM always uses 'q_halt_vs_continue'. `loss` may be the reference's
    {loss_type: ...} dict. mlp_t with pos_encodings 'rope' becomes 'none' (RoPE is unused there).
    Unknown keys raise ValueError.
    """
    fields = set(ModelConfig.__dataclass_fields__)
    kwargs: dict[str, Any] = {}
    no_act_continue = True
    for key, value in cfg.items():
        if key == "no_ACT_continue":
            no_act_continue = bool(value)
        elif key == "loss":
            loss_type = value.get("loss_type", "stablemax_cross_entropy") if isinstance(value, Mapping) else value
            kwargs["loss"] = _LOSSES.get(loss_type, loss_type)
        elif key in fields:
            kwargs[key] = value
        elif key not in _IGNORED_KEYS:
            raise ValueError(f"reference config key {key!r} has no ModelConfig counterpart")
    if model != "transformer":
        kwargs.setdefault("halt_rule", "q_halt_vs_continue" if model == "hrm" or not no_act_continue else "q_halt")
    if model == "hrm":
        kwargs["puzzle_emb_len"] = 0  # HRM always derives the prefix length from the width
    if kwargs.get("mlp_t") and kwargs.get("pos_encodings", "rope") == "rope":
        kwargs["pos_encodings"] = "none"
    kwargs.update(overrides)
    return ModelConfig(**kwargs)
