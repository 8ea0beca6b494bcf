"""The trainer's errors: each is a UserError, so every CLI reports it as one `error:` line and exit
code 2 (puzzles/errors.py run_cli). A small module of its own, so that the modules that raise them
(data, checkpoints, configs, evaluation) do not depend on the run-folder module for an exception."""
from __future__ import annotations

from puzzles.errors import UserError


class TrainError(UserError):
    """A run that cannot start or continue (mismatched dataset, foreign run directory, ...)."""


class ConfigError(UserError):
    """A bad override, or a stored config that does not fit the config classes."""


class CheckpointError(UserError):
    """A checkpoint file that is missing, unreadable, truncated or not ours."""


class BatchTooLarge(UserError, ValueError):
    """The dataset cannot fill one batch: a user's choice of data and batch size, one line at the CLI."""
