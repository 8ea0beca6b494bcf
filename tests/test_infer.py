"""Inference engine (train/infer.py) and solve CLI (train/solve.py): python -m pytest -q tests/test_infer.py

A tiny random model (hidden 32, fp32) whose Q head is perturbed so that puzzles halt at different
steps; every engine mode is checked against running each puzzle on its own.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import MODELS, ModelConfig
from puzzles import maze, sudoku
from puzzles.errors import UserError, run_cli
from train.checkpoint import save_checkpoint
from train.infer import Engine, iter_solve, solve
from train.model_io import load_run
from train.solve import main as solve_main

K = 6


def tiny_model(name: str = "trm", seq_len: int = 16, vocab: int = 6, seed: int = 1):
    torch.manual_seed(seed)
    model = MODELS[name](ModelConfig(seq_len=seq_len, vocab_size=vocab, hidden_size=32, num_heads=2, H_cycles=2,
                                     L_cycles=2, H_layers=1, L_layers=1, halt_max_steps=K,
                                     forward_dtype="float32"))
    with torch.no_grad():  # a live Q head: halting depends on the puzzle and the step
        model.q_head.weight.normal_(0.0, 0.3)
        model.q_head.bias.zero_()
    return model.eval()


def puzzles(n: int, seq_len: int = 16, vocab: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, vocab, size=(n, seq_len)).astype(np.int32)


def trajectory(model, x: np.ndarray):
    """Per-step predictions (K, N, S) and q_halt / q_continue logits (K, N), one batch, no halting."""
    batch = {"inputs": torch.from_numpy(x), "puzzle_identifiers": torch.zeros(len(x), dtype=torch.int32)}
    preds, qh, qc = [], [], []
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for _ in range(K):
            carry, logits, q_halt, q_continue = model.step(carry, batch, adaptive=False)
            preds.append(logits.argmax(-1).numpy())
            qh.append(q_halt.numpy())
            qc.append(q_continue.numpy())
    return np.stack(preds), np.stack(qh), np.stack(qc)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: thread hand-offs cost more than they save, above all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def alone(model, x):
    """Each puzzle solved on its own (one slot), per mode."""
    return {mode: [Engine(model, mode=mode, slots=1, pack=False).solve(x[i:i + 1]) for i in range(len(x))]
            for mode in ("continuous", "adaptive")}


@pytest.fixture(scope="module")
def x():
    return puzzles(23)


def test_halting_spread(model, x):
    """Precondition for the tests below: the perturbed Q head halts puzzles at several steps."""
    steps = solve(model, x, mode="continuous", slots=4).steps
    assert len(np.unique(steps)) >= 3 and steps.min() < K


def test_step_calls_per_mode(model, x):
    """fixed: K calls per whole batch; continuous: no more calls than adaptive, fewer than fixed."""
    calls = {}
    for mode in ("fixed", "adaptive", "continuous"):
        engine = Engine(model, mode=mode, slots=5)
        steps = engine.solve(x).steps
        calls[mode] = engine.calls
    assert calls["fixed"] == -(-len(x) // 5) * K
    assert calls["continuous"] <= calls["adaptive"] < calls["fixed"]
    assert calls["continuous"] >= -(-steps.sum() // 5)  # never more than 5 puzzles per call


@pytest.mark.parametrize("mode", ["continuous", "adaptive"])
@pytest.mark.parametrize("slots", [3, 7, 64])
@pytest.mark.parametrize("pack", [True, False])
def test_matches_each_puzzle_alone(model, x, alone, mode, slots, pack):
    result = Engine(model, mode=mode, slots=slots, pack=pack).solve(x)
    for i, one in enumerate(alone[mode]):
        assert np.array_equal(result.preds[i], one.preds[0]), i
        assert result.steps[i] == one.steps[0], i
        assert abs(result.q_halt_prob[i] - one.q_halt_prob[0]) < 1e-5, i


@pytest.mark.parametrize("name", ["hrm", "trm-mlp", "transformer"])
def test_other_models_rows_do_not_interact(name):
    """Every core mixes positions within a sample only (attention, token MLP): slots are independent."""
    other, x = tiny_model(name), puzzles(9, seed=3)
    together = solve(other, x, slots=4)
    for i in range(len(x)):
        one = solve(other, x[i:i + 1], slots=1)
        assert np.array_equal(together.preds[i], one.preds[0]) and together.steps[i] == one.steps[0]


def test_model_rule_and_threshold_follow_the_trajectory(model, x):
    preds, qh, _ = trajectory(model, x)
    prob = 1 / (1 + np.exp(-qh))
    for threshold in (None, 0.3, 0.5, 0.7):
        stop = qh > 0 if threshold is None else prob >= threshold
        stop[-1] = True
        first = stop.argmax(0)  # step index (0-based) of the first halt
        result = solve(model, x, mode="continuous", slots=5, threshold=threshold)
        assert np.array_equal(result.steps, first + 1), threshold
        assert np.array_equal(result.preds, preds[first, np.arange(len(x))]), threshold
        assert np.allclose(result.q_halt_prob, prob[first, np.arange(len(x))], atol=1e-5)
    low = solve(model, x, threshold=0.3).steps
    high = solve(model, x, threshold=0.7).steps
    assert (high >= low).all() and (high > low).any()


def test_fixed_equals_full_rollout_with_the_loss_forward(model, x):
    """The evaluate-style reference: the wrapper's forward for all K steps on the whole batch."""
    batch = {"inputs": torch.from_numpy(x), "labels": torch.from_numpy(x).long(),
             "puzzle_identifiers": torch.zeros(len(x), dtype=torch.int32)}
    with torch.inference_mode():
        carry = model.initial_carry(batch)
        for _ in range(K):
            carry, _, _, outputs, _ = model(carry, batch, adaptive=False)
    result = solve(model, x, mode="fixed", slots=8)
    assert np.array_equal(result.preds, outputs["preds"].numpy())
    assert (result.steps == K).all()
    assert np.allclose(result.q_halt_prob, torch.sigmoid(outputs["q_halt_logits"]).numpy(), atol=1e-5)


def test_max_steps_caps_every_mode(model, x):
    preds, _, _ = trajectory(model, x)
    fixed = solve(model, x, mode="fixed", max_steps=2)
    assert (fixed.steps == 2).all() and np.array_equal(fixed.preds, preds[1])
    assert solve(model, x, mode="continuous", max_steps=2).steps.max() <= 2


def test_hrm_rule_q_halt_vs_continue():
    hrm = tiny_model("hrm")
    assert hrm.config.halt_rule == "q_halt_vs_continue"
    x = puzzles(9)
    _, qh, qc = trajectory(hrm, x)
    stop = qh > qc
    stop[-1] = True
    assert np.array_equal(solve(hrm, x, slots=3).steps, stop.argmax(0) + 1)


def test_small_and_empty_queues(model, x):
    few = solve(model, x[:3], slots=128)
    assert len(few) == 3 and np.array_equal(few.steps, solve(model, x, slots=4).steps[:3])
    empty = solve(model, np.zeros((0, 16), dtype=np.int32))
    assert empty.preds.shape == (0, 16) and empty.steps.shape == (0,) and empty.q_halt_prob.shape == (0,)
    assert len(solve(model, [])) == 0
    assert list(iter_solve(model, [])) == []


def test_iter_solve_streams_in_finishing_order(model, x):
    answers = list(iter_solve(model, iter(x), slots=4))
    assert sorted(a.index for a in answers) == list(range(len(x)))
    reference = solve(model, x, slots=4)
    for a in answers:
        assert a.steps == reference.steps[a.index] and np.array_equal(a.preds, reference.preds[a.index])
    # a puzzle that halts at step 1 must come out before one that started with it and ran longer
    first = [a.steps for a in answers[:4]]
    assert min(first) == reference.steps[:4].min()


def test_bad_arguments(model, x):
    for kwargs in ({"mode": "eager"}, {"slots": 0}, {"max_steps": 0}, {"threshold": 1.5},
                   {"mode": "fixed", "threshold": 0.5}):
        with pytest.raises(ValueError):
            Engine(model, **kwargs)
    with pytest.raises(ValueError, match="seq_len"):
        solve(model, np.ones((2, 9), dtype=np.int32))
    with pytest.raises(ValueError, match="tokens"):
        solve(model, np.full((2, 16), 6, dtype=np.int32))


@pytest.mark.slow
def test_compiled_step_matches_eager(model, x):
    eager = solve(model, x, slots=4)
    compiled = solve(model, x, slots=4, compile=True)
    assert np.array_equal(eager.steps, compiled.steps) and np.array_equal(eager.preds, compiled.preds)


# --- CLI ---------------------------------------------------------------------------------------

def write_checkpoint(path, family: str, name: str = "trm-mlp", seq_len: int = 16, vocab: int = 6):
    model = tiny_model(name, seq_len, vocab)
    save_checkpoint(path, {"model_name": name, "model_config": dataclasses.asdict(model.config),
                           "model": model.state_dict(), "config": {"data": {"family": family}}, "optim": {}})
    return model


@pytest.fixture
def sudoku_ckpt(tmp_path):
    path = tmp_path / "s4.pt"
    return path, write_checkpoint(path, "sudoku")


def test_cli_sudoku_lines_and_a_bad_line(tmp_path, sudoku_ckpt, capsys):
    ckpt, model = sudoku_ckpt
    grids, _ = sudoku.generate(5, box=(2, 2), seed=0)
    lines = [sudoku.to_text(g) for g in grids]
    text = "# four by four\n" + "\n".join(lines[:2]) + "\n12x4............\n\n" + "\n".join(lines[2:]) + "\n"
    src = tmp_path / "p.txt"
    src.write_text(text)
    assert run_cli(solve_main, [str(ckpt), str(src), "--slots", "2", "--dtype", "float32"]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == text.count("\n") == 8  # one output line per input line
    assert f"{src}:4: invalid character 'x'" in err and "5 puzzles" in err and "1 bad lines" in err
    expected = solve(model, sudoku.encode(grids).astype(np.int32))
    want = ["".join(("?" + sudoku.CHARS)[t] for t in p) for p in expected.preds]  # 0 (padding) -> '?'
    assert all(len(line) == 16 for line in want)
    got = out.splitlines()
    assert got[0] == "# four by four" and got[3].startswith("error: invalid character 'x'") and got[4] == ""
    assert got[1:3] + got[5:] == want


def test_cli_sudoku_csv_reports_exact_accuracy_and_writes_out(tmp_path, sudoku_ckpt, capsys):
    ckpt, model = sudoku_ckpt
    grids, answers = sudoku.generate(4, box=(2, 2), seed=1)
    src = tmp_path / "p.csv"
    rows = [f"gen,{sudoku.to_text(q)},{sudoku.to_text(a)},0" for q, a in zip(grids, answers)]
    src.write_text("source,question,answer,rating\n" + "\n".join(rows) + "\n")
    out_file = tmp_path / "answers.txt"
    assert run_cli(solve_main, [str(ckpt), str(src), "--out", str(out_file), "--mode", "fixed"]) == 0
    _, err = capsys.readouterr()
    preds = solve(model, sudoku.encode(grids).astype(np.int32), mode="fixed").preds
    exact = np.mean([np.array_equal(p, sudoku.encode(a)) for p, a in zip(preds, answers)])
    assert f"exact accuracy {100 * exact:.1f}% (4 answers)" in err and "mean steps 6.00 of 6" in err
    lines = out_file.read_text().splitlines()
    assert lines[0] == "source,question,answer,rating" and len(lines) == 5  # the header copied, then answers
    assert all(len(line) == 16 and set(line) <= set("?" + sudoku.CHARS[:5]) for line in lines[1:])
    assert run_cli(solve_main, [str(ckpt), str(src), "--out", str(out_file)]) == 2  # no --force
    assert "--force" in capsys.readouterr().err


def test_cli_refuses_another_size_or_family(tmp_path, sudoku_ckpt, capsys):
    ckpt, _ = sudoku_ckpt
    big = tmp_path / "nine.txt"
    big.write_text("\n".join(sudoku.to_text(g) for g in sudoku.generate(2, box=(3, 3), seed=0)[0]) + "\n")
    assert run_cli(solve_main, [str(ckpt), str(big)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "9x9 sudoku" in err[0] and "4x4 sudoku model" in err[0]

    inputs, labels = maze.generate(2, size=4, seed=0)
    mazes = tmp_path / "maze.csv"
    mazes.write_text("source,question,answer,rating\n" + "\n".join(
        f"gen,{maze.decode(a)},{maze.decode(b)},0" for a, b in zip(inputs, labels)) + "\n")
    assert run_cli(solve_main, [str(ckpt), str(mazes)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4x4 maze" in err[0] and "sudoku model" in err[0]

    maze_ckpt = tmp_path / "m.pt"
    write_checkpoint(maze_ckpt, "maze")
    assert run_cli(solve_main, [str(maze_ckpt), str(mazes), "--threshold", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and all(len(line) == 16 for line in out.splitlines()[1:])
    assert "valid" in err and "exact accuracy" in err
    small = tmp_path / "four.txt"
    small.write_text(sudoku.to_text(sudoku.generate(1, box=(2, 2), seed=0)[0][0]) + "\n")
    assert run_cli(solve_main, [str(maze_ckpt), str(small)]) == 2
    assert "4x4 sudoku" in capsys.readouterr().err


def test_load_run_uses_the_weights_the_trainer_evaluated(tmp_path):
    """A run trained with EMA is solved with its EMA weights unless asked for the raw ones; asking
    for EMA weights a run never kept is a one-line error."""
    model = tiny_model("trm-mlp", 16, 6)
    shadow = {name: torch.full_like(p, 0.5) for name, p in model.named_parameters()}
    base = {"model_name": "trm-mlp", "model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
            "config": {"data": {"family": "sudoku"}}}
    with_ema, without = tmp_path / "ema.pt", tmp_path / "raw.pt"
    save_checkpoint(with_ema, base | {"optim": {"ema": {"shadow": shadow}}})
    save_checkpoint(without, base | {"optim": {"ema": None}})
    name, raw = next(iter(model.named_parameters()))
    default = dict(load_run(with_ema).model.named_parameters())[name]
    assert torch.equal(default, shadow[name]) and not torch.equal(default, raw)
    assert torch.equal(dict(load_run(with_ema, ema=False).model.named_parameters())[name], raw)
    assert torch.equal(dict(load_run(without).model.named_parameters())[name], raw)
    with pytest.raises(UserError, match="holds no EMA weights"):
        load_run(without, ema=True)
