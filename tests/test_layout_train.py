"""Short files with one job: no source file of train/, bench/ or models/ runs past ~300 lines
(docs/layout.md says which module owns what). Run: python -m pytest -q tests/test_layout_train.py
"""
from __future__ import annotations

from pathlib import Path

LIMIT = 300
ROOT = Path(__file__).resolve().parents[1]


def test_train_bench_models_files_are_short():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for folder in ("train", "bench", "models") for p in sorted((ROOT / folder).glob("*.py"))}
    assert len(lengths) > 30  # the folders were found
    assert {k: n for k, n in lengths.items() if n > LIMIT} == {}
