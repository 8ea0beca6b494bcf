"""The reference implementation's own training step at our shapes, for `bench/gpu.py`.

    with checkout_modules(ref_dir):                 # a TinyRecursiveModels checkout you provide
        step = ReferenceStep(load_reference(ref_dir, "trm"), model.config, optim, total_steps=10, device="cuda")
        loss = step(batch, 1)

The public TinyRecursiveModels checkout (it also holds the HRM model) is imported at run time from
the folder it is given; nothing of it lives in this repository and nothing is downloaded. Its
model, ACT loss head, sparse sign-SGD and EMA helper run as they are, in the order of its
`pretrain.py` step: forward through the compiled loss head, (loss / global batch).backward(),
each optimiser at the scheduled lr then zero-grad, the metrics read to the host, EMA. Its
AdamATan2 comes from the `adam_atan2` package (a CUDA extension); where that is not installed
ours (`train.optim.AdamATan2`, the same update rule) stands in and `ReferenceStep.note` says so.

The checkout's top-level package is also called `models`, so it is imported and run inside
`checkout_modules`, which sets ours aside (from `sys.modules` and `sys.path`) and puts it back.
Weights go one way, reference -> ours: the reference model is built first and its initial state
loaded into ours (`models.load_reference_state_dict`), so both start from the same weights.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import SimpleNamespace

import torch

from models import ModelConfig
from puzzles.errors import UserError
from train.config import OptimConfig
from train.optim import AdamATan2 as OurAdamATan2
from train.optim import lr_at

# our model name -> (module under the checkout's `models/`, class)
CLASSES = {"trm": ("recursive_reasoning.trm", "TinyRecursiveReasoningModel_ACTV1"),
           "trm-mlp": ("recursive_reasoning.trm", "TinyRecursiveReasoningModel_ACTV1"),
           "hrm": ("recursive_reasoning.hrm", "HierarchicalReasoningModel_ACTV1")}


_STASH: dict[str, dict] = {}  # checkout folder -> its `models.*` modules, kept between uses


def _take_models() -> dict:
    return {k: sys.modules.pop(k) for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]}


@contextlib.contextmanager
def checkout_modules(ref_dir: str):
    """Inside, `models` is the checkout's package, ours outside. Build and run the reference inside:
    torch.compile looks modules up by name while it traces. Its `models` has no __init__.py, so a
    folder holding ours is also taken off `sys.path` (a regular package would win the import)."""
    ref_dir = os.path.abspath(ref_dir)
    ours, path = _take_models(), list(sys.path)
    sys.path[:] = [ref_dir] + [p for p in path if not os.path.isfile(os.path.join(p or ".", "models", "__init__.py"))]
    sys.modules.update(_STASH.get(ref_dir, {}))
    try:
        yield
    finally:
        sys.path[:] = path
        _STASH[ref_dir] = _take_models()
        sys.modules.update(ours)


def load_reference(ref_dir: str, model_name: str) -> SimpleNamespace:
    """The checkout's classes for `model_name` (call inside `checkout_modules(ref_dir)`); UserError
    when the folder is not such a checkout."""
    if model_name not in CLASSES:
        raise UserError(f"the reference has no counterpart of model {model_name!r}")
    if not os.path.isfile(os.path.join(ref_dir, "models", "losses.py")):
        raise UserError(f"{ref_dir}: not a TinyRecursiveModels checkout (no models/losses.py)")
    module, cls = CLASSES[model_name]
    net = importlib.import_module("models." + module)
    package = sys.modules["models"]  # a namespace package, whose __file__ is None: Python 3.11's
    if getattr(package, "__file__", None) is None:  # inspect.getmodule, which torch runs while it traces, fails on it
        package.__file__ = os.path.join(os.path.abspath(ref_dir), "models", "__init__.py")
    losses = importlib.import_module("models.losses")
    sparse = importlib.import_module("models.sparse_embedding")
    ema = importlib.import_module("models.ema")
    try:
        from adam_atan2 import AdamATan2
        note = ""
    except ImportError:
        AdamATan2, note = OurAdamATan2, "AdamATan2: ours (adam_atan2 not installed)"
    return SimpleNamespace(model_cls=getattr(net, cls), loss_head=losses.ACTLossHead,
                           sparse_sgd=sparse.CastedSparseEmbeddingSignSGD_Distributed,
                           ema=ema.EMAHelper, adam=AdamATan2, note=note)


def reference_config(cfg: ModelConfig, batch: int) -> dict:
    """The reference's arch config dict (its `*_ACTV1Config` fields) for our `cfg`."""
    keys = ("seq_len", "vocab_size", "num_puzzle_identifiers", "puzzle_emb_ndim", "puzzle_emb_len", "H_cycles",
            "L_cycles", "H_layers", "L_layers", "hidden_size", "expansion", "num_heads", "pos_encodings",
            "rms_norm_eps", "rope_theta", "halt_max_steps", "halt_exploration_prob", "forward_dtype", "mlp_t")
    return {**{k: getattr(cfg, k) for k in keys}, "batch_size": batch, "causal": False,
            "no_ACT_continue": cfg.halt_rule == "q_halt"}


class ReferenceStep:
    """The reference model with its loss head and optimisers; `__call__` runs one training step."""

    def __init__(self, ref: SimpleNamespace, cfg: ModelConfig, opt: OptimConfig, total_steps: int,
                 device: str | torch.device, compile: bool = True, seed: int = 0,
                 state: dict[str, torch.Tensor] | None = None):
        self.opt, self.total_steps, self.note = opt, total_steps, ref.note
        torch.manual_seed(seed)
        with torch.device(device):  # the reference builds its tensors on the default device
            net = ref.model_cls(reference_config(cfg, opt.global_batch_size))
            self.model = ref.loss_head(net, loss_type=f"{cfg.loss}_cross_entropy")
        if state is not None:
            self.model.load_state_dict(state)
        self.forward = torch.compile(self.model) if compile else self.model
        self.optimizers = [(ref.adam(self.model.parameters(), lr=0, weight_decay=opt.weight_decay,
                                     betas=(opt.beta1, opt.beta2)), opt.lr)]
        if cfg.puzzle_emb_ndim:
            self.optimizers.insert(0, (ref.sparse_sgd(net.puzzle_emb.buffers(), lr=0, world_size=1,
                                                      weight_decay=opt.puzzle_emb_weight_decay), opt.puzzle_emb_lr))
        self.ema = None
        if opt.ema:
            self.ema = ref.ema(mu=opt.ema_rate)
            self.ema.register(self.model)
        self.device, self.carry = torch.device(device), None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state on the CPU (its keys as the reference names them)."""
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def __call__(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """One training step (`step`: 1-based, drives the lr); returns the summed loss."""
        if self.carry is None:
            with torch.device(self.device):
                self.carry = self.model.initial_carry(batch)
        self.carry, loss, metrics, _, _ = self.forward(carry=self.carry, batch=batch, return_keys=[])
        ((1 / self.opt.global_batch_size) * loss).backward()
        for optim, base_lr in self.optimizers:
            lr = lr_at(step, base_lr, self.opt.lr_warmup_steps, self.total_steps, self.opt.lr_min_ratio)
            for group in optim.param_groups:
                group["lr"] = lr
            optim.step()
            optim.zero_grad()
        torch.stack([metrics[k] for k in sorted(metrics)]).cpu()  # its step logs the metrics every step
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach()
