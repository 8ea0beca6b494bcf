"""The layout rules of train/, bench/ and models/: short files with one job (no source file past ~300
lines; docs/layout.md says which module owns what), collectives only in train/collectives.py, and
imports pointing down. Run: python -m pytest -q tests/test_layout_train.py
"""
from __future__ import annotations

import re
from pathlib import Path

LIMIT = 300
ROOT = Path(__file__).resolve().parents[1]


def test_train_bench_models_files_are_short():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for folder in ("train", "bench", "models") for p in sorted((ROOT / folder).glob("*.py"))}
    assert len(lengths) > 30  # the folders were found
    assert {k: n for k, n in lengths.items() if n > LIMIT} == {}


COLLECTIVE = re.compile(r"\bdist\.(all_reduce|all_gather\w*|broadcast\w*|barrier|reduce\w*|gather|scatter\w*|"
                        r"all_to_all\w*|send|recv|isend|irecv)\s*\(")


def test_collectives_are_called_only_in_their_module():
    """Every all_reduce / all_gather / broadcast / barrier goes through train/collectives.py."""
    calls = [f"{p.relative_to(ROOT)}:{n}" for folder in ("train", "bench", "models", "puzzles")
             for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "collectives.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if COLLECTIVE.search(line)]
    assert calls == []
    assert COLLECTIVE.search("dist.all_reduce(flag, op=dist.ReduceOp.MIN)")  # the pattern itself
    assert COLLECTIVE.search((ROOT / "train" / "collectives.py").read_text())


def test_models_and_puzzles_do_not_import_train_or_bench():
    """Arrows point down: bench -> train -> models -> puzzles (function-level imports count too)."""
    up = re.compile(r"^\s*(from|import)\s+(train|bench)\b")
    found = [f"{p.relative_to(ROOT)}:{n}" for folder in ("models", "puzzles") for p in sorted((ROOT / folder).rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if up.match(line)]
    assert found == []
    assert up.match("    from train.checkpoint import load_checkpoint")  # the pattern itself


def test_the_config_does_not_import_the_engine():
    """train.config validates the sampling options (train/sampling.py) without the inference engine."""
    import subprocess
    import sys
    code = "import sys, train.config; print(sorted(m for m in sys.modules if m in ('train.infer', 'train.trajectories')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
