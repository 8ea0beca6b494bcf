"""The repository stands alone and its text describes the software.

- Nothing in the package, the benchmarks or the tests reads a folder beside the repository: all
  data a build or a test needs ships inside it (tests/fixtures, puzzles/data).
- README, docs and code name no local absolute path (of the machine a figure was taken on) and do
  not narrate how the project was developed (work sessions, tickets, issue numbers, borrowed
  machines): a reader must be able to tell which figure describes the software they installed.
The patterns are short and explicit; ALLOWED lists the real uses they would otherwise catch.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("puzzles", "models", "train", "bench", "tests")

# Built from parts so that this file does not match itself.
BESIDE = re.compile(re.escape("..") + r"[/\\]" + "shared" + r"\b|parents\[2\]")
LOCAL_PATH = re.compile(r"(?<![\w.~])/(?:" + "|".join(["work", "tmp", "root", "home", "Users", "mnt"]) + r")/")
PROCESS_EVERYWHERE = [
    re.compile(r"\bsession[- ]?\d", re.I),                      # "session 7", "session-4 preset"
    re.compile(r"\b(?:this|last|next|earlier|previous|later|one) sessions?\b", re.I),
    re.compile(r"\btickets?\b", re.I),
    re.compile(r"\bissue\s*#?\d+", re.I),
    re.compile(r"\b(?:borrowed|lent)\b", re.I),                 # machines the figures were taken on
    re.compile(r"\b(?:CEO|subagents?|helper agents?)\b"),
]
PROCESS_IN_DOCS = [
    re.compile(r"\bsessions?\b", re.I),
    re.compile(r"(?<![\w&/\]])#\d{1,3}\b"),                     # "#12": an issue number, not an anchor
]
ALLOWED: set[tuple[str, str]] = set()  # (file relative to ROOT, the matched text)


def tracked(*patterns: str) -> list[Path]:
    """Files git tracks (or would: not ignored), so that build outputs and runs are left out."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an unpacked archive): walk the tree instead
        return sorted(p for pat in patterns for p in ROOT.glob(pat) if p.is_file())
    return sorted(ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file())


def hits(files: list[Path], patterns: list[re.Pattern]) -> list[str]:
    found = []
    for f in files:
        rel = str(f.relative_to(ROOT))
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for pat in patterns:
                for m in pat.finditer(line):
                    if (rel, m.group(0)) not in ALLOWED:
                        found.append(f"{rel}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}")
    return found


def code_files() -> list[Path]:
    """Every Python file but this one (which spells out the patterns)."""
    here = Path(__file__).resolve()
    return [f for f in tracked(*(f"{d}/*.py" for d in CODE_DIRS), "*.py") if f.suffix == ".py" and f != here]


def doc_files() -> list[Path]:
    return [f for f in tracked("*.md") if f.suffix == ".md"]


def test_nothing_reads_beside_the_repository() -> None:
    assert hits(code_files() + doc_files() + tracked(".ci/*"), [BESIDE]) == []


def test_no_local_absolute_paths() -> None:
    assert hits(code_files() + doc_files(), [LOCAL_PATH]) == []


def test_text_describes_the_software_not_its_development() -> None:
    assert hits(code_files(), PROCESS_EVERYWHERE) == []
    assert hits(doc_files(), PROCESS_EVERYWHERE + PROCESS_IN_DOCS) == []


def test_the_checks_catch_what_they_are_for() -> None:
    """Each pattern fires on the kind of line it is meant for and not on ordinary prose or code."""
    in_docs = [BESIDE, LOCAL_PATH] + PROCESS_EVERYWHERE + PROCESS_IN_DOCS
    in_code = [BESIDE, LOCAL_PATH] + PROCESS_EVERYWHERE
    bad = ["open('" + ".." + "/shared/data/arc')", "data.path=/work/exp/data-sq", "since session 7 the preset",
           "measured this session", "under which ticket", "see issue #12", "on the GPU we were lent",
           "fixed in #27"]
    for line in bad:
        assert any(p.search(line) for p in in_docs), line
    code_ok = ['@pytest.fixture(scope="session")', "the shared blocks", "--out runs/x data.path=data/sudoku-quick",
               "colour = '#1f77b4'", "relative to tmp_path / 'a'"]
    docs_ok = ["see [Results](#results)", "the shared blocks", "`--out runs/x`", "batch 64, lr 8e-4"]
    assert [line for line in code_ok if any(p.search(line) for p in in_code)] == []
    assert [line for line in docs_ok if any(p.search(line) for p in in_docs)] == []
