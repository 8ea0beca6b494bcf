"""One exception type for user mistakes, and the one-line CLI wrapper that prints it.

Every command-line entry point of the project runs through `run_cli`, so a mistake the user
can fix (a bad file, a bad option, a full disk, a read-only folder) ends as
`error: <what and where>` on stderr and exit code 2, never as a traceback. Programming errors
still raise normally. `atomic_write` is the one writer of result files: a temp file beside the
target, renamed over it, and removed again if anything fails; `atomic_dir` does the same for a
folder (datasets, HTML reports).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

MAX_MESSAGE = 600  # characters of an error line; longer ones (every override echoed...) are cut
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it) and put back
os.umask(_UMASK)


class UserError(Exception):
    """A mistake the user can fix. The message must name the file/line/option at fault."""


class PuzzleError(UserError):
    """Bad puzzle input or dataset (puzzles package)."""


_OS_ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space and run again",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again",
    errno.EFBIG: "the file is larger than allowed (ulimit -f?); raise the limit or free space and run again",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file",
    errno.ENOENT: "it does not exist",
    errno.EEXIST: "it already exists",
}


def os_error_line(err: OSError) -> str:
    """`<path>: <what the OS said> (<what to do>)` for an OSError raised by a file operation."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None) or "a file"
    what = err.strerror or type(err).__name__
    advice = _OS_ADVICE.get(err.errno)
    return f"{where}: {what}" + (f" ({advice})" if advice else "")


def one_line(message: str) -> str:
    """The message on one line, cut in the middle when it is very long."""
    message = " ".join(str(message).split())
    if len(message) > MAX_MESSAGE:
        half = MAX_MESSAGE // 2
        message = f"{message[:half]} ... {message[-half:]}"
    return message


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; turn a `UserError` or an OS/input error into one line on stderr and exit 2."""
    try:
        return int(main(argv) or 0)
    except UserError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # permissions, not-a-directory, disk full: the environment, not a bug
        print(f"error: {one_line(os_error_line(err))}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as err:  # readers name their file; this is the fallback
        print(f"error: an input file is not UTF-8 text ({one_line(str(err))})", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: 130; a SIGTERM the trainer handled carries 143
        print(f"interrupted{f': {err}' if str(err) else ''}", file=sys.stderr)
        return getattr(err, "exit_code", 130)


def check_output_file(path: str | os.PathLike, force: bool, option: str,
                      ours: Callable[[object], bool] | None = None) -> Path:
    """Refuse, before any work, an output file that would replace a user's file without `--force`,
    a folder, or a file in a folder that does not exist; `option` names the flag (e.g. `--out`).
    With `ours` (does this parsed JSON look like this command's output?), --force replaces only an
    earlier output of the same command, never some other file that happens to have the name."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give the name of a file to write")
    if path.exists() and not force:
        raise UserError(f"{option} {path} exists; pass --force to overwrite it")
    if path.exists() and ours is not None:
        try:
            mine = ours(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            mine = False
        if not mine:
            raise UserError(f"{option} {path} exists and is not an earlier output of this command; --force "
                            f"replaces only that: choose another name")
    if not path.absolute().parent.is_dir():
        raise UserError(f"{option} {path}: folder {path.absolute().parent} does not exist")
    return path


def check_output_dir(out: str | os.PathLike, force: bool, ours: Callable[[Path], bool], what: str,
                     option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that exists without `force`, a file in its place,
    or (even with `force`) a folder that `ours` does not recognise as `what`, an earlier output of
    the same command: --force replaces only that. The folder itself is then written by `atomic_dir`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PuzzleError(f"{option} {out} is a file; give a folder for {what}")
    if out.exists() and not force:
        raise PuzzleError(f"output folder {out} already exists; pass --force to replace it, or choose another {option}")
    if out.exists() and not ours(out):
        raise PuzzleError(f"output folder {out} holds other files: it is not {what}, the only folder --force "
                          f"replaces; choose another {option}")
    return out


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[object], None]) -> Path:
    """Write `data` (text, bytes, or a function given the open binary file) to `path` atomically:
    a temp file in the same folder, then one rename; the temp file never outlives a failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err.filename, str):  # a full disk names no file
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    return path


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh folder beside `out` to fill; when the block succeeds it becomes `out` in one
    rename (an existing `out` is moved aside first and deleted after, so a failure never loses
    both), and a failed block leaves no trace. Whether `out` may be replaced is the caller's check."""
    out = Path(out)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as err:
        blocker = next((p for p in out.parents if p.exists()), None)
        why = f"{blocker} is not a directory" if blocker and not blocker.is_dir() else err.strerror or err
        raise PuzzleError(f"cannot write output directory {out}: {why}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700; give it a normal folder's mode
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


CSV_HEADER = ["source", "question", "answer", "rating"]  # Sudoku-Extreme and Maze-Hard CSV files


def csv_rows(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """(line number, 4 fields) for each data row of a puzzle CSV (`source,question,answer,rating`);
    blank lines skipped, a wrong header or column count a one-line `PuzzleError` naming the line."""
    rows = csv.reader(text_lines(path))
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:4]] != CSV_HEADER:
        raise PuzzleError(f"{path}:1: expected the header {','.join(CSV_HEADER)}, got {header}")
    for row in rows:
        if not row:
            continue
        if len(row) != 4:
            raise PuzzleError(f"{path}:{rows.line_num}: expected 4 columns, got {len(row)}")
        yield rows.line_num, row


def text_lines(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a user's text file (a UTF-8 byte-order mark dropped, line ends kept for csv);
    a missing, unreadable or binary file is a one-line `PuzzleError` naming it."""
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as err:
        raise PuzzleError(f"cannot read {path}: {err.strerror}") from None
    with f:
        try:
            yield from f
        except UnicodeDecodeError as err:
            raise PuzzleError(f"{path}: not UTF-8 text ({err.reason}: byte {err.object[err.start]:#04x}); "
                              f"give a text file") from None
