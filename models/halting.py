"""The halting (ACT / deep-supervision) wrapper shared by every recursion core, plus its heads.

One call = one supervision step for every row of the batch (fixture README 4.7):
  1. rows whose previous step halted restart: z_H, z_L <- H_init, L_init, steps <- 0, and their
     `current_data` row is replaced by the incoming batch row (other rows keep their example);
  2. embed -> core recursion -> lm_head on z_H (prefix dropped), q_head on z_H[:, 0];
  3. steps += 1; halt at halt_max_steps, or (training, or eval with adaptive=True) by the rule
     'q_halt' (q_halt > 0) or 'q_halt_vs_continue' (q_halt > q_continue), with exploration in
     training (a random minimum step count in 2..halt_max_steps with probability p);
  4. for 'q_halt_vs_continue' in training, one extra no-grad step from the new carry gives the
     bootstrapped Q-continue target.
The carry is always detached. Usage:

    carry = model.initial_carry(batch)
    carry, loss, metrics, outputs, all_finish = model(carry, batch)

`model.step(carry, batch) -> (carry, logits, q_halt, q_continue)` is the loss-free supervision
step for inference engines that manage their own slots.

Compiling: `initial_carry` also allocates the puzzle embedding's gradient scratch, so the
compiled forward is one graph. A carry rebuilt by hand (e.g. resumed from a checkpoint) should be
followed by `model.puzzle_emb.prepare(batch_size)` before the first compiled training call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import ModelConfig
from .embedding import InputEmbedding, SparsePuzzleEmbedding
from .layers import CastedLinear, RotaryEmbedding, trunc_normal_
from .losses import act_loss

Batch = dict[str, torch.Tensor]


@dataclass
class Carry:
    z_H: torch.Tensor  # (B, P+S, D) forward dtype; TRM's answer state y
    z_L: torch.Tensor  # (B, P+S, D) forward dtype; TRM's latent z
    steps: torch.Tensor  # (B,) int32, supervision steps taken on the current example
    halted: torch.Tensor  # (B,) bool; True rows are replaced by the next batch's rows
    current_data: Batch = field(default_factory=dict)  # the example each row is working on


class HaltingModel(nn.Module):
    """Input embedding + recursion core + LM / Q heads, one supervision step per call."""

    def __init__(self, config: ModelConfig, core_cls: type[nn.Module]):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.embedding = InputEmbedding(config)
        grid, slots = None, 0  # 2-D: slots stacked as one tall grid; 3-D: (row, column, slot)
        if config.rope_kind == "2d":
            grid = (config.prefix_len, *config.grid_shape)
        elif config.rope_kind == "3d":
            slots, rows, cols = config.slot_shape
            grid = (config.prefix_len, rows, cols)
        self.rotary_emb = (RotaryEmbedding(config.head_dim, config.total_len, config.rope_theta, grid, slots)
                           if config.rope_kind != "none" else None)
        self.core = core_cls(config)
        self.lm_head = CastedLinear(dim, config.vocab_size)
        self.q_head = CastedLinear(dim, 2, bias=True)
        with torch.no_grad():  # Q head starts at "don't halt" (sigmoid(-5) ~ 0.007) for both logits
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)
        # Initial states: buffers, never trained (README 4.1); kept float32, cast at use.
        self.register_buffer("H_init", trunc_normal_(torch.empty(dim), std=1.0), persistent=True)
        self.register_buffer("L_init", trunc_normal_(torch.empty(dim), std=1.0), persistent=True)

    @property
    def puzzle_emb(self) -> SparsePuzzleEmbedding | None:
        return self.embedding.puzzle_emb

    # --- carry ------------------------------------------------------------------------------
    def initial_carry(self, batch: Batch) -> Carry:
        """All rows marked halted, so the first call loads the batch and resets the states."""
        inputs = batch["inputs"]
        if self.puzzle_emb is not None and torch.is_grad_enabled():  # not under inference_mode
            self.puzzle_emb.prepare(inputs.shape[0])
        shape = (inputs.shape[0], self.config.total_len, self.config.hidden_size)
        z = torch.zeros(shape, dtype=self.config.dtype, device=inputs.device)
        return Carry(z_H=z, z_L=z.clone(),
                     steps=torch.zeros(inputs.shape[0], dtype=torch.int32, device=inputs.device),
                     halted=torch.ones(inputs.shape[0], dtype=torch.bool, device=inputs.device),
                     current_data={k: torch.zeros_like(v) for k, v in batch.items()})

    def reset(self, carry: Carry, batch: Batch) -> Carry:
        """Restart halted rows: initial states, steps 0, the incoming batch row as their data."""
        h = carry.halted
        dtype = self.config.dtype
        return Carry(
            z_H=torch.where(h[:, None, None], self.H_init.to(dtype), carry.z_H),
            z_L=torch.where(h[:, None, None], self.L_init.to(dtype), carry.z_L),
            steps=torch.where(h, 0, carry.steps),
            halted=h,
            current_data={k: torch.where(h.view(-1, *([1] * (v.ndim - 1))), batch[k], v)
                          for k, v in carry.current_data.items()})

    # --- one step of thinking -----------------------------------------------------------------
    def embed(self, data: Batch) -> torch.Tensor:
        return self.embedding(data["inputs"], data["puzzle_identifiers"])

    def think(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, inputs: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The core's recursion -> (z_H, z_L)."""
        return self.think_aux(z_H, z_L, x, inputs)[:2]

    def think_aux(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, inputs: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`think`, plus the core's aux dict: extra losses (keys ending in "loss", batch sums, added to
        the loss) and statistics ("mean_*": batch sums of per-row values, logged as means). Cores
        without any return just (z_H, z_L). Cores that route on the puzzle's givens
        (`needs_inputs`) also get the input tokens."""
        cos_sin = self.rotary_emb() if self.rotary_emb is not None else None
        out = (self.core(z_H, z_L, x, cos_sin, inputs=inputs) if getattr(self.core, "needs_inputs", False)
               else self.core(z_H, z_L, x, cos_sin))
        return out if len(out) == 3 else (out[0], out[1], {})

    def heads(self, z_H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """logits (B, S, V) in forward dtype, q_halt (B,) and q_continue (B,) in float32."""
        logits = self.lm_head(z_H)[:, self.config.prefix_len:]
        q = self.q_head(z_H[:, 0]).float()
        return logits, q[:, 0], q[:, 1]

    def step(self, carry: Carry, batch: Batch, adaptive: bool | None = None,
             noise: torch.Tensor | None = None) -> tuple[Carry, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One supervision step: reset halted rows, recurse, decide halting. No loss.

        `noise` (inference only, off by default): a (B, P+S, D) tensor added to the latent z_L
        before this step's recursion, so one puzzle can follow several trajectories
        (train/trajectories.py); with None the step is exactly the noiseless one."""
        return self.step_aux(carry, batch, adaptive, noise)[:4]

    def step_aux(self, carry: Carry, batch: Batch, adaptive: bool | None = None,
                 noise: torch.Tensor | None = None,
                 ) -> tuple[Carry, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`step`, plus the core's aux losses and statistics (see `think_aux`)."""
        cfg = self.config
        carry = self.reset(carry, batch)
        data = carry.current_data
        z_L = carry.z_L if noise is None else carry.z_L + noise.to(carry.z_L.dtype)
        z_H, z_L, aux = self.think_aux(carry.z_H, z_L, self.embed(data), data["inputs"])
        logits, q_halt, q_continue = self.heads(z_H)
        with torch.no_grad():
            steps = carry.steps + 1
            halted = steps >= cfg.halt_max_steps
            use_rule = self.training or bool(adaptive)
            if use_rule and cfg.halt_max_steps > 1:
                halted = halted | self.wants_halt(q_halt, q_continue)
                if self.training:
                    # Exploration; both draws happen every training step (reference RNG order).
                    explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
                    min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
                    halted = halted & (steps >= min_steps)
        new = Carry(z_H=z_H.detach(), z_L=z_L.detach(), steps=steps, halted=halted,
                    current_data=carry.current_data)
        return new, logits, q_halt, q_continue, aux

    def wants_halt(self, q_halt: torch.Tensor, q_continue: torch.Tensor,
                   threshold: float | None = None) -> torch.Tensor:
        """The halting head's decision: the model's rule, or, given a `threshold` (inference
        only), sigmoid(q_halt) >= threshold."""
        if threshold:
            return torch.sigmoid(q_halt) >= threshold
        if self.config.halt_rule == "q_halt":
            return q_halt > 0
        return q_halt > q_continue

    @torch.no_grad()
    def continue_target(self, carry: Carry) -> torch.Tensor:
        """Bootstrapped Q-continue target: sigmoid of the next step's best Q (q_halt at the last step)."""
        data = carry.current_data
        z_H, _ = self.think(carry.z_H, carry.z_L, self.embed(data), data["inputs"])
        _, next_halt, next_continue = self.heads(z_H)
        is_last = carry.steps >= self.config.halt_max_steps
        return torch.sigmoid(torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))

    # --- step + loss ------------------------------------------------------------------------
    def forward(self, carry: Carry, batch: Batch, adaptive: bool | None = None,
                ) -> tuple[Carry, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
        """Returns (carry, loss, metrics, outputs, all_finish); loss is the unscaled batch sum."""
        cfg = self.config
        carry, logits, q_halt, q_continue, aux = self.step_aux(carry, batch, adaptive)
        target = None
        if self.training and cfg.halt_rule == "q_halt_vs_continue" and cfg.halt_max_steps > 1:
            target = self.continue_target(carry)
        loss, metrics, preds = act_loss(logits, carry.current_data["labels"], q_halt, q_continue, target,
                                        carry.halted, carry.steps, cfg.loss)
        for name, value in aux.items():  # the core's losses join the loss; everything is logged
            if name.endswith("loss"):
                loss = loss + value
            metrics[name] = value.detach()
        outputs = {"logits": logits.detach(), "q_halt_logits": q_halt.detach(),
                   "q_continue_logits": q_continue.detach(), "preds": preds}
        if target is not None:
            outputs["target_q_continue"] = target
        return carry, loss, metrics, outputs, carry.halted.all()
