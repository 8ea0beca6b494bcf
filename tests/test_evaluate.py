"""Evaluation: ARC voting through the evaluator, puzzle checkers, fixed vs adaptive halting, and the
`python -m train.evaluate` command on runs and on reference weights.
Run: python -m pytest -q tests/test_evaluate.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import HaltingModel
from puzzles.dataset import load_split
from puzzles.errors import run_cli
from train.config import EvalConfig
from train.evaluate import main
from train.evaluation import evaluate_split
from train.setup import System

from .test_train import _keep_threads, build_sudoku, sudoku_data, tiny_cfg, trained_run  # noqa: F401

CPU = System(device=torch.device("cpu"), dtype=torch.float32, compile=False)
ARC_INPUTS = "datasets/inputs/arc/arc-tiny"


class Oracle(torch.nn.Module):
    """Stands in for a model in the evaluator: answers `answer(batch)` (dataset tokens) at every step
    and wants to halt from step `halt_at(batch)` on (q_halt +1, else -1). The evaluator's engine
    passes inputs and puzzle identifiers only; the oracle looks up each row's labels in the split
    (`learn`), so `answer` may read batch["labels"]."""

    def __init__(self, vocab: int, steps: int, answer, halt_at=None):
        super().__init__()
        self.config = SimpleNamespace(halt_max_steps=steps, halt_rule="q_halt", vocab_size=vocab, total_len=1,
                                      hidden_size=1, dtype=torch.float32)
        self.vocab, self.answer = vocab, answer
        self.halt_at = halt_at or (lambda batch: torch.full_like(batch["puzzle_identifiers"], steps))

    def learn(self, split) -> None:
        """The labels of every (inputs, puzzle identifier) row of `split`; its shape for the engine."""
        inputs, labels = split.examples(np.arange(len(split)))
        ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
        self.table = {(x.tobytes(), int(i)): y for x, i, y in zip(inputs, ids, labels)}
        self.config.seq_len = int(split.meta["seq_len"])
        self.config.num_puzzle_identifiers = int(split.meta.get("num_puzzle_identifiers", 1))

    wants_halt = HaltingModel.wants_halt  # the real rule: it reads only config.halt_rule

    def step(self, carry, batch, adaptive=None, noise=None):
        labels = [self.table[(x.tobytes(), int(i))] for x, i in zip(batch["inputs"].numpy(),
                                                                   batch["puzzle_identifiers"].numpy())]
        batch = {**batch, "labels": torch.from_numpy(np.stack(labels)).long()}
        steps = torch.where(carry.halted, 0, carry.steps) + 1  # halted rows restart, as the wrapper does
        wants = steps >= self.halt_at(batch)
        q_halt = torch.where(wants, 1.0, -1.0)
        halted = (steps >= self.config.halt_max_steps) | (wants & bool(adaptive))
        logits = F.one_hot(self.answer(batch).long(), self.vocab).float()
        return SimpleNamespace(z_H=carry.z_H, z_L=carry.z_L, steps=steps, halted=halted), logits, q_halt, -q_halt


def labels_of(batch):
    return batch["labels"].clamp(min=0)  # the dataset's labels (0 = PAD)


def evaluate(model, data: Path, out: Path | None = None, mode: str = "fixed", batch_size: int = 4,
             threshold: float = 0.0) -> dict:
    if isinstance(model, Oracle):
        model.learn(load_split(data, "test"))
    return evaluate_split(model, load_split(data, "test"), EvalConfig(mode=mode, threshold=threshold), CPU, data,
                          out, batch_size)


# --- ARC -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arc_data(tmp_path_factory, reference_dir) -> Path:
    from puzzles.build import main as build_main
    out = tmp_path_factory.mktemp("arc") / "arc-aug"
    build_main(["arc", "--prefix", str(reference_dir / ARC_INPUTS), "--aug", "6", "--out", str(out), "--no-progress"])
    return out


def test_arc_true_answers_under_augmentation_pass(arc_data, reference_dir, tmp_path):
    split = load_split(arc_data, "test")
    names = json.loads((arc_data / "identifiers.json").read_text())
    augmented = {names[i] for i in split.puzzle_identifiers if "|||" in names[i]}
    assert len(augmented) >= 4  # most test rows are rotated / recoloured copies
    metrics = evaluate(Oracle(12, 2, labels_of), arc_data, tmp_path)
    assert metrics["exact_accuracy"] == 1.0 and metrics["pass@1"] == 1.0 and metrics["pass@2"] == 1.0
    submission = json.loads((tmp_path / "submission.json").read_text())
    solutions = json.loads((reference_dir / f"{ARC_INPUTS}_evaluation_solutions.json").read_text())
    assert submission.keys() == solutions.keys()
    for task, answers in solutions.items():  # Kaggle layout: per task, per test input, two attempts
        assert len(submission[task]) == len(answers)
        for entry, answer in zip(submission[task], answers):
            assert set(entry) == {"attempt_1", "attempt_2"}
            assert entry["attempt_1"] == answer == entry["attempt_2"]  # one distinct vote: repeated


def test_arc_wrong_answers_score_zero(arc_data, tmp_path):
    def shifted(batch):  # every colour c -> c + 1 (mod 10): a wrong grid of the right shape
        y = labels_of(batch)
        return torch.where(y >= 2, (y - 2 + 1) % 10 + 2, y)

    metrics = evaluate(Oracle(12, 2, shifted), arc_data, tmp_path)
    assert metrics["exact_accuracy"] == 0.0
    assert all(metrics[f"pass@{k}"] == 0.0 for k in (1, 2, 1000))
    submission = json.loads((tmp_path / "submission.json").read_text())
    assert all(len(v) == 2 for v in submission.values())


def test_arc_answer_shape_comes_from_the_prediction(arc_data):
    """The right cells with the EOS border predicted as colour crop to a larger grid: a wrong answer."""
    def oversized(batch):
        y = labels_of(batch).reshape(-1, 30, 30).clone()
        y[y == 1] = 2  # the EOS border becomes colour 0 cells: the crop grows past the true grid
        return y.reshape(-1, 900)

    metrics = evaluate(Oracle(12, 1, oversized), arc_data)
    assert metrics["pass@1"] == 0.0


# --- Sudoku / maze checkers --------------------------------------------------------------------
@pytest.fixture(scope="module")
def maze_data(tmp_path_factory) -> Path:
    from puzzles.build import main as build_main
    out = tmp_path_factory.mktemp("maze") / "maze-8"
    # min-path 4: S never next to G, so an unsolved maze (no path drawn) is never a solution
    build_main(["maze", "--preset", "tiny", "--min-path", "4", "--out", str(out), "--no-progress"])
    return out


@pytest.mark.parametrize("family", ["sudoku", "maze"])
def test_valid_solution_on_labels_and_inputs(family, sudoku_data, maze_data):
    data = sudoku_data if family == "sudoku" else maze_data
    n_tokens = load_split(data, "test").meta["vocab_size"]
    right = evaluate(Oracle(n_tokens, 2, labels_of), data)
    assert right["valid_solution"] == 1.0 and right["exact_accuracy"] == 1.0 and right["count"] == 10
    unsolved = evaluate(Oracle(n_tokens, 2, lambda b: b["inputs"]), data)
    assert unsolved["valid_solution"] == 0.0 and unsolved["exact_accuracy"] == 0.0


def test_sudoku_checker_needs_the_clues(sudoku_data):
    """Swapping two digits everywhere keeps the Sudoku rules but contradicts the givens."""
    def swapped(batch):
        y = labels_of(batch)
        return torch.where(y == 2, 3, torch.where(y == 3, 2, y))

    metrics = evaluate(Oracle(6, 1, swapped), sudoku_data)
    assert metrics["valid_solution"] == 0.0 and metrics["exact_accuracy"] == 0.0


# --- fixed vs adaptive --------------------------------------------------------------------------
def test_fixed_and_adaptive_step_counts(sudoku_data, tmp_path):
    K = 4
    def halt_at(batch):  # a different halting step per example, from its clues
        return batch["inputs"].sum(-1) % K + 1

    split = load_split(sudoku_data, "test")
    inputs, _ = split.examples(np.arange(len(split)))
    expected = inputs.sum(-1) % K + 1
    assert len(set(expected.tolist())) > 1
    for mode in ("fixed", "adaptive"):
        out = tmp_path / mode
        metrics = evaluate(Oracle(6, K, labels_of, halt_at), sudoku_data, out, mode=mode)
        pred = np.load(out / "predictions.npz")
        np.testing.assert_array_equal(pred["steps"], expected)  # where the halting head said stop
        run = np.full(10, K) if mode == "fixed" else expected
        np.testing.assert_array_equal(pred["steps_run"], run)
        assert metrics["steps"] == pytest.approx(run.mean()) and metrics["halt_steps"] == pytest.approx(expected.mean())
        assert metrics["exact_accuracy"] == 1.0 and metrics["q_halt_accuracy"] == 1.0
        # after a row finishes, the recorded per-step answer and halting probability stay frozen
        assert pred["step_preds"].shape == (K, 10, 16)
        for row, stop in enumerate(run):
            assert (pred["step_preds"][stop - 1:, row] == pred["preds"][row]).all()
            assert len(set(pred["q_halt"][stop - 1:, row].tolist())) == 1


def test_adaptive_mode_with_a_real_model(sudoku_data):
    from models import MODELS, ModelConfig
    model = MODELS["trm-mlp"](ModelConfig(seq_len=16, vocab_size=6, hidden_size=32, num_heads=2, H_cycles=1,
                                                L_cycles=1, L_layers=1, halt_max_steps=3, mlp_t=True,
                                                pos_encodings="none", forward_dtype="float32"))
    with torch.no_grad():
        model.q_head.bias[0] = 5.0  # the halting head says "stop" from the first step on
    assert evaluate(model, sudoku_data, mode="fixed")["steps"] == 3
    adaptive = evaluate(model, sudoku_data, mode="adaptive")
    assert adaptive["steps"] == 1 and adaptive["halt_steps"] == 1


# --- the command line -----------------------------------------------------------------------------
def cli(argv: list[str], capsys, code: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    assert run_cli(main, argv) == code
    out, err = capsys.readouterr()
    if code:
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return out, err


def test_cli_on_a_run_reproduces_the_trainers_evaluation(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    old = dict(np.load(run / "eval" / "test" / "predictions.npz"))
    _, err = cli([str(run)], capsys, 2)  # the trainer's own evaluation is kept without --force
    assert "already holds predictions; pass --force" in err
    out, _ = cli([str(run), "--force"], capsys)  # the run's own dataset, EMA weights, into RUN/eval/test
    assert "weights: EMA" in out and "exact_accuracy" in out
    assert json.loads((run / "eval" / "test" / "metrics.json").read_text()) == before
    new = np.load(run / "eval" / "test" / "predictions.npz")
    for key, value in old.items():
        np.testing.assert_array_equal(new[key], value, err_msg=key)
    # the raw weights are another model: another halting head output
    cli([str(run / "checkpoint.pt"), "--no-ema", "--out", str(tmp_path / "raw"), "--mode", "adaptive"], capsys)
    raw = np.load(tmp_path / "raw" / "predictions.npz")
    assert not np.array_equal(raw["q_halt"], old["q_halt"])
    # more supervision steps at test time than in training: an arch override of the run's model
    cli([str(run), "arch.halt_max_steps=5", "--out", str(tmp_path / "longer")], capsys)
    longer = np.load(tmp_path / "longer" / "predictions.npz")
    assert longer["step_preds"].shape[0] == 5 and (longer["steps_run"] == 5).all()
    np.testing.assert_array_equal(longer["step_preds"][:3], old["step_preds"])  # same first 3 steps
    meta = json.loads((tmp_path / "raw" / "meta.json").read_text())
    assert meta["family"] == "sudoku" and meta["split"] == "test" and meta["box"] == [2, 2]
    assert meta["metrics"] == json.loads((tmp_path / "raw" / "metrics.json").read_text())


def test_cli_refusals(trained_run, tmp_path, capsys):
    other = build_sudoku(tmp_path / "sudoku-6x6", "--box", "2x3")
    _, err = cli([str(trained_run), "--data", str(other), "--out", str(tmp_path / "o")], capsys, 2)
    assert "holds 6x6 sudoku (boxes 2x3) puzzles but the model in" in err and "trained on 4x4 sudoku" in err
    _, err = cli([str(trained_run), "--out", str(trained_run / "eval" / "test")], capsys, 2)
    assert "--force" in err
    _, err = cli([str(trained_run), "--model", "hrm", "--out", str(tmp_path / "o")], capsys, 2)
    assert "holds a trm-mlp model" in err
    _, err = cli([str(trained_run), "arch.hidden_size=64", "--out", str(tmp_path / "o")], capsys, 2)
    assert "weights do not fit the model" in err and "size mismatch" in err
    _, err = cli([str(trained_run), "--threshold", "0.9", "--out", str(tmp_path / "o")], capsys, 2)
    assert "--threshold needs --mode adaptive or continuous" in err  # the run evaluates in fixed mode
    _, err = cli([str(trained_run), "--mode", "continuous", "--threshold", "1.5", "--out", str(tmp_path / "o")],
                 capsys, 2)
    assert "--threshold must be a probability" in err
    _, err = cli([str(tmp_path / "nowhere")], capsys, 2)
    assert "does not exist" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert "truncated or corrupt" in cli([str(bad)], capsys, 2)[1]
    assert not (tmp_path / "o").exists()


# --- reference weights ----------------------------------------------------------------------------
FIXTURE_ARCH = {"hrm": ["arch.H_layers=2", "arch.L_layers=2"],
                "trm": ["arch.L_layers=2", "arch.puzzle_emb_len=4"]}
COMMON_ARCH = ["arch.hidden_size=64", "arch.num_heads=2", "arch.H_cycles=2", "arch.L_cycles=3",
               "arch.puzzle_emb_ndim=64", "arch.halt_max_steps=4", "system.dtype=float32", "eval.batch_size=4"]


def fixture_dataset(root: Path, fixture: dict, identifiers: int = 5) -> Path:
    """The fixture's batch (rows 0-2; row 3 is the loader's padding row) as a reference-layout dataset."""
    b = fixture["batch"]
    (root / "test").mkdir(parents=True)
    (root / "identifiers.json").write_text(json.dumps(["<blank>"] + [f"p{i}" for i in range(1, identifiers)]))
    (root / "test" / "dataset.json").write_text(json.dumps(
        {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 16,
         "num_puzzle_identifiers": identifiers, "total_groups": 3, "mean_puzzle_examples": 1.0,
         "total_puzzles": 3, "sets": ["all"]}))
    arrays = {"inputs": b["inputs"][:3].numpy(), "labels": b["labels_raw"][:3].numpy(),
              "puzzle_identifiers": b["puzzle_identifiers"][:3].numpy(),
              "puzzle_indices": np.arange(4, dtype=np.int32), "group_indices": np.arange(4, dtype=np.int32)}
    for name, value in arrays.items():
        np.save(root / "test" / f"all__{name}.npy", value)
    return root


@pytest.mark.parametrize("name,model,prefix", [("hrm", "hrm", "model."), ("trm_attn", "trm", "_orig_mod.model."),
                                               ("trm_attn", "trm", "")])
def test_reference_state_dict_matches_the_fixture(reference_dir, tmp_path, capsys, name, model, prefix):
    fixture = torch.load(reference_dir / f"{name}.pt", weights_only=True)
    bare = tmp_path / "ref.pt"
    torch.save({prefix + k: v for k, v in fixture["state_dict"].items()}, bare)
    data = fixture_dataset(tmp_path / "data", fixture)
    out, _ = cli([str(bare), "--model", model, "--data", str(data), "--family", "sudoku", "--out",
                  str(tmp_path / "out"), *COMMON_ARCH, *FIXTURE_ARCH[model]], capsys)
    assert "warning" not in out
    pred = np.load(tmp_path / "out" / "predictions.npz")
    for k, step in enumerate(fixture["eval_steps"]):  # the reference's own eval rollout, step by step
        np.testing.assert_array_equal(pred["step_preds"][k], step["preds"][:3].numpy())
        np.testing.assert_allclose(pred["q_halt"][k], torch.sigmoid(step["q_halt_logits"][:3]).numpy(), atol=1e-5)


def test_reference_state_dict_refusals_and_warnings(reference_dir, tmp_path, capsys):
    fixture = torch.load(reference_dir / "hrm.pt", weights_only=True)
    bare = tmp_path / "ref.pt"
    torch.save(fixture["state_dict"], bare)
    data = fixture_dataset(tmp_path / "data", fixture)
    assert "pass --model NAME and --data DIR" in cli([str(bare), "--model", "hrm"], capsys, 2)[1]
    assert "--family" in cli([str(bare), "--model", "hrm", "--data", str(data)], capsys, 2)[1]
    _, err = cli([str(bare), "--model", "hrm", "--data", str(data), "--family", "sudoku"], capsys, 2)
    assert "does not fit" in err and "paper preset for sudoku/hrm" in err  # 64-wide weights, 512-wide preset
    # a dataset with more identifiers than the stored table: rows re-initialised, with a warning
    wide = fixture_dataset(tmp_path / "wide", fixture, identifiers=8)
    out, _ = cli([str(bare), "--model", "hrm", "--data", str(wide), "--family", "sudoku", "--out",
                  str(tmp_path / "o"), *COMMON_ARCH, *FIXTURE_ARCH["hrm"]], capsys)
    assert "warning: puzzle embedding table has 5 rows but the model has 8" in out


def test_continuous_mode_equals_adaptive(sudoku_data, tmp_path):
    """eval.mode=continuous (slot engine) gives the same per-example results as adaptive batches."""
    from models import MODELS, ModelConfig
    torch.manual_seed(0)
    model = MODELS["trm"](ModelConfig(seq_len=16, vocab_size=6, hidden_size=32, num_heads=2, H_cycles=1,
                                            L_cycles=1, L_layers=1, halt_max_steps=4, forward_dtype="float32"))
    split = load_split(sudoku_data, "test")
    inputs, _ = split.examples(np.arange(len(split)))
    batch = {"inputs": torch.from_numpy(inputs), "puzzle_identifiers": torch.zeros(len(inputs), dtype=torch.int32),
             "labels": torch.zeros_like(torch.from_numpy(inputs)).long()}
    with torch.no_grad():  # centre q_halt on these puzzles so that rows halt at different steps
        model.q_head.weight.normal_(0, 1.0)
        model.eval()
        _, _, q_halt, _ = model.step(model.initial_carry(batch), batch)
        model.q_head.bias[0] -= q_halt.median()
    adaptive = evaluate(model, sudoku_data, tmp_path / "a", mode="adaptive", batch_size=4)
    continuous = evaluate(model, sudoku_data, tmp_path / "c", mode="continuous", batch_size=4)
    assert 1 < adaptive["steps"] < 4  # the check means something: halting varies
    assert continuous == pytest.approx(adaptive)
    a, c = (np.load(tmp_path / d / "predictions.npz") for d in ("a", "c"))
    for key in ("preds", "steps", "step_preds", "index"):
        np.testing.assert_array_equal(a[key], c[key])
    # a halting threshold: stricter than the model's rule (q_halt > 0 is probability 0.5), so rows
    # run longer, and the batch and slot runs still agree row for row
    strict = {m: evaluate(model, sudoku_data, tmp_path / f"t{m}", mode=m, batch_size=4, threshold=0.8)
              for m in ("adaptive", "continuous")}
    assert strict["adaptive"]["steps"] > adaptive["steps"] and strict["continuous"] == pytest.approx(strict["adaptive"])
    a, c = (np.load(tmp_path / f"t{m}" / "predictions.npz") for m in ("adaptive", "continuous"))
    prob, ran = a["q_halt"], a["steps_run"]  # (steps, rows) halting probabilities, steps each row ran
    for row, k in enumerate(ran):  # each row stopped at its first step with probability >= 0.8
        assert (prob[: k - 1, row] < 0.8).all() and (k == 4 or prob[k - 1, row] >= 0.8)
    assert (ran < 4).any()
    for key in ("preds", "steps", "step_preds", "index"):
        np.testing.assert_array_equal(a[key], c[key])


def test_continuous_evaluation_runs_each_puzzle_once(sudoku_data, tmp_path):
    """The engine computes exactly the supervision steps the puzzles report (no second pass for the
    step-by-step pictures): rows computed over all engine steps == sum of steps run."""
    from models import MODELS, ModelConfig
    torch.manual_seed(0)
    model = MODELS["trm"](ModelConfig(seq_len=16, vocab_size=6, hidden_size=32, num_heads=2, H_cycles=1,
                                      L_cycles=1, L_layers=1, halt_max_steps=4, forward_dtype="float32"))
    split = load_split(sudoku_data, "test")
    inputs, _ = split.examples(np.arange(len(split)))
    batch = {"inputs": torch.from_numpy(inputs), "puzzle_identifiers": torch.zeros(len(inputs), dtype=torch.int32)}
    with torch.no_grad():  # rows halt at different steps
        model.q_head.weight.normal_(0, 1.0)
        model.eval()
        _, _, q_halt, _ = model.step(model.initial_carry(batch), batch)
        model.q_head.bias[0] -= q_halt.median()
    rows, step = [], model.step

    def counted(carry, data, *args, **kwargs):
        rows.append(data["inputs"].shape[0])
        return step(carry, data, *args, **kwargs)

    model.step = counted
    for mode in ("continuous", "adaptive", "fixed"):
        rows.clear()
        metrics = evaluate(model, sudoku_data, tmp_path / mode, mode=mode, batch_size=4)
        ran = np.load(tmp_path / mode / "predictions.npz")["steps_run"]
        assert len(ran) == 10 and sum(rows) == ran.sum() == round(metrics["steps"] * metrics["count"]), mode
        if mode == "continuous":
            assert 1 < metrics["steps"] < 4  # halting varies, so the count means something
