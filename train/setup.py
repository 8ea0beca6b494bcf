"""One place that decides where and how a run executes: device, distributed, compile, precision, malloc.

`setup_system(cfg)` is called once per run, in this fixed order (device -> distributed -> precision
-> compile, since whether compiling pays depends on the dtype), and prints each choice with the
reason so a log always says how it ran.
Nothing else in the project looks at `torch.cuda` or environment variables for these decisions.
"""
from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from models.config import dtype_name
from puzzles.errors import UserError

from . import collectives
from .allocator import tune_malloc


@dataclass
class System:
    device: torch.device
    dtype: torch.dtype          # compute dtype of the model's matmuls (weights stay fp32)
    compile: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    lines: tuple[str, ...] = ()  # what was chosen and why, as printed (device, precision, compile)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(choice: str) -> tuple[torch.device, str]:
    if choice != "auto":
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"system.device={choice} but no CUDA device is available")
        if choice == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserError("system.device=mps but MPS is not available on this machine")
        return torch.device(choice), "asked for"
    if torch.cuda.is_available():
        return torch.device("cuda"), f"found {torch.cuda.get_device_name(0)}"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps"), "found Apple MPS"
    return torch.device("cpu"), "no CUDA or MPS device found"


def bf16_hardware() -> bool | None:
    """Whether PyTorch reports bf16 matmul hardware (AVX512-BF16 / AMX) on this CPU; None if it cannot tell."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def cpu_description() -> str:
    """The CPU's model name and whether PyTorch sees bf16 matmul hardware (AVX512-BF16 / AMX) on it."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hw = {True: "yes", False: "no", None: "unknown"}[bf16_hardware()]
    return f"{name}, {torch.get_num_threads()} threads, bf16 matmul hardware: {hw}"


def _matmul_tokens(width: int) -> int:
    """Rows of the probe's matmul: one call stays near 64 MFLOP, so even a CPU that emulates bf16 in
    software (~1 GFLOP/s, 60x below its float32) answers each timing in well under 0.1 s."""
    return min(1024, max(64, 32_000_000 // (4 * width * width)))


def matmul_flops(width: int) -> int:
    """Floating-point operations of one probe matmul at `width`."""
    return 2 * _matmul_tokens(width) * width * 4 * width


def matmul_timer(device: torch.device, width: int) -> Callable[[torch.dtype], float]:
    """`time_one(dtype)`: the seconds of one (tokens x width) @ (width x 4 width) matmul in `dtype`, the
    shape of a feed-forward layer, on a CPU `device` (timed without synchronisation, which only a CPU
    allows). The first call for a dtype makes its operands and runs an untimed warm-up (kernel
    selection, allocation). The probe takes this as a parameter so tests can play any CPU."""
    tokens, operands = _matmul_tokens(width), {}
    gen = torch.Generator().manual_seed(0)  # the run's own random stream stays untouched

    def time_one(dtype: torch.dtype) -> float:
        if dtype not in operands:
            a = torch.randn(tokens, width, generator=gen).to(device, dtype)
            b = torch.randn(width, 4 * width, generator=gen).to(device, dtype)
            a @ b
            operands[dtype] = a, b
        a, b = operands[dtype]
        t = time.perf_counter()
        a @ b
        return time.perf_counter() - t
    return time_one


# The probe alternates bf16 and float32 timings until their sum passes PROBE_SECONDS (at least
# PROBE_MIN_ROUNDS rounds, at most PROBE_MAX_ROUNDS) and keeps each one's best, and the median of
# the rounds' speed ratios: a busy moment (another process, a page fault) then slows single timings,
# not the choice. A single timing each once read bf16 4.2 vs float32 151.5 GFLOP/s on an AMX CPU
# (bf16 is ~1.7x faster there when quiet). On a CPU so busy that every timing waits for a core, the
# best-of figures are a lottery (0.3x to 1.3x seen on that CPU) while the median ratio stays ~1.
PROBE_SECONDS, PROBE_MIN_ROUNDS, PROBE_MAX_ROUNDS = 0.2, 3, 100
# A speed ratio beyond the probe's noise: the measurements overrule the CPU's reported bf16
# capability only when one dtype is this much faster by both the best timings and the median ratio.
CLEAR_RATIO = 1.25


@dataclass
class MatmulProbe:
    bf16: float     # best GFLOP/s in bf16
    fp32: float     # best GFLOP/s in float32
    ratio: float    # median over the rounds of bf16 speed / float32 speed
    rounds: int     # timings of each
    seconds: float  # wall time of the whole probe, warm-ups included


_PROBES: dict[tuple, MatmulProbe] = {}


def probe_matmul(device: torch.device, width: int,
                 time_one: Callable[[torch.dtype], float] | None = None) -> MatmulProbe:
    """bf16 and float32 matmul speed at `width` on a CPU, timed alternately: best of each, and the
    median ratio of the two timings of a round.

    Cached per process (evaluation and train.solve ask again) unless `time_one` (see
    `matmul_timer`) is given."""
    key = (device.type, width, torch.get_num_threads())
    if time_one is None and key in _PROBES:
        return _PROBES[key]
    start = time.perf_counter()
    timer = time_one or matmul_timer(device, width)
    best = {torch.bfloat16: math.inf, torch.float32: math.inf}
    ratios, spent = [], 0.0
    with torch.no_grad():
        while len(ratios) < PROBE_MAX_ROUNDS and (len(ratios) < PROBE_MIN_ROUNDS or spent < PROBE_SECONDS):
            order = list(best) if len(ratios) % 2 == 0 else list(best)[::-1]  # neither always goes first
            took = {dtype: timer(dtype) for dtype in order}
            for dtype, t in took.items():
                best[dtype] = min(best[dtype], t)
            spent += sum(took.values())
            ratios.append(max(took[torch.float32], 1e-9) / max(took[torch.bfloat16], 1e-9))
    flops = matmul_flops(width)
    probe = MatmulProbe(bf16=flops / max(best[torch.bfloat16], 1e-9) / 1e9,
                        fp32=flops / max(best[torch.float32], 1e-9) / 1e9, ratio=statistics.median(ratios),
                        rounds=len(ratios), seconds=time.perf_counter() - start)
    if time_one is None:
        _PROBES[key] = probe
    return probe


def choose_dtype(request: str, device: torch.device, width: int = 128,
                 time_one: Callable[[torch.dtype], float] | None = None) -> tuple[torch.dtype, str]:
    """The compute dtype for `request` (auto | float32 | bfloat16) on `device`, and why, in words.

    CUDA: bf16 where the GPU supports it. MPS: float32. CPU: the reported bf16 hardware (AVX512-BF16
    or AMX) is the prior and the matmul probe at the model's width can overrule it: with the
    hardware, bf16 unless it measures clearly slower; without (CPUs that emulate bf16 run it many
    times slower), float32 unless bf16 measures clearly faster ("clearly": CLEAR_RATIO, by the best
    timings and the median ratio alike). An explicit bfloat16 on a CPU where it
    is clearly slower runs, with a warning that gives the measured slowdown. `time_one`: see
    `probe_matmul`."""
    if request in ("float32", "fp32"):
        return torch.float32, "asked for"
    if request not in ("auto", "bfloat16", "bf16"):
        raise UserError(f"system.dtype must be auto, float32 or bfloat16, got {request!r}")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "asked for" if request != "auto" else "the GPU supports bf16"
        if request != "auto":
            raise UserError(f"system.dtype=bfloat16 is not supported on {torch.cuda.get_device_name(device)}")
        return torch.float32, "the GPU lacks bf16"
    if device.type != "cpu":
        if request != "auto":
            raise UserError(f"system.dtype=bfloat16 is not supported on {device}")
        return torch.float32, f"bf16 is not used on {device.type}"
    probe = probe_matmul(device, width, time_one)
    bf16, fp32 = probe.bf16, probe.fp32
    figures = (f"bf16 matmul {bf16:.1f} GFLOP/s vs float32 {fp32:.1f} GFLOP/s at width {width} on this CPU, "
               f"best of {probe.rounds} alternating timings, median bf16/float32 speed {probe.ratio:.2f}, "
               f"{probe.seconds * 1000:.0f} ms")
    bf16_clearly_slower = fp32 > CLEAR_RATIO * bf16 and probe.ratio * CLEAR_RATIO < 1
    bf16_clearly_faster = bf16 > CLEAR_RATIO * fp32 and probe.ratio > CLEAR_RATIO
    if request != "auto":
        if bf16_clearly_slower:
            print(f"warning: system.dtype=bfloat16 runs {fp32 / bf16:.1f}x slower than float32 here "
                  f"({figures}); system.dtype=auto picks the faster one", file=sys.stderr, flush=True)
        return torch.bfloat16, "asked for"
    hardware = bf16_hardware()
    if hardware:
        if bf16_clearly_slower:
            return torch.float32, f"{figures}; bf16 hardware reported, but bf16 measured {fp32 / bf16:.1f}x slower"
        return torch.bfloat16, f"{figures}; bf16 hardware reported and bf16 not clearly slower"
    hw = "no bf16 hardware reported" if hardware is False else "bf16 hardware unknown"
    if bf16_clearly_faster:
        return torch.bfloat16, f"{figures}; {hw}, but bf16 measured {bf16 / fp32:.1f}x faster"
    return torch.float32, f"{figures}; {hw} and bf16 not clearly faster"


def _compile_default(dev: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """On where the compiled step is faster: CUDA, and CPUs with a C++ compiler for inductor's
    kernels, in float32 and bf16 alike (bench.train_step's fp32/bf16 compiled rows). MPS stays eager."""
    if dev.type == "cuda":
        return True, "default on CUDA"
    if dev.type == "cpu":
        cxx = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
        if cxx:
            return True, (f"default on CPU with a C++ compiler ({cxx}): fused kernels beat eager in "
                          f"{dtype_name(dtype)}; system.compile=off to skip")
        return False, "no C++ compiler found for CPU kernels (install g++ or clang to enable)"
    return False, f"off by default on {dev.type}; system.compile=on to try"


def setup_system(device: str = "auto", dtype: str = "auto", compile: str = "auto",
                 verbose: bool = True, width: int = 128, malloc: str = "auto") -> System:
    """Decide device, distributed setup, compile, precision and malloc (train/allocator.py); print
    what was chosen and why. `width`: the model's hidden size, the precision probe's matmul width."""
    lines = []
    dev, why = _pick_device(device)
    rank, world_size, local_rank = 0, 1, 0
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            # Before the group exists: torch.distributed.nn.functional binds `group=group.WORLD` into
            # default arguments when first imported (torch.use_deterministic_algorithms below imports
            # it via inductor/dynamo); imported after init it pins the group forever, so
            # destroy_process_group cannot free it and its gloo threads outlive teardown (rank 1
            # then sometimes aborted at exit: "terminate called without an active exception").
            from torch.distributed.nn import functional  # noqa: F401
            dist.init_process_group(backend=backend)
        lines.append(f"distributed: {world_size} processes ({backend}), this is rank {rank}")
    if dev.type == "cpu":
        why += f"; {cpu_description()}"
    lines.insert(0, f"device: {dev} ({why})")

    dt, dwhy = choose_dtype(dtype, dev, width)
    if world_size > 1 and dev.type == "cpu" and dtype == "auto":  # every rank computes in rank 0's dtype
        flag = torch.tensor([int(dt == torch.bfloat16)])
        collectives.broadcast_(flag)
        dt = torch.bfloat16 if flag.item() else torch.float32
    lines.append(f"precision: {dtype_name(dt)} compute, float32 weights ({dwhy})")

    if compile == "auto":
        use_compile, cwhy = _compile_default(dev, dt)
    elif compile in ("on", "off"):
        use_compile, cwhy = compile == "on", "asked for"
    else:
        raise UserError(f"system.compile must be auto, on or off, got {compile!r}")
    lines.append(f"compile: {'on' if use_compile else 'off'} ({cwhy})")
    lines.append(tune_malloc(malloc))
    if dev.type == "cpu":
        # Same seed, same run: inductor's multi-threaded CPU kernels otherwise sum some gradients
        # with atomics in whatever order the threads arrive (two compiled runs of the same seed
        # differed in their weights). The deterministic kernels cost no measurable time here.
        torch.use_deterministic_algorithms(True, warn_only=True)

    if verbose and rank == 0:
        for line in lines:
            print(line, flush=True)
    return System(device=dev, dtype=dt, compile=use_compile, rank=rank, world_size=world_size,
                  local_rank=local_rank, lines=tuple(lines))


def teardown_system(system: System, finished: bool = True) -> None:
    if system.distributed and dist.is_initialized():
        # Rank 0 hosts the rendezvous store: after a normal finish, let every rank arrive before
        # any tears down, or a late rank can abort ("terminate called without an active exception").
        # After an error the other ranks may never arrive, so do not wait for them.
        try:
            if finished:
                collectives.barrier()
        finally:
            dist.destroy_process_group()
