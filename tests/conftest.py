"""Shared test fixtures. Run the suite with `python -m pytest -q` (add `-m "not slow"` to skip slow tests).

Everything a test reads lives in the repository: the reference parity fixtures in
tests/fixtures/reference (provenance in its README) and the bundled public puzzle files in
puzzles/data (provenance in its README).
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "fixtures" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE
