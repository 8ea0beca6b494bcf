"""Training-step benchmark: seconds per full optimiser step, against this machine's matmul peak.

    python -m bench.train_step --config A                       # fp32, eager
    python -m bench.train_step --config A --dtype bf16 --compile 1 --steps 10
    python -m bench.train_step --all                            # A-D x {fp32, bf16} x {eager, compiled}
    python -m bench.train_step --config A --json                # one JSON object per measurement
    python -m bench.train_step --config Q --batch 64 --arch H_cycles=2   # a variant of a config

A step is exactly the trainer's (`train.step.TrainStep`): one supervision step forward with the
carry kept across steps, scaled backward, sparse sign-SGD + AdamATan2, zero-grad. Batches are
random Sudoku-like grids (tokens 1..10 over 81 cells, 8 puzzle identifiers); no dataset needed.

FLOPs per step are analytical: the matmul FLOPs (2 * m * n * k) of every net call of one
supervision step, attention scores and values included, heads included, counted x3 for the calls
that are differentiated (forward + 2x backward) and x1 for the no-grad ones (and for HRM's
no-grad bootstrap pass). Elementwise work, norms and the optimisers are not counted.
Utilisation = achieved FLOP/s / the peak of a large `torch.matmul` of the same dtype, timed in
the same process just before (so machine load affects both alike; see `uptime` in the output).

Configs (batch 64, 81 cells + a 16-position prefix holding a puzzle vector of hidden size, vocab 11):
    A  TRM attention + RoPE, hidden 128, 4 heads, L_layers 2, H_cycles 3, L_cycles 6
    B  as A with the token MLP (trm-mlp), no positions
    C  HRM, hidden 128, H_layers 2, L_layers 2, H_cycles 2, L_cycles 2, prefix 1
    D  TRM at paper size: hidden 512, 8 heads, batch 32
    Q, QT, QH  the CPU quick preset's shapes: 6x6 Sudoku (36 cells, vocab 8), batch 128, hidden 128, no
       prefix, halt_max_steps 8; Q trm-mlp H3 L4, QT trm (attention + RoPE) H3 L4, QH hrm as C
    QU, QR, QM  the recursion variants at QT's shapes: ut (T_max 8), rrt (rank 8), mor (expert, 1/3);
       their GFLOP are effective (cells updated, from the steps' mean_* statistics; docs/variants.md)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from models import MODELS, ModelConfig
from models.layers import swiglu_width
from models.recursion import num_differentiated_calls
from puzzles.errors import UserError, run_cli
from train.setup import cpu_description

MODES = {"fp32-eager": ("fp32", False), "fp32-compiled": ("fp32", True), "bf16-eager": ("bf16", False),
         "bf16-compiled": ("bf16", True)}


@dataclass(frozen=True)
class BenchConfig:
    model: str
    batch: int
    arch: dict
    seq_len: int = 81
    vocab_size: int = 11


def _arch(**kw) -> dict:
    base = dict(hidden_size=128, num_heads=4, expansion=4.0, halt_max_steps=16, halt_exploration_prob=0.1,
                num_puzzle_identifiers=8)
    base.update(kw)
    base.setdefault("puzzle_emb_ndim", base["hidden_size"])
    return base


CONFIGS = {
    "A": BenchConfig("trm", 64, _arch(L_layers=2, H_cycles=3, L_cycles=6, pos_encodings="rope", puzzle_emb_len=16)),
    "B": BenchConfig("trm-mlp", 64, _arch(L_layers=2, H_cycles=3, L_cycles=6, pos_encodings="none",
                                          puzzle_emb_len=16)),
    "C": BenchConfig("hrm", 64, _arch(H_layers=2, L_layers=2, H_cycles=2, L_cycles=2, pos_encodings="rope")),
    "D": BenchConfig("trm", 32, _arch(hidden_size=512, num_heads=8, L_layers=2, H_cycles=3, L_cycles=6,
                                      pos_encodings="rope", puzzle_emb_len=16)),
    # The CPU `quick` preset's shapes (train/config.py): 6x6 Sudoku (36 cells, vocab 8), batch 128,
    # no puzzle embedding, halt_max_steps 8.
    "Q": BenchConfig("trm-mlp", 128, _arch(L_layers=2, H_cycles=3, L_cycles=4, pos_encodings="none",
                                           puzzle_emb_ndim=0, halt_max_steps=8), seq_len=36, vocab_size=8),
    "QT": BenchConfig("trm", 128, _arch(L_layers=2, H_cycles=3, L_cycles=4, pos_encodings="rope",
                                        puzzle_emb_ndim=0, halt_max_steps=8), seq_len=36, vocab_size=8),
    "QH": BenchConfig("hrm", 128, _arch(H_layers=2, L_layers=2, H_cycles=2, L_cycles=2, pos_encodings="rope",
                                        puzzle_emb_ndim=0, halt_max_steps=8), seq_len=36, vocab_size=8),
    # The recursion variants at the QT shapes (docs/variants.md): ut with T_max 8 (QT's FLOPs),
    # rrt rank 8, mor expert choice with capacities 1, 2/3, 1/3.
    "QU": BenchConfig("ut", 128, _arch(L_layers=2, ut_max_steps=8, pos_encodings="rope", puzzle_emb_ndim=0,
                                       halt_max_steps=8), seq_len=36, vocab_size=8),
    "QR": BenchConfig("rrt", 128, _arch(L_layers=2, H_cycles=3, L_cycles=4, pos_encodings="rope",
                                        puzzle_emb_ndim=0, halt_max_steps=8), seq_len=36, vocab_size=8),
    "QM": BenchConfig("mor", 128, _arch(L_layers=2, H_cycles=3, L_cycles=4, pos_encodings="rope",
                                        puzzle_emb_ndim=0, halt_max_steps=8), seq_len=36, vocab_size=8),
}


def model_config(bench: BenchConfig, dtype: str) -> ModelConfig:
    return ModelConfig(seq_len=bench.seq_len, vocab_size=bench.vocab_size,
                       forward_dtype="bfloat16" if dtype == "bf16" else "float32", **bench.arch)


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


# --- timing -------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device = torch.device("cpu"), n: int = 0, reps: int = 6) -> float:
    """Best FLOP/s of an n x n x n torch.matmul of `dtype` on `device`, now (n: 2048 CPU, 8192 GPU)."""
    n = n or (2048 if device.type == "cpu" else 8192)
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def random_batches(bench: BenchConfig, count: int, seed: int = 0,
                   device: torch.device = torch.device("cpu")) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    high = bench.vocab_size  # tokens 1..vocab-1 (Sudoku: blank 1, digits 2..10)
    out = []
    for _ in range(count):
        inputs = torch.randint(1, high, (bench.batch, bench.seq_len), generator=g, dtype=torch.int32)
        labels = torch.randint(2, high, (bench.batch, bench.seq_len), generator=g, dtype=torch.int64)
        ids = torch.randint(1, bench.arch["num_puzzle_identifiers"], (bench.batch,), generator=g, dtype=torch.int32)
        out.append({k: v.to(device) for k, v in
                    {"inputs": inputs, "labels": labels, "puzzle_identifiers": ids}.items()})
    return out


def measure(name: str, dtype: str = "fp32", compile: bool = False, steps: int = 5, warmup: int = 2,
            seed: int = 0, device: str = "cpu", batch: int = 0, arch: dict | None = None) -> dict:
    """Time `steps` trainer steps of config `name` after `warmup` steps; returns the figures."""
    from train.config import OptimConfig  # trainer imports stay out of the module import path
    from train.step import TrainStep

    bench = CONFIGS[name]
    if batch:
        bench = dataclasses.replace(bench, batch=batch)
    if arch:
        bench = dataclasses.replace(bench, arch=bench.arch | arch)
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = MODELS[bench.model](model_config(bench, dtype)).to(dev)
    cfg = model.config
    trainer = TrainStep(model, OptimConfig(global_batch_size=bench.batch, lr_warmup_steps=10),
                        total_steps=10_000, compile=compile)
    batches = random_batches(bench, 4, seed, dev)
    carry = model.initial_carry(batches[0])
    from torch._dynamo.utils import counters
    if compile:  # a fresh cache per model: the shared forward code object must not hit the recompile limit
        torch._dynamo.reset()
        counters.clear()
    t0 = time.perf_counter()
    graphs_after_first = 0
    for i in range(warmup):
        carry = trainer(carry, batches[i % len(batches)], i + 1).carry
        if i == 0:
            graphs_after_first = counters["stats"]["unique_graphs"]
    _sync(dev)
    warm_s = time.perf_counter() - t0
    times, sums = [], {}
    for i in range(steps):
        t = time.perf_counter()
        result = trainer(carry, batches[i % len(batches)], warmup + i + 1)
        _sync(dev)
        times.append(time.perf_counter() - t)
        carry = result.carry
        for k, v in result.metrics.items():  # the variants' per-row statistics (mean_*)
            if k.startswith("mean_"):
                sums[k] = sums.get(k, 0.0) + float(v)
    compile_stats = {}
    if compile:  # evidence: one graph, no graph breaks, nothing compiled after the first step
        compile_stats = {"graph_breaks": sum(counters["graph_break"].values()),
                         "unique_graphs": counters["stats"]["unique_graphs"],
                         "recompiles": counters["stats"]["unique_graphs"] - graphs_after_first}
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    peak = matmul_peak(torch_dtype, dev)
    flops = step_flops(bench.model, cfg, bench.batch, measured_stats(sums, bench.batch * steps))
    median = statistics.median(times)
    return {"config": name, "device": str(dev), "model": bench.model, "dtype": dtype, "compile": compile, "batch": bench.batch,
            "steps": steps, "warmup_s": round(warm_s, 2), "median_s": median, "min_s": min(times),
            "tokens_per_s": bench.batch * bench.seq_len / median, "gflop_per_step": flops / 1e9,
            "tflops": flops / median / 1e12, "peak_tflops": peak / 1e12,
            "utilisation": flops / median / peak, "load": os.getloadavg()[0],
            "threads": torch.get_num_threads(), **compile_stats}


def measured_stats(sums: dict[str, float], rows: int) -> dict:
    """`step_flops` stats from the summed mean_* metrics of `rows` rows: UT steps, MoR kept shares."""
    stats = {}
    if "mean_ut_steps" in sums:
        stats["ut_steps"] = sums["mean_ut_steps"] / rows
    active = sorted((int(k[len("mean_active_r"):]), v / rows) for k, v in sums.items() if k.startswith("mean_active_r"))
    if active:
        stats["active"] = [v for _, v in active]
    return stats


def format_row(r: dict) -> str:
    mode = f"{r['dtype']}-{'compiled' if r['compile'] else 'eager'}"
    return (f"{r['config']:>2} {mode:<14} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['tokens_per_s']:9.0f} "
            f"{r['gflop_per_step']:8.1f} {r['tflops']:7.3f} {r['peak_tflops']:7.3f} {100 * r['utilisation']:6.1f}% "
            f"{r['warmup_s']:7.1f} {r['load']:5.2f}"
            + (f"  graphs {r['unique_graphs']} breaks {r['graph_breaks']} recompiles {r['recompiles']}"
               if r["compile"] else ""))


HEADER = (f"{'':>2} {'mode':<14} {'median_s':>8} {'min_s':>8} {'tokens/s':>9} {'GFLOP':>8} {'TFLOP/s':>7} "
          f"{'peak':>7} {'util':>7} {'warm_s':>7} {'load':>5}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=list(CONFIGS), default="A")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--compile", type=int, choices=(0, 1), default=0)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=0, help="warm-up steps (default 2 eager, 3 compiled)")
    p.add_argument("--all", action="store_true", help="table of configs x {fp32, bf16} x {eager, compiled}, "
                                                      "fastest mode per config marked")
    p.add_argument("--configs", default="A,B,C,D", help="with --all: which configs, comma-separated (e.g. Q,QT,QH)")
    p.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument("--batch", type=int, default=0, help="override the config's batch size (0 = keep)")
    p.add_argument("--arch", action="append", default=[], metavar="KEY=VALUE",
                   help="change an architecture field of the config, e.g. --arch H_cycles=2 "
                        "--arch pos_encodings=rope2d+learned2d (repeatable)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0 = torch's default). On a loaded machine 1 thread avoids "
                        "OpenMP barrier stalls that can cost 10x; say so when you quote figures")
    args = p.parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: this PyTorch sees no CUDA device")
    arch = {}
    for item in args.arch:
        key, _, value = item.partition("=")
        types = {f.name: str(f.type) for f in dataclasses.fields(ModelConfig)}
        if key not in types or not value or (types[key] == "int" and not value.isdigit()):
            raise UserError(f"--arch {item!r}: expected KEY=VALUE with KEY a ModelConfig field and an "
                            f"integer for integer fields (e.g. H_cycles=2)")
        arch[key] = int(value) if types[key] == "int" else value
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not args.all and args.configs != p.get_default("configs"):  # it would silently measure --config
        raise UserError("--configs needs --all; for one measurement use --config NAME")
    runs = ([(c, *m) for c in names for m in MODES.values()] if args.all
            else [(args.config, args.dtype, bool(args.compile))])
    for c, _, _ in runs:
        if c not in CONFIGS:
            raise UserError(f"--configs: unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = cpu_description()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}", flush=True)
    print(f"cpu: {cpu}", flush=True)
    if not args.json:
        print(HEADER, flush=True)
    results = []
    for c, dtype, comp in runs:
        warmup = args.warmup or (3 if comp else 2)
        r = measure(c, dtype, comp, args.steps, warmup, device=args.device, batch=args.batch,
                    arch=arch) | {"cpu": cpu}
        results.append(r)
        print(json.dumps(r) if args.json else format_row(r), flush=True)
    if args.all and not args.json:
        for c, best in fastest(results).items():
            mode = f"{best['dtype']}-{'compiled' if best['compile'] else 'eager'}"
            print(f"fastest for {c}: {mode} ({best['median_s']:.3f} s per step)", flush=True)
    return 0


def fastest(results: list[dict]) -> dict[str, dict]:
    """Config name -> its measurement with the lowest median seconds per step."""
    best: dict[str, dict] = {}
    for r in results:
        if r["config"] not in best or r["median_s"] < best[r["config"]]["median_s"]:
            best[r["config"]] = r
    return best


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
