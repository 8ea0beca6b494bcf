"""The trainer end to end at tiny sizes (4x4 Sudoku, hidden 32, fp32, one thread): exact resume,
determinism, non-finite losses, run files, one-line user errors.
Run: python -m pytest -q tests/test_train.py
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from puzzles.dataset import SplitData, load_identifiers, load_split, write_dataset
from puzzles.errors import run_cli
from train.checkpoint import load_checkpoint
from train.errors import TrainError
from train.loop import train
from train.model_io import stored_config
from train.overrides import apply_overrides
from train.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]

# A model small enough for milliseconds per step; one thread (other tests share the cores, and
# oversubscribed threads make tiny ops hundreds of times slower).
TINY = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_cycles=1", "arch.L_cycles=2", "arch.L_layers=1",
        "arch.halt_max_steps=3", "optim.global_batch_size=8", "optim.lr_warmup_steps=2", "system.dtype=float32", "system.compile=off",
        "system.threads=1", "log.progress=false", "log.interval=1", "eval.interval=0", "system.checkpoint_interval=1000"]


@pytest.fixture(autouse=True)
def _keep_threads():  # and the deterministic-kernels switch that setup_system sets on CPU
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def build_sudoku(out: Path, *options: str) -> Path:
    from puzzles.build import main as build_main
    assert build_main(["sudoku", "--preset", "tiny", "--out", str(out), "--no-progress", *options]) in (0, None)
    return out


def with_identifiers(src: Path, out: Path, count: int = 6) -> Path:
    """Copy of dataset `src` whose puzzles use identifiers 1..count-1, so the sparse puzzle table has
    several rows to learn (a generated Sudoku uses identifier 0 only)."""
    splits = {}
    for name in ("train", "test"):
        split = load_split(src, name)
        a = split.arrays()
        ids = (np.arange(split.num_puzzles) % (count - 1) + 1).astype(np.int32)
        meta = {k: v for k, v in split.meta.items() if k in ("vocab_size", "seq_len", "family", "box")}
        splits[name] = SplitData(meta, ids, a["puzzle_indices"], a["group_indices"], a["inputs"], a["labels"])
    names = load_identifiers(src)[:1] + [f"p{i}" for i in range(1, count)]
    return write_dataset(out, names, splits)


@pytest.fixture(scope="session")
def sudoku_data(tmp_path_factory) -> Path:
    return build_sudoku(tmp_path_factory.mktemp("data") / "sudoku-4x4")


@pytest.fixture(scope="session")
def ids_data(tmp_path_factory, sudoku_data) -> Path:
    return with_identifiers(sudoku_data, tmp_path_factory.mktemp("data") / "sudoku-ids")


def tiny_cfg(data: Path, run_dir: Path, *overrides: str, model: str = "trm-mlp"):
    cfg = PRESETS["quick"]("sudoku", model)
    return apply_overrides(cfg, [f"data.path={data}", f"system.run_dir={run_dir}", *TINY, *overrides])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, sudoku_data) -> Path:
    """A finished 4-step run with EMA (read-only for tests: copy it before changing it)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_cfg(sudoku_data, run, "optim.max_steps=4", "optim.ema=true"))
    return run


def final_state(run: Path) -> dict:
    payload = load_checkpoint(run / "checkpoint.pt")
    return {"model": payload["model"], "ema": payload["optim"]["ema"]["shadow"] if payload["optim"]["ema"] else {},
            "adam": payload["optim"]["adam"]["state"], "carry": payload["carry"], "step": payload["step"],
            "loader": payload["loader"], "rng": payload["rng"]}  # the RNG decides halting exploration


def assert_same(a, b, path="") -> None:
    """Bit-identical nested dicts/lists of tensors."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path


# --- resume and determinism ------------------------------------------------------------------
def _crash_at(monkeypatch, crash_step: int) -> None:
    """Make the trainer die (as if killed) when it starts optimiser step `crash_step`."""
    from train.step import TrainStep
    original = TrainStep.__call__

    def call(self, carry, batch, step):
        if step == crash_step:
            raise KeyboardInterrupt("simulated kill")
        return original(self, carry, batch, step)

    monkeypatch.setattr(TrainStep, "__call__", call)


def _model_cfg(run: Path):
    return stored_config(load_checkpoint(run / "checkpoint.pt"))


def _fresh_model(name: str, run: Path):
    """The run's model as the trainer initialised it (seed 0)."""
    from models import MODELS
    torch.manual_seed(0)
    return MODELS[name](_model_cfg(run))


@pytest.mark.parametrize("model,how", [("trm-mlp", "killed"), ("hrm", "extended")])
def test_resume_is_bit_identical(tmp_path, ids_data, monkeypatch, model, how):
    """k + m steps straight == k steps, stop, resume to k + m: weights, puzzle table, EMA, Adam, carry."""
    extra = ["arch.puzzle_emb_ndim=32", "optim.ema=true"]
    if how == "killed":  # a cosine schedule over the full length; the run dies after its step-4 checkpoint
        extra += ["optim.lr_min_ratio=0.1", "system.checkpoint_interval=4"]
    else:  # extending a run keeps its schedule only with a constant lr (the hrm preset decays it)
        extra += ["optim.lr_min_ratio=1.0"]
    train(tiny_cfg(ids_data, tmp_path / "a", "optim.max_steps=9", *extra, model=model))
    if how == "killed":
        cfg = tiny_cfg(ids_data, tmp_path / "b", "optim.max_steps=9", *extra, model=model)
        _crash_at(monkeypatch, 6)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
        monkeypatch.undo()
        assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 4
        assert train(cfg)["steps"] == 9  # same config: continues without --resume
    else:  # constant lr after warm-up, so the first part's schedule is the same as the full one's
        assert train(tiny_cfg(ids_data, tmp_path / "b", "optim.max_steps=4", *extra, model=model))["steps"] == 4
        cfg = tiny_cfg(ids_data, tmp_path / "b", "optim.max_steps=9", *extra, model=model)
        with pytest.raises(TrainError, match="--resume"):
            train(cfg)
        assert train(cfg, resume=True)["steps"] == 9
    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    assert_same(a, b)
    table = a["model"]["embedding.puzzle_emb.weights"]
    assert table.shape == (6, 32) and len(a["ema"]) == len(list(_fresh_model(model, tmp_path / "a").parameters()))
    # the sparse optimiser trained the table (so the resume check covers it): rows moved from init
    fresh = _fresh_model(model, tmp_path / "a")
    assert not torch.equal(fresh.state_dict()["embedding.puzzle_emb.weights"], table)
    assert not torch.equal(a["ema"]["lm_head.weight"], a["model"]["lm_head.weight"])


def test_same_seed_same_weights_other_seed_differs(tmp_path, sudoku_data):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(tiny_cfg(sudoku_data, tmp_path / name, "optim.max_steps=3", f"system.seed={seed}"))
    a, b, c = (final_state(tmp_path / n)["model"] for n in "abc")
    assert_same(a, b)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_interval_and_auto_resume(tmp_path, sudoku_data):
    """A run killed after its periodic checkpoint continues from it when started again unchanged."""
    cfg = tiny_cfg(sudoku_data, tmp_path / "r", "optim.max_steps=5", "system.checkpoint_interval=2")
    train(cfg)
    payload = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert payload["step"] == 5 and payload["carry"] is not None
    summary = train(cfg)  # same config: resumes at the end, nothing more to do
    assert summary["steps"] == 5


# --- non-finite losses ---------------------------------------------------------------------------
def _nan_forward(monkeypatch, bad_calls: set[int]):
    from models.halting import HaltingModel
    original, calls = HaltingModel.forward, [0]

    def forward(self, carry, batch, *args, **kwargs):
        carry, loss, metrics, outputs, finish = original(self, carry, batch, *args, **kwargs)
        if self.training:
            calls[0] += 1
            if calls[0] in bad_calls:
                loss = loss * float("nan")
        return carry, loss, metrics, outputs, finish

    monkeypatch.setattr(HaltingModel, "forward", forward)


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, sudoku_data, monkeypatch):
    _nan_forward(monkeypatch, {2, 3})
    summary = train(tiny_cfg(sudoku_data, tmp_path / "r", "optim.max_steps=5", "optim.max_bad_steps=3"))
    assert summary["steps"] == 5 and summary["skipped_steps"] == 2
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    skipped = {d["step"]: d["train/skipped_steps"] for d in lines if "train/skipped_steps" in d}
    assert skipped == {1: 0, 2: 1, 3: 2, 4: 2, 5: 2}
    weights = final_state(tmp_path / "r")["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_nonfinite_in_a_row_stops_with_usable_checkpoint(tmp_path, sudoku_data, monkeypatch, capsys):
    _nan_forward(monkeypatch, set(range(1, 100)))
    cfg = tiny_cfg(sudoku_data, tmp_path / "r", "optim.max_steps=8", "optim.max_bad_steps=3")
    with pytest.raises(TrainError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message and "3 non-finite steps in a row at step 3" in message
    payload = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert payload["step"] == 3 and payload["bad_steps"] == 3
    # no update was applied: the weights are still the seeded initial ones
    fresh = _fresh_model("trm-mlp", tmp_path / "r").state_dict()
    assert_same(fresh, payload["model"])
    # and the run continues from it once the losses are finite again
    monkeypatch.undo()
    assert train(cfg)["steps"] == 8


# --- run files --------------------------------------------------------------------------------
def test_metrics_summary_and_predictions(trained_run):
    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [d for d in lines if "train/lm_loss" in d]
    assert [d["step"] for d in train_lines] == [1, 2, 3, 4]
    for d in train_lines:
        assert {"train/exact_accuracy", "train/steps", "train/lr", "train/skipped_steps"} <= d.keys()
        assert np.isfinite(d["train/lm_loss"])
    final = lines[-1]
    assert final["step"] == 4 and 0.0 <= final["eval/exact_accuracy"] <= 1.0 and final["eval/count"] == 10
    summary = json.loads((trained_run / "summary.json").read_text())
    assert {"run_dir", "model", "family", "preset", "steps", "train_seconds", "skipped_steps", "eval"} <= summary.keys()
    assert summary["steps"] == 4 and summary["eval"]["exact_accuracy"] == final["eval/exact_accuracy"]
    out = trained_run / "eval" / "test"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["family"] == "sudoku" and meta["box"] == [2, 2] and meta["split"] == "test"
    assert json.loads((out / "metrics.json").read_text()) == meta["metrics"] == summary["eval"]
    pred = np.load(out / "predictions.npz")
    assert pred["preds"].shape == pred["inputs"].shape == pred["labels"].shape == (10, 16)
    assert pred["step_preds"].shape == (3, 10, 16) and pred["q_halt"].shape == (3, 10)
    assert ((pred["q_halt"] >= 0) & (pred["q_halt"] <= 1)).all() and (pred["steps"] >= 1).all()
    np.testing.assert_array_equal(pred["step_preds"][-1], pred["preds"])  # fixed mode: the last step


def test_progress_bar_off_and_on(tmp_path, sudoku_data, capsys):
    train(tiny_cfg(sudoku_data, tmp_path / "off", "optim.max_steps=2"))
    err = capsys.readouterr().err
    assert "it/s" not in err and "s/it" not in err
    train(tiny_cfg(sudoku_data, tmp_path / "on", "optim.max_steps=2", "log.progress=true"))
    assert "2/2" in capsys.readouterr().err
    assert (tmp_path / "on" / "summary.json").is_file()


# --- one-line user errors ---------------------------------------------------------------------
def _cli(argv: list[str], capsys) -> str:
    """Run the sudoku trainer CLI in-process as `python -m train.sudoku` does; returns stderr."""
    from train.cli import main
    capsys.readouterr()
    assert run_cli(lambda a: main("sudoku", a), argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_errors_are_one_line(tmp_path, sudoku_data, trained_run, capsys):
    base = ["--model", "trm-mlp", *TINY, "optim.max_steps=2"]
    assert "did you mean 'optim.lr'" in _cli([*base, "optim.lrr=1"], capsys)
    assert "unknown config key 'arch.seq_len'" in _cli([*base, "arch.seq_len=3"], capsys)  # the dataset's
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert str(a_file) in _cli([*base, f"data.path={a_file}", f"system.run_dir={tmp_path / 'r1'}"], capsys)
    assert "is not a dataset" in _cli([*base, f"data.path={tmp_path}", f"system.run_dir={tmp_path / 'r2'}"], capsys)
    # a run directory holding another config's run
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    other = [*base, f"data.path={sudoku_data}", f"system.run_dir={run}", "arch.hidden_size=64"]
    assert "holds a run with another config (differs in arch.hidden_size" in _cli(other, capsys)
    assert "cannot resume" in _cli([*other, "--resume"], capsys)
    # a truncated checkpoint, for resuming
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert "truncated or corrupt" in _cli([*base, f"data.path={sudoku_data}", f"system.run_dir={run}", "--resume"],
                                          capsys)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # nothing half-made


@pytest.mark.parametrize("case", ["unknown_key", "truncated_checkpoint"])
def test_subprocess_errors_exit_2_without_traceback(tmp_path, trained_run, case):
    """The real entry points, as a user runs them (2-3 s each: a fresh interpreter imports torch)."""
    if case == "unknown_key":
        cmd = ["train.sudoku", "--model", "trm-mlp", "optim.lrr=1"]
    else:
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
        cmd = ["train.evaluate", str(run)]
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert ("did you mean 'optim.lr'" if case == "unknown_key" else "truncated or corrupt") in lines[0]


@pytest.mark.slow
def test_compiled_two_thread_runs_are_identical(tmp_path, sudoku_data):
    """The quick preset compiles on CPU: two compiled runs with 2 threads end with the same weights
    (inductor's threaded kernels must not sum gradients in arrival order)."""
    torch._dynamo.reset()
    for name in "ab":
        train(tiny_cfg(sudoku_data, tmp_path / name, "optim.max_steps=12", "system.compile=on", "system.threads=2",
                       "optim.global_batch_size=16", "arch.hidden_size=64"))
    a, b = (final_state(tmp_path / n)["model"] for n in "ab")
    assert_same(a, b)


def test_no_periodic_evaluation_just_before_the_final_one(tmp_path, sudoku_data):
    # 20 groups / batch 8 = 2.5 steps per epoch: eval.interval=2 evaluates every 5 steps
    run = tmp_path / "run"
    train(tiny_cfg(sudoku_data, run, "optim.max_steps=11", "eval.interval=2"))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [d["step"] for d in lines if "eval/exact_accuracy" in d]
    assert evaluated == [5, 11]  # step 10 is skipped: the final evaluation follows one step later
