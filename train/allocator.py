"""glibc malloc settings that let a CPU training step reuse freed tensor memory.

PyTorch's CPU tensors come straight from malloc and go back to it when an op's output dies. glibc
serves large blocks with fresh mmap pages (above a threshold that starts at 128 KiB and only
creeps up after frees) and hands heap memory back to the OS once more than its trim threshold is
free at the top. A step of mid-sized activations (the quick Sudoku shape: ~1-2 MB hidden
activations, a few hundred tensors a step) therefore keeps touching pages it has never touched:
~3,000 page faults per step on a 2-core Xeon, each zeroing 4 KiB, about a tenth of the step, and
a different count from run to run as the dynamic threshold wanders (so step timings wander too).

Fixing the two thresholds (mmap at glibc's largest allowed, 32 MiB; trim at 1 GiB) keeps freed
blocks on the heap for the next step: after the first steps a step faults no pages. This is what
`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` in the environment, or preloading jemalloc or
tcmalloc, would do; those, when present, are left to rule. The cost: memory a run freed stays
with the process (its RSS stays near its peak) until it exits.
"""
from __future__ import annotations

import ctypes
import os

from puzzles.errors import UserError

MODES = ("auto", "default")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's cap for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 1 << 30
ENV_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _glibc() -> ctypes.CDLL | None:
    """The running process's C library if it is glibc (it exports gnu_get_libc_version)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError off glibc (macOS, musl)
        libc.mallopt
    except (OSError, TypeError, AttributeError):
        return None
    return libc


def tune_malloc(mode: str = "auto") -> str:
    """Apply the thresholds above where they are ours to set; return what was done, as one line.

    auto: fix them under glibc unless the environment already chose (a MALLOC_*_ setting, glibc.malloc
    tunables, or an allocator in LD_PRELOAD); default: leave malloc alone. Idempotent."""
    if mode not in MODES:
        raise UserError(f"system.malloc must be one of {MODES}, got {mode!r}")
    if mode == "default":
        return "malloc: left as it is (system.malloc=default)"
    chosen = [name for name in ENV_SETTINGS if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    preload = [lib for lib in ("jemalloc", "tcmalloc", "mimalloc") if lib in os.environ.get("LD_PRELOAD", "")]
    if chosen or preload:
        return f"malloc: left as the environment set it ({', '.join(chosen + preload)})"
    libc = _glibc()
    if libc is None:
        return "malloc: left as it is (not glibc)"
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        return "malloc: left as it is (glibc refused the thresholds)"
    return ("malloc: glibc keeps freed blocks up to 32 MiB for reuse (no page faults per step; the "
            "process keeps its peak memory); system.malloc=default to leave it")
