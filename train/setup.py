"""One place that decides where and how a run executes: device, distributed, compile, precision.

`setup_system(cfg)` is called once per run, in this fixed order (device -> distributed -> precision
-> compile, since whether compiling pays depends on the dtype), and prints each choice with the
reason so a log always says how it ran.
Nothing else in the project looks at `torch.cuda` or environment variables for these decisions.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from models.config import dtype_name
from puzzles.errors import UserError


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
    try:
        hw = "yes" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    except (AttributeError, RuntimeError):
        hw = "unknown"
    return f"{name}, {torch.get_num_threads()} threads, bf16 matmul hardware: {hw}"


_MATMUL_SPEED: dict[tuple, float] = {}


def matmul_gflops(device: torch.device, dtype: torch.dtype, width: int) -> float:
    """GFLOP/s of a (tokens x width) @ (width x 4 width) matmul, the shape of a feed-forward layer,
    on a CPU `device` (timed without synchronisation, which only a CPU allows).

    Cached per process. The token count keeps one call near 64 MFLOP, so even a CPU that emulates
    bf16 in software (~1 GFLOP/s, 60x below its float32) answers in a fraction of a second."""
    key = (device.type, dtype, width, torch.get_num_threads())
    if key not in _MATMUL_SPEED:
        tokens = min(1024, max(64, 32_000_000 // (4 * width * width)))
        a = torch.randn(tokens, width, device=device).to(dtype)
        b = torch.randn(width, 4 * width, device=device).to(dtype)
        best, spent = float("inf"), 0.0
        with torch.no_grad():
            a @ b  # warm-up: kernel selection, allocation
            for _ in range(20):
                t = time.perf_counter()
                a @ b
                took = time.perf_counter() - t
                best, spent = min(best, took), spent + took
                if spent > 0.05:
                    break
        _MATMUL_SPEED[key] = 2 * tokens * width * 4 * width / max(best, 1e-9) / 1e9
    return _MATMUL_SPEED[key]


# bf16 must beat float32 by this factor to be chosen on a CPU: a near-tie is not worth the
# rounding (and the probe's noise is a few per cent).
BF16_MIN_SPEEDUP = 1.25


def choose_dtype(request: str, device: torch.device, width: int = 128) -> tuple[torch.dtype, str]:
    """The compute dtype for `request` (auto | float32 | bfloat16) on `device`, and why, in words.

    CUDA: bf16 where the GPU supports it. MPS: float32. CPU: bf16 only when a matmul of the
    model's width is measured faster in bf16 than in float32 on this machine (CPUs without
    AVX512-BF16 or AMX run it many times slower). An explicit bfloat16 on such a CPU runs, with
    a warning that gives the measured slowdown."""
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
    bf16 = matmul_gflops(device, torch.bfloat16, width)
    fp32 = matmul_gflops(device, torch.float32, width)
    figures = f"bf16 matmul {bf16:.1f} GFLOP/s vs float32 {fp32:.1f} GFLOP/s at width {width} on this CPU"
    if request != "auto":
        if bf16 < fp32:
            print(f"warning: system.dtype=bfloat16 runs {fp32 / bf16:.1f}x slower than float32 here "
                  f"({figures}); system.dtype=auto picks the faster one", file=sys.stderr, flush=True)
        return torch.bfloat16, "asked for"
    if bf16 >= BF16_MIN_SPEEDUP * fp32:
        return torch.bfloat16, figures
    return torch.float32, figures


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
                 verbose: bool = True, width: int = 128) -> System:
    """Decide device, distributed setup, compile and precision; print what was chosen and why.

    `width` is the model's hidden size: the precision probe times a matmul of that width."""
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
        dist.broadcast(flag, src=0)
        dt = torch.bfloat16 if flag.item() else torch.float32
    lines.append(f"precision: {dtype_name(dt)} compute, float32 weights ({dwhy})")

    if compile == "auto":
        use_compile, cwhy = _compile_default(dev, dt)
    elif compile in ("on", "off"):
        use_compile, cwhy = compile == "on", "asked for"
    else:
        raise UserError(f"system.compile must be auto, on or off, got {compile!r}")
    lines.append(f"compile: {'on' if use_compile else 'off'} ({cwhy})")
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
                dist.barrier()
        finally:
            dist.destroy_process_group()
