"""One exception type for user mistakes, and the one-line CLI wrapper that prints it.

Every command-line entry point of the project runs through `run_cli`, so a mistake the user
can fix (a bad file, a bad option) ends as `error: <what and where>` on stderr and exit code 2,
never as a traceback. Programming errors still raise normally.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class UserError(Exception):
    """A mistake the user can fix. The message must name the file/line/option at fault."""


class PuzzleError(UserError):
    """Bad puzzle input or dataset (puzzles package)."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; turn a `UserError` into one line on stderr and exit status 2."""
    try:
        return int(main(argv) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
