"""The options of test-time sampling (K trajectories per puzzle, how they differ, how one answer is
chosen) and their check. Apart from the engine (train/trajectories.py runs them), so that the config
(`EvalConfig`) validates these names without importing the inference engine and the models."""
from __future__ import annotations

DIVERSITY = ("aug", "noise", "both")
RULES = ("vote", "confidence", "first-halt", "checked")
PURE_RULES = ("vote", "confidence", "first-halt")  # the model's own choice; "checked" uses the rules
NOISE = 1.0  # default latent noise scale (the latent is RMS-normed: about 1 per element)

MAX_SAMPLES = 1024  # K costs K single passes with no progress shown: far more is a typo, not a plan


def check_options(k: int, diversity: str, noise: float, rule: str, family: str | None = None) -> None:
    """ValueError naming the bad option; shared by the CLIs and EvalConfig-driven evaluation."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"samples must be an integer >= 1, got {k!r}")
    if k > MAX_SAMPLES:
        raise ValueError(f"samples must be at most {MAX_SAMPLES} (each sample is one more full pass over "
                         f"the puzzles), got {k}")
    if diversity not in DIVERSITY:
        raise ValueError(f"diversity must be one of {', '.join(DIVERSITY)}, got {diversity!r}")
    if rule not in RULES:
        raise ValueError(f"select must be one of {', '.join(RULES)}, got {rule!r}")
    if not 0.0 <= noise < float("inf"):
        raise ValueError(f"noise must be a finite scale >= 0, got {noise!r}")
    if k > 1 and diversity in ("noise", "both") and noise == 0:
        raise ValueError(f"diversity {diversity} needs a noise scale > 0")
    if family is not None and family not in ("sudoku", "maze"):
        if rule == "checked":
            raise ValueError(f"select checked needs a puzzle checker; {family} has none (sudoku and maze only)")
        if k > 1 and diversity != "noise":
            raise ValueError(f"diversity {diversity} needs sudoku or maze puzzles; use noise for {family}")
