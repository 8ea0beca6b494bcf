"""Run logging: metrics.jsonl always, Weights & Biases when asked (offline unless configured).

Only rank 0 writes. Each `log(step, metrics)` appends one JSON line, flushed at once so a killed run
keeps everything it logged. W&B never blocks on the network: unless the user set WANDB_MODE
themselves, it runs in offline mode (sync later with `wandb sync`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

from puzzles.errors import UserError, atomic_write

from .overrides import config_to_dict


def require_logger(logger: str) -> None:
    """W&B is an optional extra (a core install stays lean): say how to get it before any work."""
    if logger == "wandb" and importlib.util.find_spec("wandb") is None:
        raise UserError('log.logger=wandb needs the wandb package: pip install -e ".[wandb]" (or pip install wandb)')


class MetricsLogger:
    def __init__(self, run_dir: Path, cfg, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.wandb = None
        self.start = time.time()
        if not enabled:
            return
        path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None and path.exists():
            # A killed run logged past its last checkpoint; those steps are about to be redone.
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            atomic_write(path, "".join(line + "\n" for line in kept))
        self.file = open(path, "a", encoding="utf-8")
        if cfg.log.logger == "wandb":
            require_logger(cfg.log.logger)
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb
            self.wandb = wandb.init(project=cfg.log.project, dir=str(run_dir), config=config_to_dict(cfg),
                                    name=Path(run_dir).name, resume="allow")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "wall_seconds": round(time.time() - self.start, 3)} | metrics
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
