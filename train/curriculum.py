"""Depth curriculum: recursion depth and supervision steps that grow during training.

    optim.curriculum="H_cycles:1->2@0.3"                       # T=1 for the first 30% of steps, then 2
    optim.curriculum="halt_max_steps:4->8@500 H_cycles:1->2@0.5"

Early in training the model knows little, and deep recursion or many supervision steps buy little
for their cost (CGAR, Qasim et al. 2025: progressive depth cut Sudoku-Extreme training time by
~40% at equal accuracy). A stage `FIELD:FROM->TO@AT` trains with FIELD = FROM before AT and TO from
AT on; AT is an optimiser step (an integer, `@500`) or a fraction of the run's steps (with a
decimal point, `@0.3`). Stages of one field chain (`H_cycles:1->2@0.2 H_cycles:2->3@0.5`), and
the last TO must be the architecture's own value, so the trained model, its checkpoint and every
later evaluation use `arch` unchanged. Stages are separated by spaces or commas.

Fields: `H_cycles` (outer recursion cycles: the step's cost grows with it) and `halt_max_steps`
(supervision steps per example: fewer early means rows are replaced by fresh examples sooner).
Both are read by the models at every forward (models/recursion.py, models/halting.py), so a stage
changes them on the live model; a compiled step recompiles once per distinct depth, not per step.

The depth is a pure function of the step (`depth_at`), so a resumed run trains exactly as an
uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import NamedTuple

from torch import nn

from models import ModelConfig

FIELDS = ("H_cycles", "halt_max_steps")
MODELS = ("trm", "trm-mlp", "hrm")  # cores that read H_cycles at every forward (models/recursion.py)
_STAGE = re.compile(r"^(\w+):(\d+)->(\d+)@(\d+(?:\.\d*)?)$")


class Stage(NamedTuple):
    field: str
    start: int
    end: int
    at: float | int  # a step (int) or a fraction of the run's steps (float)


def parse(spec: str) -> list[Stage]:
    """`FIELD:FROM->TO@AT ...` -> stages; ValueError naming optim.curriculum for a bad spec."""
    stages = []
    for item in re.split(r"[\s,;]+", spec.strip()):
        if not item:
            continue
        m = _STAGE.match(item)
        if not m:
            raise ValueError(f"optim.curriculum: {item!r} is not FIELD:FROM->TO@AT (e.g. H_cycles:1->2@0.3)")
        field, start, end, at_text = m[1], int(m[2]), int(m[3]), m[4]
        if field not in FIELDS:
            raise ValueError(f"optim.curriculum: {field!r} cannot grow; choose from {', '.join(FIELDS)}")
        at: float | int = float(at_text) if "." in at_text else int(at_text)
        if start < 1 or end < 1 or (isinstance(at, float) and not 0.0 <= at <= 1.0):
            raise ValueError(f"optim.curriculum: {item!r}: depths must be >= 1 and a fraction in [0, 1]")
        stages.append(Stage(field, start, end, at))
    for field in FIELDS:
        own = [s for s in stages if s.field == field]
        for prev, nxt in zip(own, own[1:]):
            if nxt.start != prev.end or type(nxt.at) is not type(prev.at) or nxt.at <= prev.at:
                raise ValueError(f"optim.curriculum: the {field} stages must chain (FROM = the previous TO) "
                                 f"at increasing points of the same kind (steps or fractions)")
    return stages


def check_against(stages: list[Stage], model: str, arch: ModelConfig) -> None:
    """The curriculum must end at the architecture's own depth, on a model that can change it."""
    if stages and model not in MODELS:
        raise ValueError(f"optim.curriculum works with models {', '.join(MODELS)}, not {model!r}")
    for field in FIELDS:
        own = [s for s in stages if s.field == field]
        if own and own[-1].end != getattr(arch, field):
            raise ValueError(f"optim.curriculum: {field} ends at {own[-1].end} but arch.{field} is "
                             f"{getattr(arch, field)}; the last stage must reach the architecture's value "
                             f"(or set optim.curriculum=\"\" to train at one depth)")


def switch_step(stage: Stage, total_steps: int) -> int:
    """The first optimiser step (1-based) trained with the stage's TO value."""
    return max(1, math.ceil(stage.at * total_steps)) if isinstance(stage.at, float) else stage.at


def depth_at(stages: list[Stage], step: int, total_steps: int) -> dict[str, int]:
    """Field -> value at 1-based optimiser `step` of a `total_steps` run (only the fields staged)."""
    values: dict[str, int] = {}
    for s in stages:
        values.setdefault(s.field, s.start)
        if step >= switch_step(s, total_steps):
            values[s.field] = s.end
    return values


def apply_depth(model: nn.Module, values: dict[str, int]) -> bool:
    """Set the staged fields on every module's config (new config objects: the caller's ModelConfig,
    the one saved in checkpoints, is never changed). Returns whether anything changed."""
    changed = False
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if isinstance(cfg, ModelConfig) and any(getattr(cfg, k) != v for k, v in values.items()):
            module.config = dataclasses.replace(cfg, **values)
            changed = True
    return changed
