"""The shape of puzzles/: no torch, no import cycles, every module importable alone, short files.

Run: python -m pytest -q tests/test_layout_puzzles.py
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "puzzles"
MAX_LINES = 300
FORBIDDEN = ("torch", "models", "train", "bench")  # puzzles/ is the first stage: it imports none of these


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (function-level imports count too), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            found += [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_walk_sees_cycles_and_imports():
    """The checker itself: it finds a planted cycle, resolves relative and submodule imports."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    edges = graph()
    assert "puzzles.arc.encoding" in edges["puzzles.arc"]  # from puzzles.arc.encoding import ...
    assert "puzzles.arc.build" in edges["puzzles.builders"]  # a function-level import counts
    assert "puzzles.sudoku_solver" in edges["puzzles.sudoku"]  # from puzzles import sudoku_solver


def test_puzzles_has_no_import_cycle():
    assert find_cycle(graph()) is None


def test_puzzles_imports_no_torch_models_train_or_bench():
    bad = {name: sorted(m for m in imports_of(path) if m.split(".")[0] in FORBIDDEN)
           for name, path in MODULES.items()}
    assert not {k: v for k, v in bad.items() if v}


def test_each_module_imports_alone_without_torch():
    """Each module in a process of its own, forked from an interpreter that holds no project module
    (numpy preloaded, so each fork stays cheap): it imports, and 'torch' is not in sys.modules."""
    script = f"""
import os, sys
import numpy
sys.path.insert(0, {str(ROOT)!r})
failed = []
for name in {sorted(MODULES)!r}:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException as err:
            print(name, "failed:", repr(err)); os._exit(1)
        os._exit(3 if "torch" in sys.modules else 0)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        failed.append((name, "imports torch" if code == 3 else "import error"))
print(failed)
sys.exit(1 if failed else 0)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_puzzles_source_file_is_long():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"
