"""Test-time sampling (train/trajectories.py): K trajectories per puzzle through the slot engine, the
augmentations' inverses, latent noise, the selection rules and their options.
Run: python -m pytest -q tests/test_testtime.py
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from puzzles import maze, sudoku
from puzzles.errors import run_cli
from puzzles.grid import NUM_DIHEDRAL, dihedral_index_map
from puzzles.sudoku_aug import augment, cell_order, random_augmentation
from train.config import EvalConfig
from train.infer import Answer, Engine
from train.sampling import check_options
from train.solve import main as solve_main
from train.trajectories import Samples, identity, random_frame, rule_hits, sample, select

from .test_evaluate import arc_data  # noqa: F401
from .test_infer import one_thread, puzzles, sudoku_ckpt, tiny_model  # noqa: F401
from .test_train import _keep_threads, sudoku_data, trained_run  # noqa: F401

BOX = (2, 2)  # the tiny model's 16-cell puzzles are 4x4 Sudoku: vocab 6 = pad, blank, digits 1..4
INFO = {"box": BOX}


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def x():
    grids, _ = sudoku.generate(7, box=BOX, seed=3)
    return sudoku.encode(grids).astype(np.int32)


# --- augmentations and their inverses ----------------------------------------------------------

@pytest.mark.parametrize("box", [(2, 2), (2, 3), (3, 3), (2, 4)])
def test_sudoku_frames_map_true_answers_back_to_themselves(box):
    """Property test: for random puzzles and random symmetries, the augmented answer solves the
    augmented puzzle, and the inverse maps it (and the puzzle) back exactly."""
    n = box[0] * box[1]
    grids, answers = sudoku.generate(6, box=box, seed=sum(box))
    x, y = sudoku.encode(grids).astype(np.int32), sudoku.encode(answers).astype(np.int32)
    rng = np.random.default_rng(7)
    moved = 0
    for i in range(len(x)):
        for _ in range(5):
            f = random_frame(rng, "sudoku", {"box": box}, n * n, n + 2)
            xa, ya = f.apply(x[i]), f.apply(y[i])
            assert sudoku.check(sudoku.decode(ya, n), box, puzzle=sudoku.decode(xa, n))
            assert np.array_equal(f.invert(ya), y[i]) and np.array_equal(f.invert(xa), x[i])
            moved += not np.array_equal(xa, x[i])
    assert moved >= 25  # the symmetries really move the puzzles


def test_cell_order_is_augment_without_the_digits():
    rng = np.random.default_rng(0)
    for box in [(2, 3), (3, 3)]:
        n = box[0] * box[1]
        g = rng.integers(0, n + 1, size=(n, n))
        aug = random_augmentation(rng, box)
        assert np.array_equal(augment(g, aug).ravel(), aug.digit_map[g.ravel()[cell_order(aug)]])


def test_maze_frames_are_the_dihedral_group_and_invert():
    inputs, labels = maze.generate(5, size=8, seed=2)
    rng = np.random.default_rng(1)
    seen = set()
    for x, y in zip(inputs.reshape(5, -1), labels.reshape(5, -1)):
        for _ in range(8):
            f = random_frame(rng, "maze", {}, 64, 6)
            seen.add(next(t for t in range(NUM_DIHEDRAL) if np.array_equal(f.idx, dihedral_index_map(8, 8, t))))
            xa, ya = f.apply(x), f.apply(y)
            assert maze.check_path(xa.reshape(8, 8), ya.reshape(8, 8))
            assert np.array_equal(f.invert(ya), y)
    assert len(seen) >= 6


def test_a_wrong_token_is_inverted_too():
    """Model answers may hold padding or blanks: the inverse is a bijection on every token."""
    f = random_frame(np.random.default_rng(2), "sudoku", INFO, 16, 6)
    junk = np.random.default_rng(3).integers(0, 6, size=(10, 16))
    assert np.array_equal(f.invert(f.apply(junk)), junk)


# --- the engine with K trajectories ------------------------------------------------------------

@pytest.mark.parametrize("diversity", ["aug", "noise", "both"])
def test_k1_is_todays_engine_exactly(model, x, diversity):
    plain = Engine(model, slots=3).solve(x)
    s = sample(Engine(model, slots=3, noise=0.5), x, None, 1, diversity, "sudoku", INFO)
    assert np.array_equal(s.preds[:, 0], plain.preds) and np.array_equal(s.steps[:, 0], plain.steps)
    assert np.array_equal(s.q_halt_prob[:, 0], plain.q_halt_prob)


def test_trajectory_zero_is_the_plain_pass_and_others_differ(model, x):
    plain = Engine(model, slots=4).solve(x)
    for diversity in ("aug", "noise", "both"):
        s = sample(Engine(model, slots=4, noise=1.0), x, None, 4, diversity, "sudoku", INFO)
        assert np.array_equal(s.preds[:, 0], plain.preds)
        assert not np.array_equal(s.q_halt_prob[:, 1:], np.repeat(plain.q_halt_prob[:, None], 3, 1))


def test_noise_off_leaves_the_step_bit_for_bit(model, x):
    batch = {"inputs": torch.from_numpy(x), "puzzle_identifiers": torch.zeros(len(x), dtype=torch.int32)}
    with torch.inference_mode():
        a = model.step(model.initial_carry(batch), batch, adaptive=False)
        b = model.step(model.initial_carry(batch), batch, adaptive=False, noise=None)
        c = model.step(model.initial_carry(batch), batch, adaptive=False,
                       noise=torch.zeros_like(model.initial_carry(batch).z_L))
        d = model.step(model.initial_carry(batch), batch, adaptive=False,
                       noise=torch.randn_like(model.initial_carry(batch).z_L))
    assert torch.equal(a[1], b[1]) and torch.equal(a[1], c[1]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[2], d[2])


@pytest.mark.parametrize("diversity", ["noise", "both"])
def test_same_seed_same_answers_whatever_the_slots(model, x, diversity):
    runs = [sample(Engine(model, slots=slots, pack=pack, noise=0.7), x, None, 5, diversity, "sudoku", INFO, seed=11)
            for slots, pack in ((2, True), (9, False), (40, True))]
    for r in runs[1:]:
        assert np.array_equal(r.preds, runs[0].preds) and np.array_equal(r.steps, runs[0].steps)
        np.testing.assert_allclose(r.q_halt_prob, runs[0].q_halt_prob, rtol=1e-5)  # batch size: last bits
    other = sample(Engine(model, slots=9, noise=0.7), x, None, 5, diversity, "sudoku", INFO, seed=12)
    assert not np.array_equal(other.q_halt_prob, runs[0].q_halt_prob)
    # the first k trajectories of a K-run are the k-run
    two = sample(Engine(model, slots=9, noise=0.7), x, None, 2, diversity, "sudoku", INFO, seed=11)
    assert np.array_equal(two.preds, runs[0].preds[:, :2]) and np.array_equal(two.steps, runs[0].steps[:, :2])


def test_fewer_puzzles_than_slots(model, x):
    s = sample(Engine(model, slots=128, noise=0.3), x[:2], None, 3, "both", "sudoku", INFO)
    alone = [sample(Engine(model, slots=1, noise=0.3), x[i:i + 1], None, 3, "both", "sudoku", INFO,
                    keys=np.array([i])) for i in range(2)]
    assert s.preds.shape == (2, 3, 16)
    for i in range(2):
        assert np.array_equal(s.preds[i], alone[i].preds[0]) and np.array_equal(s.steps[i], alone[i].steps[0])
    empty = sample(Engine(model, slots=4), x[:0], None, 4, "aug", "sudoku", INFO)
    assert empty.preds.shape == (0, 4, 16) and select(empty, "vote").shape == (0,)


class ShuffledEngine:
    """Stands in for Engine.run: answers each item with a fixed function of its tokens, yielding
    them in a shuffled order (a different finishing order than the queue's)."""

    def __init__(self, model, order_seed: int):
        self.model, self.noise, self.order_seed, self.max_steps = model, 0.0, order_seed, 4

    def run(self, items, batch_hint=None, record=None):
        answers = []
        for index, (tokens, _, _) in enumerate(items):
            pred = np.where(tokens == 1, 2 + tokens.sum() % 2, tokens)  # a frame-dependent answer
            answers.append(Answer(index, pred.astype(np.int32), int(1 + tokens[:3].sum() % 4),
                                  float(tokens[3:6].sum() % 7) / 7, 0.0))
        order = np.random.default_rng(self.order_seed).permutation(len(answers))
        yield from (answers[j] for j in order)


def test_selection_does_not_depend_on_the_finishing_order(model, x):
    runs = [sample(ShuffledEngine(model, seed), x, None, 6, "aug", "sudoku", INFO) for seed in range(4)]
    for rule in ("vote", "confidence", "first-halt"):
        picks = [select(r, rule) for r in runs]
        assert all(np.array_equal(p, picks[0]) for p in picks[1:])
    assert len({tuple(select(runs[0], r)) for r in ("vote", "confidence", "first-halt")}) > 1


# --- selection rules on hand-made samples ------------------------------------------------------

def hand_samples(preds, prob, steps) -> Samples:
    preds = np.array(preds, dtype=np.int32)[None, :, None]  # (1, K, 1): one puzzle, one cell
    prob = np.array(prob, dtype=np.float32)[None]
    return Samples(preds, prob, prob, np.array(steps, dtype=np.int32)[None])


def test_rules_on_a_hand_made_puzzle():
    s = hand_samples([5, 7, 7, 5, 9], [0.9, 0.2, 0.3, 0.6, 0.95], [3, 1, 2, 4, 5])
    assert select(s, "vote")[0] == 0  # 5 and 7 tie on 2 votes; 5 has the higher mean probability
    assert select(s, "confidence")[0] == 4
    assert select(s, "first-halt")[0] == 1
    ok = lambda x, p: p[:, 0] == 9  # noqa: E731 - a checker that accepts only 9
    assert select(s, "checked", np.zeros((1, 1)), ok)[0] == 4
    nobody = lambda x, p: np.zeros(len(p), bool)  # noqa: E731 - no answer passes: plain vote
    assert select(s, "checked", np.zeros((1, 1)), nobody)[0] == 0
    tie = hand_samples([4, 6], [0.5, 0.5], [2, 2])
    assert select(tie, "vote")[0] == 0 and select(tie, "first-halt")[0] == 0 and select(tie, "confidence")[0] == 0
    hits = rule_hits(s, np.array([[7]]), ignore=-100)
    assert hits["vote"].tolist() == [False] and hits["first-halt"].tolist() == [True] and hits["any"].tolist() == [True]
    assert "checked" not in hits


# --- options and the command lines -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0, diversity="aug", noise=0.1, rule="vote"), "samples must be an integer >= 1"),
    (dict(k=2, diversity="noise", noise=-0.5, rule="vote"), "noise must be a finite scale >= 0"),
    (dict(k=2, diversity="noise", noise=0.0, rule="vote"), "needs a noise scale > 0"),
    (dict(k=2, diversity="noise", noise=0.1, rule="checked", family="arc"), "checked needs a puzzle checker"),
    (dict(k=2, diversity="aug", noise=0.1, rule="vote", family="arc"), "use noise for arc"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_options(**kwargs)
    if "family" not in kwargs:  # the training config refuses the same, naming its field
        with pytest.raises(ValueError, match=f"eval.*{message}"):
            EvalConfig(samples=kwargs["k"], diversity=kwargs["diversity"], noise=kwargs["noise"], select=kwargs["rule"])


def test_engine_refuses_negative_noise(model):
    with pytest.raises(ValueError, match="noise"):
        Engine(model, noise=-1.0)
    assert identity(4, 3).invert(np.array([2, 1, 0, 2])).tolist() == [2, 1, 0, 2]


def test_cli_samples_and_its_refusals(tmp_path, sudoku_ckpt, capsys):
    ckpt, model = sudoku_ckpt
    grids, answers = sudoku.generate(4, box=BOX, seed=1)
    src = tmp_path / "p.csv"
    src.write_text("source,question,answer,rating\n" + "".join(
        f"gen,{sudoku.to_text(q)},{sudoku.to_text(a)},0\n" for q, a in zip(grids, answers)))
    args = [str(ckpt), str(src), "--dtype", "float32", "--samples", "4", "--diversity", "both", "--noise", "0.5"]
    assert run_cli(solve_main, [*args, "--select", "confidence"]) == 0
    out, err = capsys.readouterr()
    x = sudoku.encode(grids).astype(np.int32)
    s = sample(Engine(model, noise=0.5), x, None, 4, "both", "sudoku", INFO)
    want = s.preds[np.arange(4), select(s, "confidence")]
    assert out.splitlines()[1:] == ["".join(("?" + sudoku.CHARS)[t] for t in p) for p in want]
    assert "4 trajectories per puzzle (both, noise 0.5), select confidence" in err
    for bad, message in ((["--samples", "0"], "--samples must be an integer >= 1"),
                         (["--noise", "-1"], "--noise must be a finite scale >= 0")):
        assert run_cli(solve_main, [str(ckpt), str(src), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


# --- train.evaluate ----------------------------------------------------------------------------

def test_evaluate_cli_reports_every_rule(trained_run, tmp_path, capsys):
    from train.evaluate import main as evaluate_main

    def metrics(out: str, *flags: str) -> dict:
        assert run_cli(evaluate_main, [str(trained_run), "--out", str(tmp_path / out), *flags]) == 0
        lines = capsys.readouterr().out.splitlines()
        return {ln.split()[0]: float(ln.split()[1]) for ln in lines if len(ln.split()) == 2 and ln[:1] == " "}

    one = metrics("one", "--mode", "continuous")
    many = metrics("many", "--samples", "3", "--select", "confidence", "--diversity", "both", "--noise", "0.5")
    assert many["exact_single"] == pytest.approx(one["exact_accuracy"])  # trajectory 0 is the plain pass
    assert many["exact_accuracy"] == pytest.approx(many["exact_confidence"])  # the chosen rule's answers
    assert many["exact_any"] >= max(many[f"exact_{r}"] for r in ("vote", "confidence", "first_halt", "checked"))
    assert many["steps_all"] == pytest.approx(3 * one["steps"], rel=0.5)
    assert run_cli(evaluate_main, [str(trained_run), "--out", str(tmp_path / "bad"), "--samples", "0"]) == 2
    err = capsys.readouterr().err
    assert "--samples must be an integer >= 1" in err and err.count("\n") == 1


def test_checked_and_augmentation_need_a_checkable_family(arc_data):
    from puzzles.dataset import load_split
    from train.errors import TrainError
    from train.evaluation import evaluate_split
    split = load_split(arc_data, "test")
    for cfg, message in ((EvalConfig(samples=2, diversity="noise", select="checked"), "checked needs a puzzle checker"),
                         (EvalConfig(samples=2, diversity="aug"), "use noise for arc")):
        with pytest.raises(TrainError, match=message):  # before any model work: the model is never touched
            evaluate_split(None, split, cfg, None, arc_data, None, 4)


def test_bench_sampling_table_and_derive(tmp_path, sudoku_ckpt, sudoku_data, capsys):
    import json

    from bench.inference import main as bench_main
    ckpt, _ = sudoku_ckpt
    args = ["--checkpoint", str(ckpt), "--data", str(sudoku_data), "--skip-modes", "--samples", "1,3",
            "--diversity", "aug,both", "--noise", "0.5", "--max-examples", "6", "--dtype", "float32", "--threads", "1"]
    tables = {}
    for name, extra in (("each", []), ("derived", ["--derive"])):
        assert run_cli(bench_main, [*args, *extra, "--json", str(tmp_path / f"{name}.json")]) == 0
        tables[name] = json.loads((tmp_path / f"{name}.json").read_text())["sampling"]
    key = lambda r: (r["diversity"], r["samples"])  # noqa: E731
    each, derived = sorted(tables["each"], key=key), sorted(tables["derived"], key=key)
    assert [key(r) for r in each] == [("aug", 1), ("aug", 3), ("both", 1), ("both", 3)] == [key(r) for r in derived]
    for a, b in zip(each, derived):  # K=1 scored on the K=3 run's first trajectory: the same answers
        assert {k: v for k, v in a.items() if k.startswith("exact_")} == {k: v for k, v in b.items() if k.startswith("exact_")}
    assert all(r["steps_per_puzzle"] > 0 and r["puzzles_per_s"] > 0 for r in each)
    assert "| both | 3 |" in capsys.readouterr().out
    assert run_cli(bench_main, [*args, "--samples", "0"]) == 2
    err = capsys.readouterr().err
    assert "--samples must be an integer >= 1" in err and err.count("\n") == 1
