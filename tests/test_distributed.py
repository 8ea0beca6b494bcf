"""Data-parallel training equals single-process training: 2 gloo processes on CPU (torchrun, batch 4
each) vs one process (batch 8), same steps, same weights within float tolerance, puzzle table included.
Run: python -m pytest -q tests/test_distributed.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train.checkpoint import load_checkpoint
from train.loop import train

from .test_train import ROOT, TINY, _keep_threads, build_sudoku, tiny_cfg, with_identifiers  # noqa: F401

STEPS = 6
# Exploration off: halting then depends only on the weights, not on each rank's RNG stream.
RUN = ["arch.puzzle_emb_ndim=32", "arch.halt_exploration_prob=0", "optim.ema=true", f"optim.max_steps={STEPS}",
       "optim.lr_min_ratio=0.1"]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    data = with_identifiers(build_sudoku(tmp_path / "sudoku"), tmp_path / "ids")
    one = train(tiny_cfg(data, tmp_path / "one", *RUN))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "MASTER_", "LOCAL_"))}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train.sudoku", "--model", "trm-mlp", *TINY, *RUN,
           f"data.path={data}", f"system.run_dir={tmp_path / 'two'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "distributed: 2 processes (gloo)" in proc.stdout

    a = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS and a["loader"] == b["loader"]
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():  # parameters, H/L init and the puzzle table
        torch.testing.assert_close(b["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    for name, value in a["optim"]["ema"]["shadow"].items():
        torch.testing.assert_close(b["optim"]["ema"]["shadow"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    table = a["model"]["embedding.puzzle_emb.weights"]
    assert (table[1:].abs().sum(-1) > 0).all()  # every identifier's row was trained and compared

    # Evaluation on 2 ranks covers every example once and gathers the saved predictions.
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["eval"]["count"] == one["eval"]["count"] == 10
    for key in ("accuracy", "exact_accuracy", "steps"):
        assert two["eval"][key] == pytest.approx(one["eval"][key], abs=0.02)
    p1, p2 = (np.load(tmp_path / r / "eval" / "test" / "predictions.npz") for r in ("one", "two"))
    np.testing.assert_array_equal(p2["index"], np.arange(10))
    np.testing.assert_array_equal(p2["inputs"], p1["inputs"])
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines][:STEPS] == list(range(1, STEPS + 1))  # rank 0 only writes


TEARDOWN = """
import os, torch, torch.distributed as dist
from train.setup import setup_system, teardown_system
system = setup_system("cpu", "float32", "off", verbose=False)
flag = torch.ones(1)
dist.all_reduce(flag)
teardown_system(system)
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
with open(f"rank{system.rank}.txt", "w") as f:  # a file per rank: printed lines can interleave
    f.write(f"{sum('gloo' in n for n in names)} gloo threads after teardown")
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from Linux /proc")
def test_teardown_frees_the_process_group(tmp_path):
    """The cause of rank 1's rare abort at exit: a process group pinned by a module imported after
    init (torch.distributed.nn.functional's `group=group.WORLD` defaults) kept its gloo threads
    running into interpreter shutdown. A fresh interpreter, as torchrun starts each rank."""
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "MASTER_", "LOCAL_"))}
    env |= {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank{rank}.txt").read_text() == "0 gloo threads after teardown", rank
