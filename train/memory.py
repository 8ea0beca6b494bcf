"""Will the run fit in memory? A lower-bound estimate from the config, checked before anything is built.

    check_memory(cfg)   # TrainError naming the fields when the run cannot fit the device

An absurd config (arch.hidden_size=100000) otherwise ends in the allocator's "tried to allocate
213 GB" traceback, after the run folder was made. The estimate counts only what the run surely
needs, so a config that fits is never refused: the dense blocks' weights, gradients, optimiser
moments and EMA copy in float32, the puzzle-embedding table (keyed per task: only the copies' row
keys), and one net call's stored activations (block input and SwiGLU hidden) for one process's
share of the batch.
"""
from __future__ import annotations

import json
import os

import torch

from models.embedding import TaskPuzzleEmbedding
from models.layers import swiglu_width

from .config import TrainConfig
from .data import data_dir_of
from .errors import TrainError

GIB = 2 ** 30


def training_bytes(cfg: TrainConfig, seq_len: int = 1, identifiers: int = 1) -> tuple[int, int]:
    """(bytes of parameters + gradients + optimiser state, bytes of activations): lower bounds for
    `cfg` on a dataset of `seq_len` tokens and `identifiers` puzzle identifiers."""
    arch, optim = cfg.arch, cfg.optim
    h = arch.hidden_size
    per_block = 3 * h * swiglu_width(h, arch.expansion) + (0 if arch.mlp_t else 4 * h * h)  # SwiGLU + attention
    if cfg.model == "hrm":
        blocks = arch.H_layers + arch.L_layers
    elif cfg.model in ("trm", "trm-mlp", "rrt"):
        blocks = arch.unique_layers or arch.L_layers
    else:
        blocks = arch.L_layers
    copies = 2 + (2 if optim.optimizer == "adam" else 1) + (1 if optim.ema else 0)  # weights, grads, moments, EMA
    if arch.puzzle_emb_keying == "per_task":  # the task table size is unknown here: count the copies' int32 row keys
        table = identifiers * TaskPuzzleEmbedding.refs * 4
    else:
        table = identifiers * arch.puzzle_emb_ndim * 4  # a float32 vector per augmented copy
    params = 4 * copies * blocks * per_block + table
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    rows = max(1, optim.global_batch_size // world)
    element = 4 if cfg.system.dtype in ("float32", "fp32") else 2  # auto may compute in bf16
    tokens = rows * (seq_len + arch.prefix_len)
    activations = element * tokens * arch.L_layers * (h + 2 * swiglu_width(h, arch.expansion))
    return params, activations


def device_bytes(device: str) -> tuple[int, str] | None:
    """(total memory, its name) of the device `system.device` picks; None when it cannot be told."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None  # setup_system says so in one line
        index = int(device.split(":")[1]) if ":" in device else int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            return None
        props = torch.cuda.get_device_properties(index)
        return props.total_memory, f"cuda:{index} ({props.name})"
    try:  # CPU, and MPS, whose memory is the machine's
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(cfg: TrainConfig) -> None:
    """Refuse, before anything is built or written, a run whose lower-bound memory need exceeds the
    device's total memory; the error names the fields to shrink."""
    have = device_bytes(cfg.system.device)
    if have is None:
        return
    meta = data_dir_of(cfg) / "train" / "dataset.json"
    try:  # the dataset may not be built yet: then the estimate leaves its size out
        info = json.loads(meta.read_text())
        seq_len, identifiers = int(info.get("seq_len", 1)), int(info.get("num_puzzle_identifiers", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        seq_len, identifiers = 1, 1
    params, activations = training_bytes(cfg, seq_len, identifiers)
    total, where = have
    if params + activations > total:
        raise TrainError(
            f"the run needs at least {(params + activations) / GIB:.1f} GiB ({params / GIB:.1f} GiB of weights, "
            f"gradients and optimiser state for arch.hidden_size={cfg.arch.hidden_size}, "
            f"{activations / GIB:.1f} GiB of activations for optim.global_batch_size={cfg.optim.global_batch_size}) "
            f"but {where} has {total / GIB:.1f} GiB: choose a smaller arch.hidden_size or optim.global_batch_size")
