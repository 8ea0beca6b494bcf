"""system.malloc (train/allocator.py): glibc keeps freed tensor memory, so a step stops faulting pages.

Each measurement runs in its own process: the thresholds, once set, hold for the whole process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.allocator import _glibc, tune_malloc
from train.errors import ConfigError
from train.overrides import apply_overrides
from train.presets import PRESETS

from .test_bad_inputs import base, fails, trainer
from .test_train import sudoku_data  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]

# Forward and backward of a TRM-MLP block at the quick Sudoku shape (batch 32, 36 cells, width 64,
# hidden activations of 1-2 MB), eager, one thread; prints the page faults of 30 steps after 20.
STEP = """
import json, resource, sys, torch
from train.allocator import tune_malloc
torch.set_num_threads(1)
line = tune_malloc(sys.argv[1])
from models.layers import Block
torch.manual_seed(0)
block = Block(64, 2, 4.0, 1e-5, mlp_t=True, total_len=36)
h = torch.randn(32, 36, 64, requires_grad=True)
def step():
    block(block(h)).square().sum().backward()
for _ in range(20):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    step()
print(json.dumps({"line": line, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def faults_per_step(mode: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", STEP, mode], cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["line"], result["faults"] / 30


@pytest.mark.skipif(_glibc() is None, reason="the thresholds are glibc's; other C libraries are left alone")
def test_tuned_malloc_stops_the_page_faults_of_a_step():
    default_line, default = faults_per_step("default")
    tuned_line, tuned = faults_per_step("auto")
    assert "left as it is" in default_line and "keeps freed blocks" in tuned_line, (default_line, tuned_line)
    assert default > 100, default  # glibc hands the 1-2 MB activations back and faults them in again
    assert tuned < default / 10, (tuned, default)  # tuned: none, but for the heap's rare growth spurts


def test_the_environment_s_own_choice_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert tune_malloc("auto") == "malloc: left as the environment set it (MALLOC_TRIM_THRESHOLD_)"
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert tune_malloc("auto") == "malloc: left as the environment set it (GLIBC_TUNABLES)"
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert "jemalloc" in tune_malloc("auto")
    assert tune_malloc("default") == "malloc: left as it is (system.malloc=default)"


def test_bad_malloc_setting_is_one_line(tmp_path, sudoku_data, capsys):  # noqa: F811
    with pytest.raises(ConfigError, match="system.malloc must be auto or default"):
        apply_overrides(PRESETS["quick"]("sudoku", "trm"), ["system.malloc=jemalloc"])
    fails(trainer(), base(sudoku_data, tmp_path / "r", "system.malloc=jemalloc"), capsys, "system.malloc",
          roots=(tmp_path,))
    assert not (tmp_path / "r").exists()
