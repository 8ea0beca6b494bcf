"""Evaluation report, curves, dataset browser and their CLIs; the page in headless Chromium.

    python -m pytest -q tests/test_report.py
The browser test saves screenshots under tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puzzles import show
from puzzles.errors import UserError, run_cli
from tests import browser
from tests.runs_fixture import REF_DATASETS, arc_run, maze_run, sudoku_run
from train import curves, visualize
from train.report import find_run, write_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def local_refs(index: Path) -> list[str]:
    html = index.read_text()
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_sudoku_report_is_self_contained(tmp_path):
    run, wrong = sudoku_run(tmp_path / "run")
    index = write_report(run, n=32)
    assert index == run / "eval" / "test" / "report" / "index.html"
    html = index.read_text()
    refs = local_refs(index)
    assert refs and all("://" not in r and not r.startswith("/") for r in refs)
    assert all((index.parent / r).is_file() for r in refs)
    assert "curves.png" in refs
    classes = re.findall(r'<div class="item (right|wrong)"', html)
    assert classes == ["wrong" if w else "right" for w in wrong]       # all 5 shown, in order
    assert re.search(r'id="wrong-only"', html) and re.search(r'id="key-filter"', html)
    assert not list(index.parent.parent.glob(".report*"))               # no temp dir left behind


def test_maze_report_and_missing_dataset_note(tmp_path):
    run, wrong = maze_run(tmp_path / "run")
    html = write_report(run).read_text()
    assert re.findall(r'<div class="item (right|wrong)"', html) == ["wrong" if w else "right" for w in wrong]
    assert '<option value="maze">' in html
    arc, _ = arc_run(tmp_path / "arc")
    meta_path = arc / "eval" / "test" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["dataset"] = str(tmp_path / "gone")
    meta_path.write_text(json.dumps(meta))
    html = write_report(arc).read_text()
    assert "no demonstrations: dataset" in html and "gone not found" in html


def rewrite_npz(run: Path, change) -> None:
    path = run / "eval" / "test" / "predictions.npz"
    with np.load(path) as data:
        arrays = change({k: data[k] for k in data.files})
    np.savez_compressed(path, **arrays)


def test_report_uses_evaluator_extras_and_handles_no_rows(tmp_path):
    run, _ = sudoku_run(tmp_path / "run")
    # train.evaluate also saves the example row ("index") and the steps actually run
    rewrite_npz(run, lambda a: a | {"index": np.arange(10, 15), "steps_run": a["steps"]})
    html = write_report(run).read_text()
    assert re.findall(r"<h3>#(\d+)", html) == ["10", "11", "12", "13", "14"]
    empty, _ = sudoku_run(tmp_path / "empty")
    rewrite_npz(empty, lambda a: {k: v[:, :0] if k in ("step_preds", "q_halt") else v[:0] for k, v in a.items()})
    html = write_report(empty).read_text()
    assert "no predictions were saved" in html and 'class="item ' not in html
    rewrite_npz(run, lambda a: a | {"steps": a["steps"][:2]})
    with pytest.raises(UserError, match=r"predictions.npz: steps has shape \(2,\), expected \(5,\)"):
        write_report(run, force=True)


def test_report_n_spreads_over_rows(tmp_path):
    run, _ = sudoku_run(tmp_path / "run")
    html = write_report(run, n=2).read_text()
    assert re.findall(r"<h3>#(\d+)", html) == ["0", "4"]


def test_arc_report_has_tasks_and_demonstrations(tmp_path):
    run, wrong = arc_run(tmp_path / "run")
    index = write_report(run)
    html = index.read_text()
    names = json.loads((REF_DATASETS / "arc-tiny-aug-2" / "identifiers.json").read_text())
    assert '<option value="25ff71a9">' in html
    demos = sorted(index.parent.glob("demos_*.png"))
    expected = {names.index(n) for n in names if n.startswith("25ff71a9")}   # the task and its 2 copies
    assert {int(p.stem.split("_")[1]) for p in demos} == expected
    assert len(re.findall(r'class="item wrong"', html)) == int(wrong.sum())


def test_checkpoint_path_resolves_to_run(tmp_path):
    run, _ = sudoku_run(tmp_path / "run")
    ckpt = run / "checkpoints" / "step_50.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert find_run(ckpt) == run
    flat = run / "last.pt"
    flat.write_bytes(b"x")
    assert find_run(flat) == run


def cli(main, argv, capsys) -> tuple[int, str, str]:
    code = run_cli(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_visualize_cli_prints_path_and_refuses_overwrite(tmp_path, capsys):
    run, _ = sudoku_run(tmp_path / "run")
    out = tmp_path / "site"
    code, stdout, _ = cli(visualize.main, [str(run), "--out", str(out), "--n", "3"], capsys)
    assert code == 0 and stdout.strip() == str(out / "index.html")
    assert len(re.findall(r'class="item ', (out / "index.html").read_text())) == 3
    code, _, err = cli(visualize.main, [str(run), "--out", str(out)], capsys)
    assert code == 2 and "already exists" in err and "--force" in err
    code, _, _ = cli(visualize.main, [str(run), "--out", str(out), "--force"], capsys)
    assert code == 0 and len(re.findall(r'class="item ', (out / "index.html").read_text())) == 5


@pytest.mark.parametrize("case", ["no_predictions", "no_run", "out_under_file", "bad_split"])
def test_visualize_cli_errors_are_one_line(tmp_path, capsys, case):
    run, _ = sudoku_run(tmp_path / "run")
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    argv = {"no_predictions": [str(tmp_path)], "no_run": [str(tmp_path / "missing")],
            "out_under_file": [str(run), "--out", str(a_file / "site")],
            "bad_split": [str(run), "--split", "valid"]}[case]
    code, _, err = cli(visualize.main, argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    expected = {"no_predictions": "no predictions", "no_run": "no such run",
                "out_under_file": "file.txt is not a directory", "bad_split": "evaluated splits: test"}[case]
    assert expected in lines[0]


def test_visualize_module_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train.visualize", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_curves_read_and_plot(tmp_path):
    run, _ = sudoku_run(tmp_path / "run")
    rows = curves.read_metrics(run / "metrics.jsonl")
    assert rows[0]["step"] == 0 and len(rows) == 11
    data = curves.series(rows)
    assert data["train/lr"][0][:3] == [0, 5, 10] and data["eval/exact_accuracy"][0] == [50]
    png = curves.plot_curves(rows, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\n{"step": 2, oops}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        curves.read_metrics(tmp_path / "bad.jsonl")


def test_curves_compare_runs_and_refuse_bad_labels(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 10, "train/lm_loss": 1.0}, {"step": 20, "eval/exact_accuracy": 0.5, "time/train_seconds": 3.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli(curves.main, [str(run), str(tmp_path), "--out", str(tmp_path / "y.png")], capsys)
    assert code == 2 and "no such metrics file" in err
    code, out, _ = cli(curves.main, [str(run), str(run), "--labels", "a,b", "--out", str(tmp_path / "cmp.png")], capsys)
    assert code == 0 and (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = cli(curves.main, [str(run), str(run), "--labels", "a", "--out", str(tmp_path / "x.png")], capsys)
    assert code == 2 and err.strip() == "error: --labels has 1 names for 2 runs"
    code, _, err = cli(curves.main, [str(run), str(run)], capsys)
    assert code == 2 and "need --out" in err and not (tmp_path / "x.png").exists()
    arc_rows = rows + [{"step": 30, "eval/pass@2": 0.1, "eval/train_exact_accuracy": 0.2, "time/train_seconds": 5.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in arc_rows))
    code, _, _ = cli(curves.main, [str(run), str(run), "--metric", "eval/pass@2, eval/train_exact_accuracy",
                                   "--out", str(tmp_path / "arc.png")], capsys)
    assert code == 0 and (tmp_path / "arc.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = cli(curves.main, [str(run), str(run), "--metric", "eval/pass@2,eval/nope",
                                     "--out", str(tmp_path / "z.png")], capsys)
    assert code == 2 and "no rows with time/train_seconds and eval/nope" in err and not (tmp_path / "z.png").exists()


def test_dataset_browser_groups_copies(tmp_path, capsys):
    out = tmp_path / "browser"
    ds = REF_DATASETS / "sudoku-tiny-aug-2"
    code, stdout, _ = cli(show.main, [str(ds), "--split", "all", "--out", str(out)], capsys)
    assert code == 0 and stdout.strip() == str(out / "index.html")
    html = (out / "index.html").read_text()
    groups = re.findall(r'<div class="group"><h3>group \d+: (\d+) puzzle', html)
    # train: 5 groups of original + 2 augmented copies; test: 5 single puzzles
    assert groups == ["3"] * 5 + ["1"] * 5
    assert all((out / r).is_file() for r in local_refs(out / "index.html"))


@pytest.mark.parametrize("case", ["not_dataset", "out_under_file"])
def test_dataset_browser_errors(tmp_path, capsys, case):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    argv = {"not_dataset": [str(tmp_path), "--out", str(tmp_path / "b")],
            "out_under_file": [str(REF_DATASETS / "arc-tiny-aug-2"), "--out", str(a_file / "b")]}[case]
    code, _, err = cli(show.main, argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert ("not a dataset" if case == "not_dataset" else "is not a directory") in err


def test_report_in_headless_chromium(tmp_path):
    """Open the report from disk: no console/script errors, all puzzles shown, #wrong filters."""
    run, wrong = arc_run(tmp_path / "run")
    index = write_report(run)
    url = index.resolve().as_uri()
    profile = tmp_path / "profile"
    dom, console = browser.dump_dom(url, profile)
    assert 'data-loaded="1"' in dom, "the page's load event did not run"
    assert browser.page_errors(dom) == "" and console == []
    shown = [c for c, hidden in browser.items(dom) if not hidden]
    assert len(shown) == len(wrong) and f"{len(wrong)} of {len(wrong)}" in dom
    dom, console = browser.dump_dom(url + "#wrong", profile)
    assert browser.page_errors(dom) == "" and console == []
    shown = [c for c, hidden in browser.items(dom) if not hidden]
    assert shown == ["wrong"] * int(wrong.sum()) and 0 < len(shown) < len(wrong)
    dom, _ = browser.dump_dom(url + "#key=no-such-task", profile)   # unknown task: falls back to all
    assert len([1 for _, hidden in browser.items(dom) if not hidden]) == len(wrong)
    shutil.rmtree(ARTIFACTS / "report", ignore_errors=True)
    shutil.copytree(index.parent, ARTIFACTS / "report")
    browser.screenshot(url + "#wrong", profile, ARTIFACTS / "report_wrong_only.png")


def test_chromium_check_catches_a_broken_page(tmp_path):
    """The error channel the report test relies on does report a missing image and a script error."""
    run, _ = sudoku_run(tmp_path / "run")
    index = write_report(run, n=2)
    (index.parent / "sheet_0.png").unlink()
    index.write_text(index.read_text().replace("</body>", "<script>undefinedFunction();</script></body>"))
    dom, console = browser.dump_dom(index.resolve().as_uri(), tmp_path / "profile")
    errors = browser.page_errors(dom)
    assert "image failed to load: sheet_0.png" in errors and "undefinedFunction" in errors
    assert any("Uncaught" in line for line in console)


def test_dataset_browser_in_headless_chromium(tmp_path):
    index = show.write_browser(REF_DATASETS / "arc-tiny-aug-2", split="all", out=tmp_path / "b")
    url = index.resolve().as_uri()
    dom, console = browser.dump_dom(url, tmp_path / "profile")
    assert browser.page_errors(dom) == "" and console == [] and 'data-loaded="1"' in dom
    assert len(browser.items(dom)) == 12                         # 9 train puzzles + 3 test copies
    dom, _ = browser.dump_dom(url + "#key=test", tmp_path / "profile")
    assert len([1 for _, hidden in browser.items(dom) if not hidden]) == 3
    browser.screenshot(url, tmp_path / "profile", ARTIFACTS / "dataset_browser.png")
