"""Every CLI against bad inputs and faults, as a careless or unlucky user meets them: malformed
files, datasets of another family, foreign folders under --force, NaN, Ctrl-C, a locked run folder,
a full disk. Each case asserts exit code 2 (1 where answers were still produced), exactly one
`error:` line on stderr naming the thing at fault, no traceback, and every file that existed
before left unchanged (and no temp file left behind).
Run: python -m pytest -q tests/test_bad_inputs.py
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from puzzles import sudoku
from puzzles.errors import MAX_MESSAGE, run_cli
from train.checkpoint import load_checkpoint
from train.errors import ConfigError, TrainError
from train.loop import train
from train.overrides import apply_overrides
from train.presets import PRESETS
from train.run import lock_run_dir

from .test_infer import sudoku_ckpt  # noqa: F401  (fixture)
from .test_train import TINY, _keep_threads, assert_same, build_sudoku, final_state, sudoku_data, tiny_cfg  # noqa: F401
from .test_train import trained_run  # noqa: F401

REFERENCE_ARC = Path(__file__).resolve().parent / "fixtures" / "reference" / "datasets" / "arc-tiny-aug-2"


# --- helpers ------------------------------------------------------------------------------------
def snapshot(*roots: Path) -> dict[Path, str]:
    files = {}
    for root in roots:
        for p in [root] if root.is_file() else sorted(root.rglob("*")):
            if p.is_file():
                files[p] = hashlib.sha1(p.read_bytes()).hexdigest()
    return files


def fails(main, argv, capsys, *names: str, code: int = 2, roots: tuple[Path, ...] = (), new_ok: bool = False) -> str:
    """Run `main(argv)` through run_cli; check the exit code, the one error line naming `names`,
    that no file under `roots` changed and (unless `new_ok`) that none appeared; returns the line."""
    before = snapshot(*roots)
    capsys.readouterr()
    assert run_cli(main, argv) == code
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    if code == 2:
        assert err.strip() == lines[0], err
    assert len(lines[0]) <= MAX_MESSAGE + 20
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    after = snapshot(*roots)
    assert {p: h for p, h in after.items() if p in before} == before, "a file that existed was changed"
    new = [p for p in after if p not in before]
    assert not [p for p in new if ".tmp" in p.name], new  # temp files never outlive a failure
    if not new_ok:
        assert not new, new
    return lines[0]


def argparse_fails(main, argv, capsys, *names: str) -> None:
    """argparse's own refusals: usage, then one `prog: error: ...` line, exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1 and all(n in lines[0] for n in names), err


def trainer(family: str = "sudoku"):
    from train.cli import main
    return lambda argv: main(family, argv)


def build(argv):
    from puzzles.build import main
    return main(argv)


def evaluate(argv):
    from train.evaluate import main
    return main(argv)


def solve_cli(argv):
    from train.solve import main
    return main(argv)


def sudoku_cli(argv):
    from puzzles.sudoku import main
    return main(argv)


def base(data: Path, run: Path, *more: str) -> list[str]:
    return ["--model", "trm-mlp", *TINY, "optim.max_steps=3", f"data.path={data}", f"system.run_dir={run}", *more]


def copy_dataset(src: Path, out: Path, **arrays) -> Path:
    """A copy of dataset `src` with train-split arrays replaced (e.g. inputs=float tokens)."""
    shutil.copytree(src, out)
    for name, arr in arrays.items():
        np.save(out / "train" / f"all__{name}.npy", arr)
    return out


@pytest.fixture(scope="module")
def maze4(tmp_path_factory) -> Path:
    """4x4 mazes: 16 cells and 6 tokens, exactly the shape of a 4x4 Sudoku."""
    out = tmp_path_factory.mktemp("data") / "maze-4x4"
    assert build(["maze", "--size", "4", "--train", "20", "--test", "10", "--min-path", "0", "--aug", "0",
                  "--out", str(out), "--no-progress"]) == 0
    return out


# --- puzzles.build ------------------------------------------------------------------------------
def test_build_force_replaces_only_a_dataset(tmp_path, sudoku_data, capsys, monkeypatch):
    tiny = ["sudoku", "--preset", "tiny", "--no-progress"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    fails(build, [*tiny, "--out", str(notes), "--force"], capsys, notes, "not a dataset", roots=(tmp_path,))
    # a dataset with one foreign file inside is not ours to delete either
    ds = tmp_path / "ds"
    shutil.copytree(sudoku_data, ds)
    (ds / "train" / "my-notes.txt").write_text("mine")
    fails(build, [*tiny, "--out", str(ds), "--force"], capsys, ds, "not a dataset", roots=(tmp_path,))
    fails(build, [*tiny, "--out", str(ds)], capsys, ds, "--force", roots=(tmp_path,))
    a_file = tmp_path / "file.npy"
    a_file.write_text("x")
    fails(build, [*tiny, "--out", str(a_file), "--force"], capsys, a_file, "is a file", roots=(tmp_path,))
    # the working folder (even one that is a dataset) and the folders above it
    work = tmp_path / "work"
    shutil.copytree(sudoku_data, work)
    monkeypatch.chdir(work)
    fails(build, [*tiny, "--out", ".", "--force"], capsys, "current folder", roots=(tmp_path,))
    fails(build, [*tiny, "--out", "..", "--force"], capsys, "current folder", roots=(tmp_path,))
    # a dataset this project wrote is replaced
    (ds / "train" / "my-notes.txt").unlink()
    assert run_cli(build, [*tiny, "--out", str(ds), "--force", "--seed", "3"]) == 0


def test_build_bad_sources(tmp_path, capsys):
    tiny = ["sudoku", "--preset", "tiny", "--no-progress", "--out", str(tmp_path / "out")]
    binary = tmp_path / "puzzles.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    good = tmp_path / "good.txt"
    good.write_text("\n".join(sudoku.to_text(g) for g in sudoku.generate(3, box=(2, 2), seed=0)[0]) + "\n")
    cases = [
        (["--box", "2x2", "--from-text", str(binary), "--test-text", str(good)], [binary, "not UTF-8"]),
        (["--box", "2x2", "--from-text", str(tmp_path / "missing.txt"), "--test-text", str(good)],
         ["missing.txt", "cannot read"]),
        (["--box", "2x2", "--from-text", str(tmp_path), "--test-text", str(good)], [tmp_path, "cannot read"]),
        (["--size", "16", "--clues", "10-20"], ["16x16", "fewer than 55 clues"]),
        (["--box", "2x2", "--clues", "1-2"], ["4x4", "fewer than 4 clues"]),
        (["--box", "2x2", "--from-text", str(good)], ["needs both"]),
    ]
    for extra, names in cases:
        fails(build, [*tiny[:1], *tiny[1:], *extra], capsys, *names, roots=(tmp_path,))
    argparse_fails(build, ["sudoku", "--box", "7x7", "--out", str(tmp_path / "o")], capsys, "7x7", "not supported")


def test_build_arc_json_true_is_not_a_colour(tmp_path, capsys):
    task = {"train": [{"input": [[0, 1]], "output": [[1, 0]]}], "test": [{"input": [[1, True]], "output": [[0, 1]]}]}
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "t1.json").write_text(json.dumps(task))
    fails(build, ["arc", "--source", str(tmp_path / "tasks"), "--subsets", "training", "--test-set", "training",
                  "--aug", "0", "--out", str(tmp_path / "o"), "--no-progress"], capsys, "t1.json", "true/false",
          roots=(tmp_path,))


# --- puzzles.sudoku solve ------------------------------------------------------------------------
def test_sudoku_solve_bom_binary_and_box(tmp_path, capsys):
    grids, answers = sudoku.generate(2, box=(2, 2), seed=0)
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(sudoku.to_text(g) for g in grids).encode() + b"\n")
    assert run_cli(sudoku_cli, ["solve", str(bom), "--box", "2x2"]) == 0  # read like train.solve reads it
    assert capsys.readouterr().out.split() == [sudoku.to_text(a) for a in answers]
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    fails(sudoku_cli, ["solve", str(binary), "--box", "2x2"], capsys, binary, "not UTF-8", roots=(tmp_path,))
    fails(sudoku_cli, ["solve", str(tmp_path / "none.txt")], capsys, "none.txt", roots=(tmp_path,))
    fails(sudoku_cli, ["solve", str(tmp_path)], capsys, tmp_path, "cannot read", roots=(tmp_path,))
    argparse_fails(sudoku_cli, ["solve", str(bom), "--box", "7x7"], capsys, "box 7x7 is not supported")
    argparse_fails(sudoku_cli, ["solve", str(bom), "--box", "3by3"], capsys, "must look like 3x3")


# --- config values ------------------------------------------------------------------------------
@pytest.mark.parametrize("override", ["optim.lr=nan", "optim.lr=inf", "optim.lr=-0.1", "optim.lr=0",
                                      "optim.weight_decay=-1", "optim.weight_decay=nan", "optim.beta1=1.0",
                                      "optim.beta2=-0.5", "optim.puzzle_emb_lr=inf", "optim.ema_rate=nan",
                                      "optim.lr_min_ratio=nan", "arch.rms_norm_eps=inf"])
def test_non_finite_numbers_refused_at_config_time(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[-1]):
        apply_overrides(PRESETS["quick"]("sudoku", "trm"), [override])


def test_trainer_refuses_bad_numbers_without_starting(tmp_path, sudoku_data, capsys):
    for value in ("nan", "inf", "-0.1"):
        fails(trainer(), base(sudoku_data, tmp_path / "r", f"optim.lr={value}"), capsys, "optim.lr",
              roots=(tmp_path,))
    assert not (tmp_path / "r").exists()


def test_wandb_logger_without_wandb_says_how_to_install(tmp_path, sudoku_data, capsys, monkeypatch):
    """W&B is an optional extra: asking for it without it is one line, before anything is written."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    line = fails(trainer(), base(sudoku_data, tmp_path / "r", "log.logger=wandb"), capsys,
                 "log.logger=wandb", 'pip install -e ".[wandb]"', roots=(tmp_path,))
    assert line.startswith("error: ")
    assert not (tmp_path / "r").exists()


def test_long_error_lines_are_cut(tmp_path, sudoku_data, capsys):
    many = [f"arch.hidden_size={32 + i}" for i in range(300)] + ["arch.num_heads=3"]
    line = fails(trainer(), base(sudoku_data, tmp_path / "r", *many), capsys, "num_heads", roots=(tmp_path,))
    assert " ... " in line or len(line) < 400


# --- datasets: family, tokens -------------------------------------------------------------------
def test_trainers_check_the_dataset_family(tmp_path, sudoku_data, maze4, capsys):
    fails(trainer("sudoku"), base(maze4, tmp_path / "a"), capsys, maze4, "maze puzzles, not the sudoku puzzles train.sudoku needs",
          roots=(tmp_path, maze4))
    fails(trainer("maze"), ["--model", "trm", *TINY, f"data.path={sudoku_data}", f"system.run_dir={tmp_path / 'b'}"],
          capsys, sudoku_data, "sudoku puzzles, not the maze puzzles train.maze needs", roots=(tmp_path, sudoku_data))
    fails(trainer("sudoku"), base(REFERENCE_ARC, tmp_path / "c"), capsys, "arc puzzles", roots=(tmp_path,))
    assert not any((tmp_path / r).exists() for r in "abc")


def test_resume_checks_the_grid_of_a_new_data_path(tmp_path, sudoku_data, trained_run, capsys):
    """2x3 and 3x2 boxes make the same 6x6 shapes; only the recorded grid tells them apart."""
    wide, tall = build_sudoku(tmp_path / "wide", "--box", "2x3"), build_sudoku(tmp_path / "tall", "--box", "3x2")
    run = tmp_path / "run"
    assert run_cli(trainer(), base(wide, run, "optim.max_steps=2")) == 0
    fails(trainer(), base(tall, run, "optim.max_steps=4", "--resume"), capsys, tall, "6x6 sudoku (boxes 3x2)",
          "trained on 6x6 sudoku (boxes 2x3)", roots=(tmp_path,))


def test_tokens_checked_when_a_split_opens(tmp_path, sudoku_data, capsys):
    inputs = np.load(sudoku_data / "train" / "all__inputs.npy")
    floats = copy_dataset(sudoku_data, tmp_path / "floats", inputs=inputs.astype(np.float32) + 0.5)
    big = inputs.copy()
    big[-1, 3] = 6  # vocab 6: tokens 0..5; the last row is rarely sampled, so a batch check would miss it
    outside = copy_dataset(sudoku_data, tmp_path / "outside", inputs=big)
    negative = copy_dataset(sudoku_data, tmp_path / "negative", labels=-np.ones_like(inputs, dtype=np.int16))
    for data, names in ((floats, ["all__inputs.npy", "float32", "not integers"]),
                        (outside, ["all__inputs.npy", "token 6", "0..5"]),
                        (negative, ["all__labels.npy", "token -1"])):
        fails(trainer(), base(data, tmp_path / "r"), capsys, *names, roots=(tmp_path,))


def test_evaluate_checks_the_dataset(tmp_path, trained_run, maze4, sudoku_data, capsys):
    roots = (tmp_path, trained_run, maze4)
    fails(evaluate, [str(trained_run), "--data", str(maze4), "--out", str(tmp_path / "o")], capsys,
          maze4, "holds maze puzzles, not the sudoku puzzles the model in", roots=roots)
    floats = copy_dataset(sudoku_data, tmp_path / "floats")
    np.save(floats / "test" / "all__inputs.npy", np.load(floats / "test" / "all__inputs.npy").astype(np.float64))
    fails(evaluate, [str(trained_run), "--data", str(floats), "--out", str(tmp_path / "o")], capsys,
          "all__inputs.npy", "not integers", roots=roots)
    # the run's own evaluation is kept unless --force; an --out that is a file is refused
    fails(evaluate, [str(trained_run)], capsys, trained_run / "eval" / "test", "--force", roots=roots)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    fails(evaluate, [str(trained_run), "--out", str(a_file)], capsys, a_file, "is a file", roots=roots)


def test_nan_checkpoint_from_an_older_version_is_refused(tmp_path, trained_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    payload = load_checkpoint(run / "checkpoint.pt")
    payload["model"]["lm_head.weight"][0, 0] = float("nan")
    torch.save(payload, run / "checkpoint.pt")
    answers = tmp_path / "p.txt"
    answers.write_text(sudoku.to_text(sudoku.generate(1, box=(2, 2), seed=0)[0][0]) + "\n")
    for main, argv in ((evaluate, [str(run), "--out", str(tmp_path / "o")]),
                       (solve_cli, [str(run / "checkpoint.pt"), str(answers)])):
        fails(main, argv, capsys, run / "checkpoint.pt", "non-finite weights", "lm_head.weight", roots=(tmp_path,))


# --- NaN guard ----------------------------------------------------------------------------------
def _nan_grads_from(monkeypatch, first_bad_step: int) -> None:
    """From optimiser step `first_bad_step` on, one gradient is NaN while the loss stays finite
    (the case a loss-only check misses)."""
    from train import step as step_module
    original, calls = step_module.AdamATan2.step, [0]

    def step(self, closure=None):
        calls[0] += 1
        if calls[0] >= first_bad_step:
            next(p for p in self.param_groups[0]["params"] if p.grad is not None).grad[0] = float("nan")
        return original(self, closure)

    monkeypatch.setattr(step_module.AdamATan2, "step", step)


def test_blow_up_ends_with_the_last_finite_state(tmp_path, sudoku_data, monkeypatch, capsys):
    extra = ["optim.ema=true", "optim.max_bad_steps=3"]
    train(tiny_cfg(sudoku_data, tmp_path / "good", "optim.max_steps=3", *extra))
    _nan_grads_from(monkeypatch, 4)
    cfg = tiny_cfg(sudoku_data, tmp_path / "bad", "optim.max_steps=9", *extra)
    with pytest.raises(TrainError, match=r"3 non-finite steps in a row at step 6.*step 3\).*--resume optim.lr="):
        train(cfg)
    payload = load_checkpoint(tmp_path / "bad" / "checkpoint.pt")
    assert payload["step"] == 6 and payload["last_good_step"] == 3
    tensors = [v for v in (list(payload["model"].values()) + list(payload["optim"]["ema"]["shadow"].values()))]
    tensors += [v for s in payload["optim"]["adam"]["state"].values() for v in s.values()]
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    good, bad = final_state(tmp_path / "good"), final_state(tmp_path / "bad")
    for key in ("model", "ema", "adam", "carry"):  # exactly the state after the last good step
        assert_same(good[key], bad[key], key)
    # the documented way on: the same command with --resume and a lower lr (printed), or another
    # optimiser-only change; anything else still needs a new run folder
    monkeypatch.undo()
    capsys.readouterr()
    argv = base(sudoku_data, tmp_path / "bad", "optim.max_steps=9", *extra)
    assert run_cli(trainer(), [*argv, "optim.lr=1e-3", "optim.weight_decay=0.5", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "at step 6/9 with changed optim.lr 0.002 -> 0.001; optim.weight_decay 1.0 -> 0.5" in out
    assert load_checkpoint(tmp_path / "bad" / "checkpoint.pt")["step"] == 9
    fails(trainer(), [*argv, "arch.hidden_size=64", "--resume"], capsys, "cannot resume", "arch.hidden_size",
          roots=(tmp_path / "bad",))


def test_huge_lr_stops_with_finite_weights(tmp_path, sudoku_data, capsys):
    run = tmp_path / "r"
    argv = base(sudoku_data, run, "optim.max_steps=40", "optim.max_bad_steps=2", "optim.lr=1e6",
                "optim.lr_warmup_steps=0")
    line = fails(trainer(), argv, capsys, "non-finite steps in a row", run / "checkpoint.pt", "--resume optim.lr=",
                 roots=(sudoku_data,), new_ok=True)
    assert "Traceback" not in line
    payload = load_checkpoint(run / "checkpoint.pt")  # refuses non-finite weights itself
    assert all(torch.isfinite(v).all() for v in payload["model"].values() if v.is_floating_point())
    assert payload["step"] < 40 and payload["bad_steps"] >= 2


# --- run folder: lock, interruption, OS faults ---------------------------------------------------
def test_second_trainer_on_a_locked_folder_is_refused(tmp_path, sudoku_data, capsys):
    run = tmp_path / "r"
    run.mkdir()
    held = lock_run_dir(run)  # another trainer holds it
    try:
        fails(trainer(), base(sudoku_data, run), capsys, run, "in use by another trainer", f"pid {os.getpid()}",
              roots=(tmp_path,))
    finally:
        held.close()
    # a lock file left by a killed process holds no lock: the next run goes ahead
    assert run_cli(trainer(), base(sudoku_data, run)) == 0


def _interrupt_at(monkeypatch, step_no: int, times: int = 1) -> None:
    """Deliver Ctrl-C (SIGINT to this process) `times` times while optimiser step `step_no` runs."""
    from train.step import TrainStep
    original = TrainStep.__call__

    def call(self, carry, batch, step):
        if step == step_no:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, carry, batch, step)

    monkeypatch.setattr(TrainStep, "__call__", call)


def test_ctrl_c_saves_the_current_step_and_the_rerun_matches(tmp_path, sudoku_data, monkeypatch, capsys):
    extra = ["optim.max_steps=6", "optim.ema=true", "optim.lr_min_ratio=0.1"]
    train(tiny_cfg(sudoku_data, tmp_path / "straight", *extra))
    run = tmp_path / "r"
    argv = base(sudoku_data, run, *extra)
    _interrupt_at(monkeypatch, 4)
    capsys.readouterr()
    assert run_cli(trainer(), argv) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"interrupted: checkpoint at step 4 saved in {run / 'checkpoint.pt'}; " \
                                           f"run the same command again to continue"
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 4  # no periodic checkpoint before the end
    monkeypatch.undo()
    assert run_cli(trainer(), argv) == 0
    assert_same(final_state(tmp_path / "straight"), final_state(run))
    # a second Ctrl-C stops at once, without a checkpoint
    _interrupt_at(monkeypatch, 2, times=2)
    assert run_cli(trainer(), base(sudoku_data, tmp_path / "twice", *extra)) == 130
    assert "second Ctrl-C" in capsys.readouterr().err and not (tmp_path / "twice" / "checkpoint.pt").exists()


def test_os_faults_are_one_line(tmp_path, sudoku_data, trained_run, monkeypatch, capsys):
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    fails(trainer(), base(sudoku_data, a_file), capsys, a_file, "is a file", roots=(tmp_path,))
    fails(trainer(), base(sudoku_data, a_file / "run"), capsys, a_file, roots=(tmp_path,))
    # a read-only run folder (simulated: the tests may run as root, who may write anywhere)
    import train.loop as loop_module
    import train.run_state as run_state_module

    def read_only(run_dir):
        raise PermissionError(errno.EACCES, "Permission denied", str(run_dir / ".lock"))

    monkeypatch.setattr(run_state_module, "lock_run_dir", read_only)
    fails(trainer(), base(sudoku_data, tmp_path / "ro"), capsys, tmp_path / "ro" / ".lock", "permissions",
          roots=(tmp_path,), new_ok=True)
    monkeypatch.undo()
    # disk full while checkpointing: the old checkpoint stays, no temp file is left
    run = tmp_path / "full"
    shutil.copytree(trained_run, run)
    import train.checkpoint as ckpt_module

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write says it: no file name

    monkeypatch.setattr(ckpt_module.torch, "save", full)
    fails(trainer(), base(sudoku_data, run, "optim.max_steps=6", "optim.ema=true", "--resume"), capsys,
          "disk is full", run / "checkpoint.pt", roots=(run / "checkpoint.pt", run / "eval"), new_ok=True)  # metrics.jsonl grew
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()
    # a world size that does not divide the batch (as under torchrun): one line, not a traceback per rank
    from train.setup import System

    monkeypatch.setattr(loop_module, "setup_system", lambda *a, **k: System(torch.device("cpu"), torch.float32,
                                                                              False, rank=0, world_size=3))
    fails(trainer(), base(sudoku_data, tmp_path / "w3"), capsys, "global_batch_size=8", "3 processes",
          roots=(tmp_path,))


# --- train.solve ----------------------------------------------------------------------------------
def test_solve_keeps_answers_aligned_with_bad_lines(tmp_path, sudoku_ckpt, capsys):
    ckpt, _ = sudoku_ckpt
    grids, _ = sudoku.generate(6, box=(2, 2), seed=3)
    good = [sudoku.to_text(g) for g in grids]
    clean = tmp_path / "clean.txt"
    clean.write_text("\n".join(good) + "\n")
    assert run_cli(solve_cli, [str(ckpt), str(clean), "--slots", "2"]) == 0
    want = capsys.readouterr().out.splitlines()  # the answers, in whatever dtype this machine uses
    assert len(want) == 6 and all(len(line) == 16 for line in want)
    lines = [good[0], "12x4............", good[1], good[2], "123", "", "# note", good[3], "1" * 17, good[4], good[5]]
    src = tmp_path / "p.txt"
    src.write_text("\n".join(lines) + "\n")
    before = snapshot(tmp_path)
    assert run_cli(solve_cli, [str(ckpt), str(src), "--slots", "2"]) == 1
    out, err = capsys.readouterr()
    got = out.splitlines()
    assert len(got) == len(lines)
    assert [got[i] for i in (0, 2, 3, 7, 9, 10)] == want  # each good answer on its own puzzle's line
    assert got[1].startswith("error: invalid character 'x'") and got[4].startswith("error: expected 16 cells")
    assert got[8].startswith("error: expected 16 cells") and got[5:7] == ["", "# note"]
    assert "6 puzzles" in err and "3 bad lines" in err and f"{src}:2:" in err
    assert snapshot(tmp_path) == before


def test_solve_bad_files_and_outputs(tmp_path, sudoku_ckpt, capsys):
    ckpt, _ = sudoku_ckpt
    src = tmp_path / "p.txt"
    src.write_text(sudoku.to_text(sudoku.generate(1, box=(2, 2), seed=0)[0][0]) + "\n")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\x00\xff\xfe\x80" * 10)
    folder = tmp_path / "answers"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    cases = [
        ([str(ckpt), str(binary)], [binary, "not UTF-8"]),
        ([str(ckpt), str(src), "--out", str(folder), "--force"], [folder, "is a folder"]),
        ([str(ckpt), str(src), "--out", str(tmp_path / "no" / "such" / "a.txt")], ["does not exist"]),
        ([str(ckpt), str(tmp_path / "missing.txt")], ["missing.txt"]),
        ([str(tmp_path / "none.pt"), str(src)], ["none.pt", "does not exist"]),
        ([str(src), str(src)], [src, "truncated or corrupt"]),
    ]
    for argv, names in cases:
        fails(solve_cli, argv, capsys, *names, roots=(tmp_path,))


# --- train.visualize, bench -------------------------------------------------------------------------
def test_visualize_truncated_predictions_and_foreign_out(tmp_path, capsys):
    from tests.runs_fixture import sudoku_run
    from train.visualize import main as visualize
    run, _ = sudoku_run(tmp_path / "run")
    npz = run / "eval" / "test" / "predictions.npz"
    full = npz.read_bytes()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    fails(visualize, [str(run), "--out", str(notes), "--force"], capsys, notes, "not a report", roots=(tmp_path,))
    npz.write_bytes(full[: len(full) // 2])
    fails(visualize, [str(run), "--out", str(tmp_path / "site")], capsys, "unreadable predictions",
          roots=(tmp_path,))


def test_bench_configs_without_all(capsys):
    from bench.train_step import main as bench
    fails(bench, ["--configs", "Z"], capsys, "--configs needs --all")


def test_run_cli_names_the_path_for_os_errors(tmp_path, capsys):
    def raiser(err):
        def main(argv):
            raise err
        return main

    for err, names in ((PermissionError(errno.EACCES, "Permission denied", "/data/x"), ["/data/x", "permissions"]),
                       (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/x"), ["/f/x", "not a folder"]),
                       (IsADirectoryError(errno.EISDIR, "Is a directory", "/d"), ["/d", "give a file"]),
                       (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope"), ["/nope"]),
                       (OSError(errno.ENOSPC, "No space left on device", "/run/c.pt"), ["/run/c.pt", "disk is full"]),
                       (OSError(errno.EFBIG, "File too large", "/run/c.pt"), ["/run/c.pt", "ulimit"]),
                       (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["not UTF-8"])):
        fails(raiser(err), [], capsys, *names)


def test_batch_larger_than_the_dataset_is_one_line(tmp_path, sudoku_data, capsys):
    """A batch the training split cannot fill is the user's choice of data and batch size."""
    fails(trainer(), base(sudoku_data, tmp_path / "r", "optim.global_batch_size=100000"), capsys,
          "optim.global_batch_size", "fewer than", new_ok=True)
