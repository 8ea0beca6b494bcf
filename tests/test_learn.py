"""bench.learn: time to accuracy from a run's metrics.jsonl.  `python -m pytest -q tests/test_learn.py`"""
import json

import pytest

from bench import learn


def _write(tmp_path, records):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


RECORDS = [
    {"step": 10, "train/lm_loss": 1.0, "time/train_seconds": 30.0},  # includes compilation
    {"step": 20, "train/lm_loss": 0.9, "time/train_seconds": 32.0},
    {"step": 20, "eval/exact_accuracy": 0.4, "time/train_seconds": 32.0, "time/eval_seconds": 5.0},
    {"step": 40, "train/lm_loss": 0.5, "time/train_seconds": 36.0},
    {"step": 40, "eval/exact_accuracy": 0.93, "time/train_seconds": 36.0, "time/eval_seconds": 4.0},
    {"step": 60, "train/lm_loss": 0.3, "time/train_seconds": 40.0},
    {"step": 60, "eval/exact_accuracy": 0.91, "time/train_seconds": 40.0, "time/eval_seconds": 6.0},
]


def test_first_evaluation_reaching_each_target(tmp_path):
    row = learn.learn_row(learn.read_metrics(_write(tmp_path, RECORDS)), [0.3, 0.9, 0.95])
    assert [(r.step, r.train_seconds) for r in row.reached] == [(20, 32.0), (40, 36.0), (None, None)]
    assert row.final == 0.91 and row.steps == 60 and row.train_seconds == 40.0
    assert row.eval_seconds == 15.0 and row.evaluations == 3
    assert row.s_per_step == pytest.approx((40.0 - 30.0) / 50)  # first to last training line


def test_cli_table_and_json(tmp_path, capsys):
    run = _write(tmp_path, RECORDS)
    assert learn.main([str(run), "--targets", "0.5,0.9"]) == 0
    out = capsys.readouterr().out
    assert "| 40 / 36 | 40 / 36 |" in out and "0.910" in out
    assert learn.main([str(run), "--json", "--targets", "0.99"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["reached"] == [{"target": 0.99, "step": None, "train_seconds": None}]


@pytest.mark.parametrize("argv, words", [
    (["RUN", "--targets", "0.5,x"], "--targets"),
    (["RUN", "--targets", "1.5"], "--targets"),
    (["--run", "sudoku", "trm-mlp"], "--out"),  # nothing is trained
    (["--run", "sudoku", "trm-mlp", "system.run_dir=x", "--out", "y"], "--out"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, words):
    run = _write(tmp_path, RECORDS)
    assert learn.run_cli(learn.main, [str(run) if a == "RUN" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_missing_metrics_and_no_eval(tmp_path, capsys):
    assert learn.run_cli(learn.main, [str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
    run = _write(tmp_path, RECORDS[:2])
    assert learn.run_cli(learn.main, [str(run)]) == 2
    assert "no eval/exact_accuracy" in capsys.readouterr().err
    other = tmp_path / "other"  # beside a run that evaluated: a row of dashes and a note
    other.mkdir()
    (other / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert learn.main([str(run), str(other)]) == 0
    captured = capsys.readouterr()
    lines = {line.split(" | ")[0]: line for line in captured.out.splitlines()}
    assert "note:" in captured.err and lines[f"| {run}"].endswith("| - | - | - | - | - | 20 | 32 | - | 0.200 |")
    assert lines[f"| {other}"].startswith(f"| {other} | 40 / 36")


def test_eval_interval_steps_checked():
    from train.config import EvalConfig
    with pytest.raises(ValueError, match="eval.interval_steps"):
        EvalConfig(interval_steps=-1)


def test_run_command_is_the_trainers_own(tmp_path):
    cmd = learn.train_command("sudoku", "trm-mlp", ["optim.optimizer=muon"], tmp_path / "r")
    assert cmd[1:] == ["-m", "train.sudoku", "--model", "trm-mlp", "--preset", "quick", "optim.optimizer=muon",
                       f"system.run_dir={tmp_path / 'r'}"]
