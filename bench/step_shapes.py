"""The shapes the step benchmarks run (`bench.train_step`, `bench.gpu`), their random batches, and
the matmul peak utilisation is measured against.

Configs (batch 64, 81 cells + a 16-position prefix holding a puzzle vector of hidden size, vocab 11):
    A  TRM attention + RoPE, hidden 128, 4 heads, L_layers 2, H_cycles 3, L_cycles 6
    B  as A with the token MLP (trm-mlp), no positions
    C  HRM, hidden 128, H_layers 2, L_layers 2, H_cycles 2, L_cycles 2, prefix 1
    D  TRM at paper size: hidden 512, 8 heads, batch 32
    Q, QT, QH  the CPU quick preset's shapes: 6x6 Sudoku (36 cells, vocab 8), batch 128, hidden 128, no
       prefix, halt_max_steps 8; Q trm-mlp H3 L4, QT trm (attention + RoPE) H3 L4, QH hrm as C
       (today's quick preset is batch 32, H_cycles 2 and, for trm-mlp, hidden 64:
       --config Q --batch 32 --arch H_cycles=2 --arch hidden_size=64)
    QU, QR, QM  the recursion variants at QT's shapes: ut (T_max 8), rrt (rank 8), mor (expert, 1/3);
       their GFLOP are effective (cells updated, from the steps' mean_* statistics; docs/variants.md)
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from models import DataShape


@dataclass(frozen=True)
class BenchConfig:
    model: str
    batch: int
    arch: dict  # ArchConfig fields
    seq_len: int = 81
    vocab_size: int = 11
    puzzle_ids: int = 8  # puzzle identifiers of the random batches (rows of the puzzle table)

    @property
    def shape(self) -> DataShape:
        return DataShape(self.seq_len, self.vocab_size, self.puzzle_ids)


def _arch(**kw) -> dict:
    base = dict(hidden_size=128, num_heads=4, expansion=4.0, halt_max_steps=16, halt_exploration_prob=0.1)
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


# --- timing -------------------------------------------------------------------------------------
def sync_device(device: torch.device) -> None:
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
        sync_device(device)
        t = time.perf_counter()
        a @ b
        sync_device(device)
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
        ids = torch.randint(1, bench.puzzle_ids, (bench.batch,), generator=g, dtype=torch.int32)
        out.append({k: v.to(device) for k, v in
                    {"inputs": inputs, "labels": labels, "puzzle_identifiers": ids}.items()})
    return out
