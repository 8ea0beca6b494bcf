"""Run logging: metrics.jsonl always, Weights & Biases when asked (offline unless configured).

Only rank 0 writes. Each `log(step, metrics)` appends one JSON line with a single unbuffered write,
so a killed run keeps everything it logged and at worst leaves a partial last line. Before
appending, the log is repaired: such a partial (or otherwise malformed) last line is dropped with a
warning; malformed lines elsewhere are dropped too, the original kept beside it as
metrics.jsonl.bak (.bak1, ... if that exists); on resume the steps past the checkpoint, which are
about to be redone, are dropped. W&B never blocks on the network: unless the user set WANDB_MODE
themselves, it runs in offline mode (sync later with `wandb sync`).
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
import time
from pathlib import Path

from puzzles.errors import UserError, atomic_write

from .overrides import config_to_dict


def require_logger(logger: str) -> None:
    """W&B is an optional extra (a core install stays lean): say how to get it before any work."""
    if logger == "wandb" and importlib.util.find_spec("wandb") is None:
        raise UserError('log.logger=wandb needs the wandb package: pip install -e ".[wandb]" (or pip install wandb)')


def _record(line: bytes) -> dict | None:
    """The record on one line of metrics.jsonl, or None when the line is not one this logger writes
    (cut short by a kill, garbled, edited): a JSON object with an integer "step"."""
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    return record if isinstance(step, int) and not isinstance(step, bool) else None


def _backup(path: Path, data: bytes) -> Path:
    """Save `data` as path.bak, or .bak1, .bak2, ... : never over an existing file."""
    for n in itertools.count():
        bak = path.with_name(f"{path.name}.bak{n or ''}")
        try:
            with open(bak, "xb") as f:  # "x": fails on an existing file instead of replacing it
                f.write(data)
            return bak
        except FileExistsError:
            continue


def repair_metrics(path: Path, resume_step: int | None = None) -> None:
    """Leave `path` holding only whole records, so appends after a crash start on a fresh line and
    every reader can parse the log; on resume drop the steps after `resume_step` (redone next).

    A bad last line is what a kill while writing leaves: dropped with a warning. Bad lines elsewhere
    mean the file was damaged or edited: dropped too, and the original is kept as a backup."""
    data = path.read_bytes()
    lines = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    records = [(n, raw, _record(raw)) for n, raw in lines]
    bad = [n for n, _, record in records if record is None]
    if bad and bad == [lines[-1][0]]:
        print(f"warning: {path}: dropped its last line ({bad[0]}), which is not a whole record (cut short "
              f"when the run was stopped?)", file=sys.stderr, flush=True)
    elif bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        bak = _backup(path, data)
        print(f"warning: {path}: dropped {len(bad)} malformed line{'s' if len(bad) > 1 else ''} ({shown}); "
              f"the original is kept as {bak}", file=sys.stderr, flush=True)
    kept = b"".join(raw + b"\n" for _, raw, record in records
                    if record is not None and (resume_step is None or record["step"] <= resume_step))
    if kept != data:
        atomic_write(path, kept)


class MetricsLogger:
    def __init__(self, run_dir: Path, cfg, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.wandb = None
        self.start = time.time()
        if not enabled:
            return
        path = Path(run_dir) / "metrics.jsonl"
        if path.exists() and resume_step is None and path.stat().st_size:
            # A fresh start over the log of an earlier start that died before its first checkpoint:
            # its steps are about to be redone, so they move aside instead of being logged twice.
            bak = _backup(path, path.read_bytes())
            atomic_write(path, b"")
            print(f"note: {path} held the log of an earlier start without a checkpoint; kept as {bak}", flush=True)
        elif path.exists():
            repair_metrics(path, resume_step)
        self.file = open(path, "ab", buffering=0)  # unbuffered: each line leaves in one write
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
        line = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        while line:  # one write in practice; a short one (disk nearly full) is finished, not left partial
            line = line[self.file.write(line):]
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        if self.wandb is not None:
            self.wandb.finish()
