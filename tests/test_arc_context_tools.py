"""The dataset browser, the evaluation report and the ARC baselines on in-context ARC datasets
(`--context K`): demonstrations and query drawn in their places, the copy baseline on the query slot.
Run: python -m pytest -q tests/test_arc_context_tools.py
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import arc_baselines
from puzzles import show
from puzzles.dataset import load_split
from puzzles.errors import UserError, run_cli
from puzzles.render import render
from train import visualize
from train.presets import PRESETS
from train.report import write_report

from .runs_fixture import make_run
from .test_arc_context import CANVAS, K, SLOTS, TINY_ARC, build
from .test_train import TINY, _keep_threads  # noqa: F401  (_keep_threads: an autouse fixture)

ONE = {"family": "arc", "canvas": CANVAS}  # the spec of one slot's grid


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(np.int16)


def places(big: Image.Image, small: Image.Image) -> list[tuple[int, int]]:
    """Every (x, y) at which `small` appears, pixel for pixel, inside `big`."""
    b, s = pixels(big), pixels(small)
    h, w = s.shape[:2]
    if h > b.shape[0] or w > b.shape[1]:
        return []
    ys, xs = np.nonzero(np.all(b[:b.shape[0] - h + 1, :b.shape[1] - w + 1] == s[0, 0], axis=-1))
    return [(int(x), int(y)) for y, x in zip(ys, xs)
            if np.array_equal(b[y, x:x + w], s[0]) and np.array_equal(b[y:y + h, x:x + w], s)]


def in_order(big: Image.Image, grids: list[Image.Image]) -> bool:
    """Whether the pictures `grids` appear in `big` from left to right, in this order."""
    x = -1
    for grid in grids:
        xs = [p[0] for p in places(big, grid) if p[0] > x]
        if not xs:
            return False
        x = min(xs)
    return True


def slot(row: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(row).reshape(SLOTS, -1)[k]


def draw(tokens: np.ndarray, target: np.ndarray | None = None) -> Image.Image:
    return render("arc", tokens, meta=ONE, target=target)


EMPTY = draw(np.zeros(CANVAS * CANVAS, np.uint8))  # what an all-PAD slot would be drawn as


@pytest.fixture(scope="module")
def context_data(tmp_path_factory) -> Path:
    """The three tiny fixture tasks on a 6x6 canvas, 3 augmented copies each, K = 2 demonstrations in context."""
    return build(tmp_path_factory.mktemp("arc") / "arc-context", "--context", str(K))


@pytest.fixture(scope="module")
def context_run(context_data, tmp_path_factory) -> Path:
    """A 3-step run trained and evaluated on the in-context dataset."""
    from train.cli import main
    run = tmp_path_factory.mktemp("run") / "run"
    argv = ["--model", "trm", *TINY, "optim.max_steps=3", "arch.puzzle_emb_ndim=0", "arch.puzzle_emb_len=0",
            "arch.pos_encodings=rope3d", f"data.path={context_data}", f"system.run_dir={run}"]
    assert run_cli(lambda a: main("arc", a), argv) == 0
    return run


def cli(main, argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- the dataset browser ------------------------------------------------------------------------------
def test_browser_draws_the_demonstrations_then_the_query(context_data, tmp_path, capsys):
    out = tmp_path / "browser"
    code, stdout, _ = cli(show.main, [str(context_data), "--split", "all", "--out", str(out)], capsys)
    assert code == 0 and stdout.strip() == str(out / "index.html")
    assert len(re.findall(r'class="item"', (out / "index.html").read_text())) == 12 + 12  # puzzles of both splits
    spec = {**ONE, "context": K, "slots": SLOTS}
    short = 0
    for name in ("train", "test"):
        split = load_split(context_data, name)
        inputs, labels = split.examples(np.arange(len(split)))
        for p in split.group_indices[:-1]:  # each task's first puzzle, its first example
            row = int(split.puzzle_indices[p])
            x, y = inputs[row], labels[row]
            demos = [k for k in range(0, SLOTS - 2, 2) if slot(x, k).any()]
            short += len(demos) < K
            # the demonstrations (both grids of each), then the query input and its answer
            expected = [draw(slot(x, k + j)) for k in demos for j in (0, 1)] + [draw(slot(x, -2)), draw(slot(y, -1))]
            picture = Image.open(out / f"{name}_p{p}.png")
            assert in_order(picture, expected), (name, p)
            assert not places(picture, EMPTY)  # no PAD pair slot drawn
            assert in_order(show.example_image(spec, x, y), expected)
    assert short  # in train, the task with 2 demonstration pairs has 1 in context: its first pair slot is PAD


# --- the evaluation report ----------------------------------------------------------------------------
def test_report_sheet_shows_the_query_its_answer_and_the_prediction(context_data, tmp_path):
    split = load_split(context_data, "test")
    inputs, labels = split.examples(np.arange(len(split)))
    ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
    wrong = np.arange(len(inputs)) % 3 == 0
    meta = {"canvas": CANVAS, "context": K, "slots": SLOTS}
    run = make_run(tmp_path / "run", "arc", inputs, labels, wrong, ids, dataset=context_data, extra_meta=meta)
    index = write_report(run)
    html = index.read_text()
    assert re.findall(r'<div class="item (right|wrong)"', html) == ["wrong" if w else "right" for w in wrong]
    assert html.count("demonstrations (in the input)") == len(inputs) and "no demonstrations" not in html
    with np.load(run / "eval" / "test" / "predictions.npz") as saved:
        preds = saved["preds"]
    for row in (0, 1):  # a wrong one, a right one
        x, y, pred = inputs[row], labels[row], preds[row]
        sheet = Image.open(index.parent / f"sheet_{row}.png")
        query, answer = slot(x, -2), slot(y, -1)
        assert in_order(sheet, [draw(query), draw(answer), draw(slot(pred, -1), target=answer)]), row
        assert sheet.height < 2 * draw(answer).height + 80  # one row of grids, not the slots stacked
        assert not places(sheet, EMPTY)
        strip = Image.open(index.parent / f"strip_{row}.png")  # the query-output slot after every step
        assert places(strip, draw(slot(pred, -1), target=answer)), row
        assert (index.parent / f"context_{row}.png").is_file()
    # rows that are not the slots meta.json names: one line
    meta_path = run / "eval" / "test" / "meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "slots": SLOTS - 2, "context": K - 1}))
    with pytest.raises(UserError, match="4 slots of a 6x6 canvas"):
        write_report(run, force=True)


def test_visualize_draws_a_trained_in_context_run(context_run, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = cli(visualize.main, [str(context_run), "--out", str(out), "--n", "3"], capsys)
    assert code == 0 and stdout.strip() == str(out / "index.html"), err
    with np.load(context_run / "eval" / "test" / "predictions.npz") as saved:
        x, y = saved["inputs"][0], saved["labels"][0]
    assert x.shape == (SLOTS * CANVAS * CANVAS,)  # the evaluator keeps whole rows; the report picks the query
    assert in_order(Image.open(out / "sheet_0.png"), [draw(slot(x, -2)), draw(slot(y, -1))])


# --- the ARC baselines --------------------------------------------------------------------------------
def identity_tasks(folder: Path) -> str:
    """The fixture's tasks with every output replaced by its input (copying the input is right)."""
    for subset in ("training", "evaluation"):
        challenges = json.loads(Path(f"{TINY_ARC}_{subset}_challenges.json").read_text())
        for task in challenges.values():
            for pair in task["train"]:
                pair["output"] = pair["input"]
        solutions = {name: [t["input"] for t in task["test"]] for name, task in challenges.items()}
        (folder / f"same_{subset}_challenges.json").write_text(json.dumps(challenges))
        (folder / f"same_{subset}_solutions.json").write_text(json.dumps(solutions))
    return str(folder / "same")


def small(arch_of):
    """`untrained_arch`, shrunk to a few-second model (its in-context changes kept)."""
    return lambda model, slots: dataclasses.replace(arch_of(model, slots), hidden_size=32, num_heads=2, L_layers=1,
                                                    H_cycles=1, L_cycles=1, halt_max_steps=2)


def test_copy_baseline_copies_the_query_input_and_the_models_read_in_context_rows(
        context_data, context_run, tmp_path, capsys, monkeypatch):
    plain = PRESETS["quick"]("arc", "trm").arch
    assert arc_baselines.untrained_arch("trm", 0) == plain
    in_context = arc_baselines.untrained_arch("trm", SLOTS)
    assert (in_context.pos_encodings, in_context.puzzle_emb_ndim, in_context.puzzle_emb_len) == ("rope3d", 0, 0)
    monkeypatch.setattr(arc_baselines, "untrained_arch", small(arc_baselines.untrained_arch))
    folder = tmp_path / "tasks"
    folder.mkdir()
    import puzzles.build as builder
    same = tmp_path / "same"
    assert builder.main(["arc", "--prefix", identity_tasks(folder), "--canvas", str(CANVAS), "--aug", "1",
                         "--test-set", "training", "evaluation", "--out", str(same), "--no-progress",
                         "--context", str(K)]) in (0, None)
    figures = {}
    for name, data, more in (("same", same, []), ("tiny", context_data, ["--checkpoint", str(context_run)])):
        code, out, err = cli(arc_baselines.main, [str(data), "--out", str(tmp_path / f"{name}.json"), *more], capsys)
        assert code == 0, err
        assert f"{K} demonstration pairs in context" in out.splitlines()[0]
        figures[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert figures["same"]["copy"]["all"] == {"pass@1": 1.0, "pass@2": 1.0}  # the answer is the query input
    assert figures["tiny"]["copy"]["all"] == {"pass@1": 0.0, "pass@2": 0.0}  # every answer differs from it
    for rows in (figures["same"], figures["tiny"]):
        assert 0 <= rows["untrained-trm"]["all"]["pass@1"] <= 1
    assert 0 <= figures["tiny"]["checkpoint"]["all"]["pass@2"] <= 1
    rows = np.zeros((2, SLOTS * 4), np.uint8)
    rows[:, 4 * (SLOTS - 2):4 * (SLOTS - 1)] = 7
    copied = arc_baselines.copy_predictions(rows, SLOTS)
    assert (copied.reshape(2, SLOTS, 4)[:, -1] == 7).all() and (rows.reshape(2, SLOTS, 4)[:, -1] == 0).all()


# --- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("tool", ["show", "visualize", "baselines"])
def test_a_folder_that_is_no_dataset_or_run_is_one_line(tool, tmp_path, capsys):
    main = {"show": show.main, "visualize": visualize.main, "baselines": arc_baselines.main}[tool]
    code, _, err = cli(main, [str(tmp_path)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
