"""The training step and the slot engine on a CUDA GPU (runs only where one is present; CI has none).

Written after the first GPU run found the finite-state check stacking Adam's CPU step counters
with CUDA sums: code that only ever ran on a CPU cannot be trusted to run on a GPU."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_train_and_evaluate_on_cuda(tmp_path):
    from train.cli import main
    run = tmp_path / "run"
    assert main("sudoku", ["--model", "trm", "--preset", "quick", f"data.path={tmp_path / 'data'}",
                           "data.build.preset=tiny", f"system.run_dir={run}", "system.device=cuda",
                           "optim.max_steps=6", "optim.global_batch_size=8", "eval.interval_steps=3",
                           "log.progress=false"]) == 0
    assert (run / "summary.json").exists()
