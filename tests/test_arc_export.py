"""`python -m puzzles.arc.export`: ARC tasks of any source as a Kaggle challenges + solutions pair
that `train.solve` and the dataset builder read back.
Run: python -m pytest -q tests/test_arc_export.py
"""
from __future__ import annotations

import json

import numpy as np

from puzzles import arc
from puzzles.arc.export import main as export_main
from puzzles.errors import run_cli

from .test_arc_keying import TINY_ARC
from .test_bad_inputs import fails


def test_export_round_trips_through_the_readers(tmp_path, capsys):
    """The written pair loads back (as a Kaggle prefix, and through train.solve's readers) as the same tasks."""
    src = arc.load_subset(TINY_ARC, "evaluation")
    assert run_cli(export_main, ["--source", str(TINY_ARC), "--subset", "evaluation",
                                 "--out", str(tmp_path / "x_evaluation")]) == 0
    assert "test inputs" in capsys.readouterr().out
    back = arc.load_subset(str(tmp_path / "x"), "evaluation")
    assert sorted(back) == sorted(src)
    for tid, task in src.items():
        for (i, o), (i2, o2) in zip(task.train + task.test, back[tid].train + back[tid].test):
            assert np.array_equal(i, i2) and np.array_equal(o, o2)
    raw = arc.read_task_file(tmp_path / "x_evaluation_challenges.json")
    assert all("output" not in ex for t in raw.values() for ex in t["test"])  # answers only in the solutions file
    sols = arc.read_solutions(tmp_path / "x_evaluation_solutions.json")
    assert {tid: len(s) for tid, s in sols.items()} == {tid: len(t.test) for tid, t in src.items()}


def test_canvas_and_tasks_select(tmp_path, capsys):
    """--canvas keeps exactly the tasks whose grids all fit; --tasks keeps the first N by id."""
    src = arc.load_tasks(TINY_ARC, ["training", "evaluation"])
    sizes = {tid: max(max(g.shape) for p in t.train + t.test for g in p) for tid, t in src.items()}
    canvas = sorted(sizes.values())[0]
    for subset in ("training", "evaluation"):
        out = tmp_path / f"c_{subset}"
        assert run_cli(export_main, ["--source", str(TINY_ARC), "--subset", subset,
                                     "--canvas", str(canvas), "--out", str(out)]) in (0, 2)
    written = {}
    for p in tmp_path.glob("c_*_challenges.json"):
        written |= json.loads(p.read_text())
    assert sorted(written) == sorted(tid for tid, s in sizes.items() if arc.fits((s, s), canvas))
    assert run_cli(export_main, ["--source", str(TINY_ARC), "--subset", "training", "--tasks", "1",
                                 "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one_challenges.json").read_text())
    assert list(one) == sorted(arc.load_subset(TINY_ARC, "training"))[:1]


def test_bad_options_and_existing_files(tmp_path, capsys):
    """Bad values are one-line errors; an existing file is kept unless --force."""
    base = ["--source", str(TINY_ARC), "--subset", "evaluation"]
    fails(export_main, base + ["--canvas", "1", "--out", str(tmp_path / "a")], capsys, "canvas", roots=(tmp_path,))
    fails(export_main, base + ["--tasks", "0", "--out", str(tmp_path / "a")], capsys, "--tasks", roots=(tmp_path,))
    fails(export_main, ["--source", str(TINY_ARC), "--subset", "nope", "--out", str(tmp_path / "a")], capsys,
          "nope", roots=(tmp_path,))
    fails(export_main, base + ["--canvas", "2", "--out", str(tmp_path / "a")], capsys, "no task fits",
          roots=(tmp_path,))
    (tmp_path / "b_challenges.json").write_text("mine")
    fails(export_main, base + ["--out", str(tmp_path / "b")], capsys, "--force", roots=(tmp_path,))
    assert (tmp_path / "b_challenges.json").read_text() == "mine"
    assert run_cli(export_main, base + ["--out", str(tmp_path / "b"), "--force"]) == 0
    assert json.loads((tmp_path / "b_challenges.json").read_text())
