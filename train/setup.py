"""One place that decides where and how a run executes: device, distributed, compile, precision.

`setup_system(cfg)` is called once per run, in this fixed order (device -> distributed -> compile
-> precision), and prints each choice with the reason so a log always says how it ran.
Nothing else in the project looks at `torch.cuda` or environment variables for these decisions.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
import torch.distributed as dist

from puzzles.errors import UserError


@dataclass
class System:
    device: torch.device
    dtype: torch.dtype          # compute dtype of the model's matmuls (weights stay fp32)
    compile: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return True  # bf16 matmuls run on any x86/ARM CPU; fast where AMX/AVX512-BF16 exist
    return False


def _compile_default(dev: torch.device) -> tuple[bool, str]:
    """On where it wins: CUDA, and CPUs with a C++ compiler for inductor's kernels (the quick
    TRM-MLP step: 0.80 s eager -> 0.68 s compiled on 2 cores, ~10 s of compiling). MPS stays eager."""
    if dev.type == "cuda":
        return True, "default on CUDA"
    if dev.type == "cpu":
        cxx = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
        if cxx:
            return True, f"default on CPU: fused kernels, compiled with {cxx}; system.compile=off to skip"
        return False, "no C++ compiler found for CPU kernels (install g++ or clang to enable)"
    return False, f"off by default on {dev.type}; system.compile=on to try"


def setup_system(device: str = "auto", dtype: str = "auto", compile: str = "auto",
                 verbose: bool = True) -> System:
    """Decide device, distributed setup, compile and precision; print what was chosen and why."""
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
    lines.insert(0, f"device: {dev} ({why})")

    if compile == "auto":
        use_compile, cwhy = _compile_default(dev)
    elif compile in ("on", "off"):
        use_compile, cwhy = compile == "on", "asked for"
    else:
        raise UserError(f"system.compile must be auto, on or off, got {compile!r}")
    lines.append(f"compile: {'on' if use_compile else 'off'} ({cwhy})")
    if dev.type == "cpu":
        # Same seed, same run: inductor's multi-threaded CPU kernels otherwise sum some gradients
        # with atomics in whatever order the threads arrive (two compiled 30-step runs differed by
        # 0.017 in a weight). The deterministic kernels cost nothing measurable here (0.59 vs 0.65 s).
        torch.use_deterministic_algorithms(True, warn_only=True)

    if dtype == "auto":
        bf16 = _bf16_supported(dev)
        dt = torch.bfloat16 if bf16 else torch.float32
        dwhy = "device supports bf16" if bf16 else "device lacks bf16"
    elif dtype in ("bfloat16", "bf16"):
        if not _bf16_supported(dev):
            raise UserError(f"system.dtype=bfloat16 is not supported on {dev}")
        dt, dwhy = torch.bfloat16, "asked for"
    elif dtype in ("float32", "fp32"):
        dt, dwhy = torch.float32, "asked for"
    else:
        raise UserError(f"system.dtype must be auto, float32 or bfloat16, got {dtype!r}")
    lines.append(f"precision: {str(dt).removeprefix('torch.')} compute, float32 weights ({dwhy})")

    if verbose and rank == 0:
        for line in lines:
            print(line, flush=True)
    return System(device=dev, dtype=dt, compile=use_compile, rank=rank, world_size=world_size,
                  local_rank=local_rank)


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
