"""bench/gpu.sh and bench/gpu.py: the GPU table's script, run at toy sizes on the CPU (every row and
column, eager and compiled losses that agree), its refusal on a machine without CUDA, and, where a
TinyRecursiveModels checkout is named by REF_DIR, the reference's step from the same weights.
Run: python -m pytest -q tests/test_gpu_bench.py   (the whole table: -m slow, a few minutes)
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu
from puzzles.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]


def parse(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """The printed table as (case, mode) -> column -> cell, after checking its header."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert tuple(header) == gpu.COLUMNS
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return {(r["case"], r["mode"]): r for r in rows}


def loss(cell: str) -> float:
    return float(cell.split()[0])  # "2.63172 (+9.0e-06)": the loss, then its difference to eager


def test_every_row_and_column_without_a_reference(capsys, monkeypatch):
    monkeypatch.delenv("REF_DIR", raising=False)
    argv = ["--device", "cpu", "--tiny", "--threads", "1", "--modes", "eager,reference", "--ref-dir", ""]
    assert run_cli(gpu.main, argv) == 0
    table = parse(capsys.readouterr().out)
    assert set(table) == {(c, m) for c in gpu.CASES for m in ("eager", "reference")}
    for case in gpu.CASES:
        eager, ref = table[case, "eager"], table[case, "reference"]
        assert eager["batch"] == "4" and float(eager["s/step"]) > 0 and eager["peak GiB"] == "-"
        assert loss(eager["loss@1"]) > 0 and loss(eager["loss@N"]) > 0
        assert ref["s/step"] == "-" and ref["note"] == "not given (REF_DIR)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_gpu_sh_refuses_without_cuda():
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, "TINY": "0"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: bench/gpu.sh needs a CUDA GPU")


def test_bad_case_is_one_line(capsys):
    assert run_cli(gpu.main, ["--device", "cpu", "--tiny", "--cases", "trm-maze"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cases: unknown 'trm-maze'" in err


@pytest.mark.slow
def test_tiny_cpu_run_of_the_whole_script():
    """`TINY=1 CASES=trm-arc bash bench/gpu.sh`: the script end to end in every mode (the other cases
    run eager above; compiling all of them here tripled the suite's slowest test). Compiled and
    graphs start from the same weights and batches as eager, so the first step's loss agrees to bf16
    rounding; after N steps the sign-like first updates (AdamATan2, sign-SGD) let rounding flip
    small gradients, so looser there."""
    env = {**os.environ, "PYTHON": sys.executable, "TINY": "1", "CASES": "trm-arc"}
    env.pop("REF_DIR", None)
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    table = parse(done.stdout)
    assert set(table) == {("trm-arc", m) for m in gpu.MODES}
    for case in ("trm-arc",):
        eager = table[case, "eager"]
        for mode in ("compiled", "graphs"):
            row = table[case, mode]
            assert float(row["s/step"]) > 0 and float(row["TFLOP/s"]) >= 0
            assert loss(row["loss@1"]) == pytest.approx(loss(eager["loss@1"]), rel=1e-2)
            if case != "hrm-arc":
                assert loss(row["loss@N"]) == pytest.approx(loss(eager["loss@N"]), rel=5e-2)
        assert "no CUDA graphs on a CPU" in table[case, "graphs"]["note"]


@pytest.mark.skipif(not os.environ.get("REF_DIR") or importlib.util.find_spec("pydantic") is None,
                    reason="needs REF_DIR (a TinyRecursiveModels checkout) and pydantic")
@pytest.mark.slow
def test_reference_step_starts_from_our_weights(capsys):
    argv = ["--device", "cpu", "--tiny", "--threads", "1", "--modes", "eager,reference", "--cases", "trm-arc"]
    assert run_cli(gpu.main, argv) == 0
    table = parse(capsys.readouterr().out)
    eager, ref = table["trm-arc", "eager"], table["trm-arc", "reference"]
    assert loss(ref["loss@1"]) == pytest.approx(loss(eager["loss@1"]), rel=1e-2)
    assert loss(ref["loss@N"]) == pytest.approx(loss(eager["loss@N"]), rel=5e-2)


def test_checkout_namespace_package_leaves_inspect_working(tmp_path):
    """The checkout's `models` has no __init__.py; Python 3.11's inspect.getmodule, which torch runs
    when a module it imports lazily while tracing registers a custom op, failed on such a package in
    sys.modules (the reference row read "failed: ... is a built-in module" after an eager run)."""
    import inspect

    from bench.reference_step import checkout_modules, load_reference
    for name, text in {"losses.py": "class ACTLossHead: pass\n",
                       "sparse_embedding.py": "class CastedSparseEmbeddingSignSGD_Distributed: pass\n",
                       "ema.py": "class EMAHelper: pass\n",
                       "recursive_reasoning/trm.py": "class TinyRecursiveReasoningModel_ACTV1: pass\n"}.items():
        (tmp_path / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "models" / name).write_text(text)
    import models as ours
    # getmodule with a file it has not seen walks sys.modules, noting each module's file (ours here)
    assert inspect.getmodule(compile("", "a.py", "exec"), str(tmp_path / "a.py")) is None
    with checkout_modules(str(tmp_path)):
        ref = load_reference(str(tmp_path), "trm")
        assert ref.model_cls.__module__ == "models.recursive_reasoning.trm"
        assert inspect.getmodule(compile("", "b.py", "exec"), str(tmp_path / "b.py")) is None  # `models` moved
    import models
    assert models is ours
