"""The paper configurations' training step on one GPU, in every way this repository can run it, and
the reference's own step beside it: one table (`bash bench/gpu.sh` runs it).

    python -m bench.gpu                                  # CUDA; the paper's batch or the largest that fits
    python -m bench.gpu --ref-dir /path/to/TinyRecursiveModels --batch 256
    python -m bench.gpu --device cpu --tiny --threads 1  # toy sizes on a CPU: the script end to end

Rows: TRM attention on ARC (30x30 = 900 cells, vocab 12, 16-position puzzle prefix), TRM-MLP on
Sudoku 9x9 (81 cells, vocab 11), HRM on ARC, each with the `paper` preset's architecture and
optimiser (train/presets.py), bf16 compute, at batch 768 or, where one eager step of that does not
fit in the GPU's memory, the largest halving of it that does. Modes:
  eager      our trainer step (train/step.py), no compilation
  compiled   the same with torch.compile on the model (`system.compile`)
  graphs     the sync-free step (`system.sync_free`: no host reads) with the model compiled in
             mode="reduce-overhead", which replays the forward and backward as CUDA graphs
  reference  the reference's own step, compiled as its trainer does (bench/reference_step.py), from
             a checkout in `--ref-dir` / `REF_DIR`; "not given" without one

Every mode of a row starts from the same weights (the reference's initial weights, imported into
ours, when a checkout is given) and runs the same batches (random grids, 1024 puzzle identifiers)
at the paper's lr with no warm-up. `loss@1` (the first step: same weights, same batch) must agree
across modes to bf16 rounding; `loss@N` (after all warm-up and timed steps) drifts a little, since
the sign-like first updates (AdamATan2, sign-SGD) let rounding flip small gradients, and for HRM its
halting rule can then stop different rows. In brackets: the relative difference to eager. FLOPs are
analytical (bench/flops.py); `% peak` is against a large bf16 matmul timed in the same process. A
mode that fails (out of memory, a compile error) says so in its row and the table goes on; so does a
mode due after `--budget-s` seconds, which keeps the whole script inside its time on one H100.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import time
from typing import Sequence

import torch

from models import build_model, load_reference_state_dict
from puzzles.errors import UserError, run_cli

from .flops import step_flops
from .step_shapes import BenchConfig, matmul_peak, random_batches, sync_device

CASES = {  # row -> (family, model, cells, vocab): the datasets' shapes at paper scale
    "trm-arc": ("arc", "trm", 900, 12),
    "trm-mlp-sudoku": ("sudoku", "trm-mlp", 81, 11),
    "hrm-arc": ("arc", "hrm", 900, 12),
}
MODES = ("eager", "compiled", "graphs", "reference")
PAPER_BATCH = 768
PUZZLE_IDS = 1024
COLUMNS = ("case", "mode", "batch", "s/step", "tokens/s", "TFLOP/s", "% peak", "peak GiB", "loss@1", "loss@N",
           "note")


@dataclasses.dataclass
class Case:
    name: str
    model: str
    bench: BenchConfig  # model, batch, arch fields, cells, vocab, puzzle identifiers
    optim: object  # train.config.OptimConfig


def make_case(name: str, tiny: bool, batch: int) -> Case:
    """The paper preset's architecture and optimiser for row `name`; `tiny`: toy widths and shapes."""
    from train.presets import paper

    family, model, cells, vocab = CASES[name]
    cfg = paper(family, model)
    arch = dataclasses.asdict(cfg.arch)
    if tiny:
        arch.update(hidden_size=32, num_heads=2, puzzle_emb_ndim=32)
        cells = 16
    bench = BenchConfig(model, batch, arch, seq_len=cells, vocab_size=vocab, puzzle_ids=PUZZLE_IDS)
    optim = dataclasses.replace(cfg.optim, global_batch_size=batch, lr_warmup_steps=0)
    return Case(name, model, bench, optim)


def build(case: Case, device: torch.device, state: dict | None = None, reference: bool = False):
    """Our model for `case` on `device`, seeded; `state`: weights to start from (reference's: `reference`)."""
    from models import ArchConfig

    torch.manual_seed(0)
    model = build_model(case.model, ArchConfig(**case.bench.arch), case.bench.shape, "bfloat16")
    if state is not None and reference:
        load_reference_state_dict(model, state)
    elif state is not None:
        model.load_state_dict(state)
    return model.to(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def fits(case: Case, device: torch.device) -> bool:
    """Whether one eager trainer step at the case's batch fits in the GPU's memory."""
    try:
        run_ours(case, "eager", device, None, False, steps=1, warmup=0)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        _free(device)


def run_ours(case: Case, mode: str, device: torch.device, state: dict | None, reference_state: bool,
             steps: int, warmup: int) -> dict:
    """Time `steps` trainer steps after `warmup` in `mode`; the figures and the last loss per example."""
    from torch._dynamo.utils import counters

    from train.step import TrainStep

    model = build(case, device, state, reference_state)
    trainer = TrainStep(model, case.optim, total_steps=10_000, compile=mode == "compiled",
                        sync_free=mode == "graphs")
    if mode != "eager":
        torch._dynamo.reset()  # a fresh cache per model: no recompile limit, no stale graphs
        counters.clear()
    if mode == "graphs":
        trainer.forward = torch.compile(model, mode="reduce-overhead")
    batches = random_batches(case.bench, 4, 0, device)
    carry = model.initial_carry(batches[0])

    def step(i: int):
        nonlocal carry
        if mode == "graphs":  # a new step: the last replay's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        result = trainer(carry, batches[i % len(batches)], i + 1)
        carry = result.carry
        return result.loss

    out = _timed(step, steps, warmup, device) | {"flops": step_flops(case.model, model.config, case.bench.batch)}
    notes = []
    if mode != "eager" and sum(counters["graph_break"].values()):
        notes.append(f"{sum(counters['graph_break'].values())} graph breaks")
    if mode == "graphs" and counters["inductor"]["cudagraph_skips"]:  # inductor fell back to plain kernels
        notes.append("no CUDA graphs on a CPU" if device.type == "cpu" else
                     f"CUDA graphs skipped in {counters['inductor']['cudagraph_skips']} graphs (why: stderr)")
    return out | {"note": "; ".join(notes)}


def run_reference(case: Case, ref_dir: str, device: torch.device, state: dict, steps: int, warmup: int) -> dict:
    from .reference_step import ReferenceStep, checkout_modules, load_reference

    cfg = build(case, torch.device("cpu")).config
    flops = step_flops(case.model, cfg, case.bench.batch)
    batches = random_batches(case.bench, 4, 0, device)
    torch._dynamo.reset()
    with checkout_modules(ref_dir):
        ref = ReferenceStep(load_reference(ref_dir, case.model), cfg, case.optim, 10_000, device, state=state)
        out = _timed(lambda i: ref(batches[i % len(batches)], i + 1), steps, warmup, device)
    return out | {"flops": flops, "note": ref.note}


def _timed(step, steps: int, warmup: int, device: torch.device) -> dict:
    """Run `warmup` then `steps` calls of `step(i)` (which returns the summed loss), timing the latter."""
    times, losses = [], []
    for i in range(warmup + steps):
        t = time.perf_counter()
        losses.append(step(i))
        sync_device(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return {"s": statistics.median(times) if times else None, "loss1": float(losses[0].detach()),
            "loss": float(losses[-1].detach()), "peak_gib": peak}


def reference_weights(case: Case, ref_dir: str, device: torch.device) -> dict:
    """The reference model's initial state (built seeded on `device`, as its trainer builds it)."""
    from .reference_step import ReferenceStep, checkout_modules, load_reference

    cfg = build(case, torch.device("cpu")).config
    with checkout_modules(ref_dir):
        return ReferenceStep(load_reference(ref_dir, case.model), cfg, case.optim, 10_000, device,
                             compile=False).state_dict()


def row(case: Case, mode: str, r: dict, peak: float, eager: dict | None) -> dict:
    """One table row; `eager`: the eager row of the case (its losses are what `vs` compares to)."""
    b = case.bench
    out = {"case": case.name, "mode": mode, "batch": b.batch, "note": r.get("note", "")}
    if r.get("s") is None:
        return out
    tflops = r["flops"] / r["s"] / 1e12
    out.update({"s/step": f"{r['s']:.4f}", "tokens/s": f"{b.batch * b.seq_len / r['s']:,.0f}",
                "TFLOP/s": f"{tflops:.2f}", "% peak": f"{100 * tflops * 1e12 / peak:.1f}",
                "peak GiB": "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}",
                "_loss1": r["loss1"] / b.batch, "_lossN": r["loss"] / b.batch})
    for key, col in (("_loss1", "loss@1"), ("_lossN", "loss@N")):
        out[col] = f"{out[key]:.5f}"
        if eager is not None and key in eager and mode != "eager":
            out[col] += f" ({(out[key] - eager[key]) / eager[key]:+.1e})"
    return out


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:160] if lines else ""


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "-")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: the CPU check)")
    p.add_argument("--tiny", action="store_true", help="toy sizes: hidden 32, 16 cells, batch 4, 2 steps")
    p.add_argument("--batch", type=int, default=0, help=f"batch of every row (0: {PAPER_BATCH}, halved until "
                                                        "one eager step fits)")
    p.add_argument("--steps", type=int, default=0, help="timed steps per mode (0: 3; --tiny 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, CUDA graph capture)")
    p.add_argument("--cases", default=",".join(CASES), help="rows, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help="modes, comma-separated")
    p.add_argument("--ref-dir", default=os.environ.get("REF_DIR", ""),
                   help="a TinyRecursiveModels checkout (default: $REF_DIR); its rows say 'not given' without one")
    p.add_argument("--budget-s", type=float, default=0, help="start no mode after this many seconds (0: no limit)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = p.parse_args(argv)
    cases, modes = args.cases.split(","), args.modes.split(",")
    for name, known, option in [(c, CASES, "--cases") for c in cases] + [(m, MODES, "--modes") for m in modes]:
        if name not in known:
            raise UserError(f"{option}: unknown {name!r}; choose from {', '.join(known)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: this PyTorch sees no CUDA device (on a CPU: --device cpu --tiny)")
    if args.ref_dir and not os.path.isdir(args.ref_dir):
        raise UserError(f"--ref-dir {args.ref_dir}: no such folder")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.tiny else 3)
    start = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    peak = matmul_peak(torch.bfloat16, device, n=256 if args.tiny else 0)
    print(f"device: {name} | torch {torch.__version__} | bf16 matmul peak {peak / 1e12:.2f} TFLOP/s | "
          f"{steps} timed steps after {args.warmup}; loss@N after {args.warmup + steps} steps", flush=True)
    rows = []
    for name in cases:
        case = make_case(name, args.tiny, args.batch or (4 if args.tiny else PAPER_BATCH))
        while not (args.batch or args.tiny) and device.type == "cuda" and not fits(case, device):
            if case.bench.batch == 1:
                raise UserError(f"{name}: one example does not fit in this GPU's memory")
            say(f"{name}: batch {case.bench.batch} does not fit; trying {case.bench.batch // 2}")
            case = make_case(name, False, case.bench.batch // 2)
        state = reference_weights(case, args.ref_dir, device) if args.ref_dir else None
        if state is None:  # ours, seeded: every mode starts from these
            state = {k: v.detach().clone() for k, v in build(case, torch.device("cpu")).state_dict().items()}
        eager = None
        for mode in modes:
            if mode == "reference" and not args.ref_dir:
                rows.append(row(case, mode, {"note": "not given (REF_DIR)"}, peak, None))
                continue
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                rows.append(row(case, mode, {"note": f"skipped: past the {args.budget_s:.0f} s budget"}, peak, None))
                continue
            say(f"{name} {mode}: batch {case.bench.batch}, {args.warmup} + {steps} steps")
            _free(device)
            try:
                r = (run_reference(case, args.ref_dir, device, state, steps, args.warmup) if mode == "reference"
                     else run_ours(case, mode, device, state, bool(args.ref_dir), steps, args.warmup))
            except torch.cuda.OutOfMemoryError:
                r = {"note": f"out of memory at batch {case.bench.batch}"}
            except Exception as err:  # the table still comes out; the row says what went wrong
                r = {"note": f"failed: {type(err).__name__}: {first_line(err)}"}
            rows.append(row(case, mode, r, peak, eager))
            if mode == "eager":
                eager = rows[-1]
            say(f"{name} {mode}: {rows[-1].get('s/step', '-')} s/step {rows[-1]['note']}")
    print(table(rows), flush=True)
    say("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
