"""Analytical FLOPs of one training step (bench/train_step.py): the matmul FLOPs (2 * m * n * k) of
every net call of one supervision step, attention scores and values and the heads included, x3 for
the differentiated calls (forward + 2x backward) and x1 for the no-grad ones (and for HRM's no-grad
bootstrap pass). Elementwise work, norms and the optimisers are not counted.
"""
from __future__ import annotations

from models import ModelConfig
from models.layers import swiglu_width
from models.recursion import num_differentiated_calls


# --- analytical FLOPs ---------------------------------------------------------------------------
def block_flops(cfg: ModelConfig, batch: int, cells: float, keys: float | None = None) -> float:
    """Matmul FLOPs of one block for `cells` query cells per row attending to `keys` cells per row
    (default: the same cells). A routed (MoR) or halted (UT) cell that is not computed costs nothing."""
    T, D = cfg.total_len, cfg.hidden_size
    keys = cells if keys is None else keys
    flops = 6 * batch * cells * D * swiglu_width(D, cfg.expansion)  # gate_up (2W) + down (W)
    if cfg.mlp_t:  # the same SwiGLU over positions, for every (row, channel)
        flops += 6 * batch * D * T * swiglu_width(T, cfg.expansion)
    else:  # q + o projections for the queries, k + v for the keys, then QK^T and PV
        flops += 2 * batch * cells * D * 2 * D + 2 * batch * keys * D * 2 * D + 4 * batch * cells * keys * D
    return flops


def net_call_flops(cfg: ModelConfig, batch: int, layers: int) -> int:
    """Matmul FLOPs of one forward call of a ReasoningModule with `layers` blocks."""
    return int(layers * block_flops(cfg, batch, cfg.total_len))


def lora_call_flops(cfg: ModelConfig, layers: int) -> int:
    """RRT: forming W + s B A for every linear map of `layers` blocks (2 r in out each, per call)."""
    D, W = cfg.hidden_size, swiglu_width(cfg.hidden_size, cfg.expansion)
    shapes = [(3 * D, D), (D, D), (2 * W, D), (D, W)]
    if cfg.mlp_t:
        Wt = swiglu_width(cfg.total_len, cfg.expansion)
        shapes = [(2 * Wt, cfg.total_len), (cfg.total_len, Wt), (2 * W, D), (D, W)]
    return layers * sum(2 * cfg.rrt_rank * o * i for o, i in shapes)


def step_flops(model_name: str, cfg: ModelConfig, batch: int, stats: dict | None = None) -> int:
    """Analytical matmul FLOPs of one training step (see the module docstring). For `ut` and `mor`
    they are *effective* FLOPs: only the cells that are updated count, from `stats` (`ut_steps`:
    mean steps per cell; `active`: the share of cells kept per recursion) measured in training, or
    the config's worst case (UT: T_max) / capacities (MoR) when not given."""
    stats = stats or {}
    heads = 2 * batch * cfg.total_len * cfg.hidden_size * cfg.vocab_size + 2 * batch * cfg.hidden_size * 2
    if model_name == "ut":  # grad 'full': every application differentiated
        T, D = cfg.total_len, cfg.hidden_size
        steps = stats.get("ut_steps", cfg.ut_max_steps)
        per_step = cfg.L_layers * block_flops(cfg, batch, T) + 2 * batch * T * D  # + halting unit
        return int(3 * (steps * per_step + heads))
    if model_name == "mor":
        return int(_mor_flops(cfg, batch, stats.get("active")) + 3 * heads)
    L_call = net_call_flops(cfg, batch, cfg.L_layers)
    H_call = net_call_flops(cfg, batch, cfg.H_layers if model_name == "hrm" else cfg.L_layers)
    if model_name == "rrt":
        L_call += lora_call_flops(cfg, cfg.L_layers)
        H_call += lora_call_flops(cfg, cfg.L_layers)
    # Calls in schedule order: (L x L_cycles, H) x H_cycles; the last n are differentiated.
    calls = [L_call] * cfg.L_cycles + [H_call]
    calls = calls * cfg.H_cycles
    n_grad = num_differentiated_calls(cfg.grad_mode, cfg.H_cycles, cfg.L_cycles)
    forward = sum(calls) + heads
    flops = sum(calls[:-n_grad]) + 3 * (sum(calls[-n_grad:]) + heads)
    if cfg.halt_rule == "q_halt_vs_continue" and cfg.halt_max_steps > 1:
        flops += forward  # the no-grad bootstrap step for the Q-continue target
    return flops


def _mor_flops(cfg: ModelConfig, batch: int, active: list[float] | None) -> float:
    """MoR's recursions (H-cycles): the TRM cycle on the kept cells, x3 where differentiated."""
    from models.mor import capacities

    T = cfg.total_len
    shares = active or capacities(cfg)
    n_grad = num_differentiated_calls(cfg.grad_mode, cfg.H_cycles, cfg.L_cycles)
    first_grad = cfg.H_cycles * (cfg.L_cycles + 1) - n_grad
    flops, call = 0.0, 0
    for share in shares:
        cells = share * T
        keys = T if cfg.mor_attend == "all" else cells
        per_call = cfg.L_layers * block_flops(cfg, batch, cells, keys)
        flops += 2 * batch * T * cfg.hidden_size * cfg.H_cycles  # the router
        for _ in range(cfg.L_cycles + 1):
            flops += per_call * (3 if call >= first_grad else 1)
            call += 1
    return flops


def measured_stats(sums: dict[str, float], rows: int) -> dict:
    """`step_flops` stats from the summed mean_* metrics of `rows` rows: UT steps, MoR kept shares."""
    stats = {}
    if "mean_ut_steps" in sums:
        stats["ut_steps"] = sums["mean_ut_steps"] / rows
    active = sorted((int(k[len("mean_active_r"):]), v / rows) for k, v in sums.items() if k.startswith("mean_active_r"))
    if active:
        stats["active"] = [v for _, v in active]
    return stats
