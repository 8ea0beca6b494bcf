"""Training-step benchmark: seconds per full optimiser step, against this machine's matmul peak.

    python -m bench.train_step --config A                       # fp32, eager
    python -m bench.train_step --config A --dtype bf16 --compile 1 --steps 10
    python -m bench.train_step --all                            # A-D x {fp32, bf16} x {eager, compiled}
    python -m bench.train_step --config A --json                # one JSON object per measurement
    python -m bench.train_step --config Q --batch 64 --arch H_cycles=2   # a variant of a config
    python -m bench.train_step --config Q --batch 32 --arch hidden_size=64 --arch H_cycles=2 --dtype bf16 \
        --compile 1 --threads 2 --steps 60 --ref-dir /path/to/TinyRecursiveModels   # ours vs the reference's

A step is exactly the trainer's (`train.step.TrainStep`): one supervision step forward with the
carry kept across steps, scaled backward, the non-finite guard, AdamATan2 + sparse sign-SGD, EMA,
zero-grad. Beside it, alternating step by step so machine load hits both alike, the bare model
step (the same forward and backward, nothing else): `overhead` is the share of the trainer's step
spent around the model. Batches are random Sudoku-like grids (tokens 1..10 over 81 cells, 8
puzzle identifiers); no dataset needed.

With `--ref-dir`, a TinyRecursiveModels checkout (pydantic installed), the reference's own training
step (its `train_batch`: bench/reference_step.py) runs as a third contender in the same alternating
loop: built first, seeded, its initial weights loaded into ours, then the same batches, dtype,
optimiser settings, warm-up and compilation (iff ours compiles). `ref_s` is its median seconds per
step and `x_ref` = ref_s / median_s (above 1: ours is faster). `loss1` and `ref_loss1` (--json) are
the first step's losses per example: same weights, same batch, so they agree to float rounding; a
gap means the two did not run the same model (e.g. an --arch field the reference does not have).
The reference has the models trm, trm-mlp and hrm (configs A-D, Q, QT, QH); with --all every row
gets it.

FLOPs per step are analytical: the matmul FLOPs (2 * m * n * k) of every net call of one
supervision step, attention scores and values included, heads included, counted x3 for the calls
that are differentiated (forward + 2x backward) and x1 for the no-grad ones (and for HRM's
no-grad bootstrap pass). Elementwise work, norms and the optimisers are not counted.
Utilisation = achieved FLOP/s / the peak of a large `torch.matmul` of the same dtype, timed in
the same process just before (so machine load affects both alike; see `uptime` in the output).

Configs: bench/step_shapes.py (A-D, Q, QT, QH, QU, QR, QM).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from typing import Sequence

import torch

from models import ArchConfig, build_model, load_reference_state_dict
from puzzles.errors import UserError, run_cli
from train.allocator import MODES as MALLOC_MODES, tune_malloc
from train.setup import cpu_description

from .flops import measured_stats, step_flops
from .step_shapes import CONFIGS, matmul_peak, random_batches, sync_device

MODES = {"fp32-eager": ("fp32", False), "fp32-compiled": ("fp32", True), "bf16-eager": ("bf16", False),
         "bf16-compiled": ("bf16", True)}


def _load_reference(ref_dir: str, model: str):
    """The checkout's classes for `model` (call inside `checkout_modules`); a one-line UserError when
    the folder is not a checkout, has no counterpart of `model`, or its imports fail (pydantic)."""
    from .reference_step import load_reference

    try:
        return load_reference(ref_dir, model)
    except ImportError as err:
        raise UserError(f"--ref-dir {ref_dir}: importing the reference failed: {err} "
                        f"(it needs pydantic among others: see its requirements.txt)") from err


def _compiled() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far in this process, from dynamo's counters."""
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def measure(name: str, dtype: str = "fp32", compile: bool = False, steps: int = 5, warmup: int = 2,
            seed: int = 0, device: str = "cpu", batch: int = 0, arch: dict | None = None,
            sync_free: bool = False, ref_dir: str = "") -> dict:
    """Time `steps` trainer steps of config `name` after `warmup` steps; returns the figures.
    `ref_dir`: a TinyRecursiveModels checkout whose own step is timed beside ours (module docstring)."""
    from train.config import OptimConfig  # trainer imports stay out of the module import path
    from train.step import TrainStep

    from .reference_step import ReferenceStep, checkout_modules

    bench = CONFIGS[name]
    if batch:
        bench = dataclasses.replace(bench, batch=batch)
    if arch:
        bench = dataclasses.replace(bench, arch=bench.arch | arch)
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(bench.model, ArchConfig(**bench.arch), bench.shape,
                        "bfloat16" if dtype == "bf16" else "float32").to(dev)
    cfg = model.config
    opt = OptimConfig(global_batch_size=bench.batch, lr_warmup_steps=10, ema=True, ema_rate=0.99)  # quick preset
    ref = None
    if ref_dir:  # the reference's initial weights (its build, seeded) become ours: both start alike
        with checkout_modules(ref_dir):
            ref = ReferenceStep(_load_reference(ref_dir, bench.model), cfg, opt, 10_000, dev, compile=compile,
                                seed=seed)
        try:
            load_reference_state_dict(model, ref.state_dict())
        except ValueError as err:  # e.g. an --arch field (ffn_conv, attn_bias) the reference lacks
            raise UserError(f"--ref-dir: the reference cannot build this architecture ({err})") from err
    trainer = TrainStep(model, opt, total_steps=10_000, compile=compile, sync_free=sync_free)
    batches = random_batches(bench, 4, seed, dev)
    carry = model.initial_carry(batches[0])
    from torch._dynamo.utils import counters
    if compile:  # a fresh cache per model: the shared forward code object must not hit the recompile limit
        torch._dynamo.reset()
        counters.clear()
    ref_times, ref_losses, ref_graphs = [], [], []  # per reference call: seconds, loss, (graphs, breaks) added

    def ref_step(i: int) -> float:
        """Step i (0-based) of the reference in its module context; only the step itself is timed."""
        before = _compiled()
        with checkout_modules(ref_dir):
            t = time.perf_counter()
            ref_losses.append(ref(batches[i % len(batches)], i + 1))
            sync_device(dev)
            seconds = time.perf_counter() - t
        ref_graphs.append(tuple(a - b for a, b in zip(_compiled(), before)))
        return seconds

    t0 = time.perf_counter()
    graphs_after_first, first_loss = 0, None  # first_loss: step 1's loss, read to the host at the end
    for i in range(warmup):
        result = trainer(carry, batches[i % len(batches)], i + 1)
        carry = result.carry
        if i == 0:
            graphs_after_first, first_loss = counters["stats"]["unique_graphs"], result.loss.detach()
    sync_device(dev)
    warm_s = time.perf_counter() - t0
    ref_warm_s = sum(ref_step(i) for i in range(warmup)) if ref else 0.0
    times, bare, sums, bare_carry = [], [], {}, carry
    for i in range(steps):
        t = time.perf_counter()
        result = trainer(carry, batches[i % len(batches)], warmup + i + 1)
        sync_device(dev)
        times.append(time.perf_counter() - t)
        carry = result.carry
        if first_loss is None:
            first_loss = result.loss.detach()
        t = time.perf_counter()  # the bare model step: forward + backward only
        bare_carry, loss, *_ = trainer.forward(bare_carry, batches[(i + 1) % len(batches)])
        (loss / bench.batch).backward()
        sync_device(dev)
        bare.append(time.perf_counter() - t)
        model.zero_grad(set_to_none=True)
        if ref:
            ref_times.append(ref_step(warmup + i))
        for k, v in result.metrics.items():  # the variants' per-row statistics (mean_*)
            if k.startswith("mean_"):
                sums[k] = sums.get(k, 0.0) + float(v)
    compile_stats, ref_stats = {}, {}
    if ref:  # the reference beside ours: its figures, and the first step's loss of both (same math?)
        ref_stats = {"ref_s": statistics.median(ref_times), "ref_warmup_s": round(ref_warm_s, 2),
                     "speedup_vs_ref": statistics.median(ref_times) / statistics.median(times),
                     "loss1": float(first_loss) / bench.batch, "ref_loss1": float(ref_losses[0]) / bench.batch, "ref_note": ref.note}
    if compile:  # evidence: one graph, no graph breaks, nothing compiled after the first step
        graphs, breaks = _compiled()
        ref_new, ref_breaks = (sum(g for g, _ in ref_graphs), sum(b for _, b in ref_graphs))
        compile_stats = {"graph_breaks": breaks - ref_breaks, "unique_graphs": graphs - ref_new,
                         "recompiles": graphs - ref_new - graphs_after_first}
        if ref:  # the reference's own, counted around its calls
            ref_stats |= {"ref_graph_breaks": ref_breaks, "ref_unique_graphs": ref_new,
                          "ref_recompiles": ref_new - ref_graphs[0][0]}
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    peak = matmul_peak(torch_dtype, dev)
    flops = step_flops(bench.model, cfg, bench.batch, measured_stats(sums, bench.batch * steps))
    median = statistics.median(times)
    return {"config": name, "device": str(dev), "model": bench.model, "dtype": dtype, "compile": compile, "batch": bench.batch,
            "steps": steps, "warmup_s": round(warm_s, 2), "median_s": median, "min_s": min(times),
            "bare_s": statistics.median(bare), "overhead": 1.0 - statistics.median(bare) / median,
            "tokens_per_s": bench.batch * bench.seq_len / median, "gflop_per_step": flops / 1e9,
            "tflops": flops / median / 1e12, "peak_tflops": peak / 1e12,
            "utilisation": flops / median / peak, "load": os.getloadavg()[0],
            "threads": torch.get_num_threads(), "sync_free": sync_free, **compile_stats, **ref_stats}


def format_row(r: dict, ref: bool = False) -> str:
    """One table row; `ref`: with the reference's columns (ref_s, x_ref), "-" where it did not run."""
    mode = f"{r['dtype']}-{'compiled' if r['compile'] else 'eager'}"
    ref_cells = ""
    if ref:
        ref_cells = (f" {r['ref_s']:8.3f} {r['speedup_vs_ref']:5.2f}x" if "ref_s" in r else f" {'-':>8} {'-':>6}")
    notes = []
    if r["compile"]:
        notes.append(f"graphs {r['unique_graphs']} breaks {r['graph_breaks']} recompiles {r['recompiles']}")
        if "ref_unique_graphs" in r:
            notes.append(f"ref graphs {r['ref_unique_graphs']} breaks {r['ref_graph_breaks']} "
                         f"recompiles {r['ref_recompiles']}")
    if "ref_s" in r:
        notes.append(f"loss1 {r['loss1']:.5f} ref {r['ref_loss1']:.5f}" + (r["ref_note"] and f"; {r['ref_note']}"))
    return (f"{r['config']:>2} {mode:<14} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['bare_s']:8.3f} "
            f"{100 * r['overhead']:7.1f}% {r['tokens_per_s']:9.0f} "
            f"{r['gflop_per_step']:8.1f} {r['tflops']:7.3f} {r['peak_tflops']:7.3f} {100 * r['utilisation']:6.1f}% "
            f"{r['warmup_s']:7.1f} {r['load']:5.2f}" + ref_cells + "".join(f"  {n}" for n in notes))


HEADER = (f"{'':>2} {'mode':<14} {'median_s':>8} {'min_s':>8} {'bare_s':>8} {'overhead':>8} {'tokens/s':>9} "
          f"{'GFLOP':>8} {'TFLOP/s':>7} "
          f"{'peak':>7} {'util':>7} {'warm_s':>7} {'load':>5}")
REF_HEADER = f" {'ref_s':>8} {'x_ref':>6}"  # after HEADER with --ref-dir


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
    p.add_argument("--sync-free", action="store_true", help="the trainer's sync-free step (system.sync_free)")
    p.add_argument("--malloc", choices=MALLOC_MODES, default="auto",
                   help="as the trainer's system.malloc: auto (its default) or default (glibc's own)")
    p.add_argument("--ref-dir", default="", metavar="DIR",
                   help="a TinyRecursiveModels checkout (needs pydantic): its own training step is timed beside "
                        "ours from the same weights, batches, dtype, optimiser and compilation; adds the columns "
                        "ref_s and x_ref (= ref_s / median_s), e.g. --ref-dir /path/to/TinyRecursiveModels. Configs of "
                        "trm, trm-mlp, hrm (A-D, Q, QT, QH; others are refused); with --all, beside every row")
    args = p.parse_args(argv)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: this PyTorch sees no CUDA device")
    arch = {}
    for item in args.arch:
        key, _, value = item.partition("=")
        types = {f.name: str(f.type) for f in dataclasses.fields(ArchConfig)}
        if key not in types or not value or (types[key] == "int" and not value.isdigit()):
            raise UserError(f"--arch {item!r}: expected KEY=VALUE with KEY an ArchConfig field and an "
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
    if args.ref_dir:  # refuse before any timing: no folder, not a checkout, a model it does not have
        from .reference_step import checkout_modules

        if not os.path.isdir(args.ref_dir):
            raise UserError(f"--ref-dir {args.ref_dir}: no such folder")
        with checkout_modules(args.ref_dir):
            for model in sorted({CONFIGS[c].model for c, _, _ in runs}):
                _load_reference(args.ref_dir, model)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = cpu_description()
    print(tune_malloc(args.malloc), flush=True)  # --ref-dir's step shares the process, and so this setting
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}", flush=True)
    print(f"cpu: {cpu}", flush=True)
    if not args.json:
        print(HEADER + (REF_HEADER if args.ref_dir else ""), flush=True)
    results = []
    for c, dtype, comp in runs:
        warmup = args.warmup or (3 if comp else 2)
        r = measure(c, dtype, comp, args.steps, warmup, device=args.device, batch=args.batch,
                    arch=arch, sync_free=args.sync_free, ref_dir=args.ref_dir) | {"cpu": cpu}
        results.append(r)
        print(json.dumps(r) if args.json else format_row(r, bool(args.ref_dir)), flush=True)
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
