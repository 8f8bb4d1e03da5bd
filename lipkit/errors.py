"""The one error boundary of every entry point: what a user can cause, said in one line.

``python -m lipkit ...``, ``scripts/gpu_window.py`` and ``scripts/run_chapters.py`` run their work
inside :func:`reported`. A mistake in the input (an option, a file, a folder made with other
settings), an I/O failure (a read-only folder, a full disk, a path that is a file) and Ctrl-C each
print one line, ``lipkit: error: ...`` or ``lipkit: interrupted ...``, that names the option or
file and the way out, with exit code 2 (130 for Ctrl-C). Anything else is a bug and keeps its
traceback. ``--debug`` or ``LIPKIT_DEBUG=1`` shows the traceback of every error.

>>> from lipkit.errors import one_line
>>> one_line(OSError(28, "No space left on device", "runs/baby/seed_0/round_03.json"))  # doctest: +ELLIPSIS
'no space left on the disk (writing runs/baby/seed_0/round_03.json): free some space, then run the same command again...'
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class UsageError(ValueError):
    """An option or a setting that cannot work; the message names it and what it must be."""


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause: reported in one line, without a traceback."""
    from lipkit.data import DataError
    from lipkit.fitting.loop import FitDivergedError
    from lipkit.store.folder import RunConfigError, RunInUseError
    from lipkit.pruning.tickets import TicketMismatchError

    errors: tuple = (UsageError, ValueError, KeyError, MemoryError, RunConfigError, RunInUseError,
                     TicketMismatchError, FitDivergedError, DataError, OSError)
    try:
        import yaml

        errors += (yaml.YAMLError,)
    except ImportError:
        pass
    return errors


def one_line(err: BaseException) -> str:
    """The message of a user error on one line; I/O errors say which file and what to do."""
    if isinstance(err, OSError) and err.errno is not None:
        return _os_error(err)
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)  # str() quotes a KeyError
    return " ".join(str(text).split()) or type(err).__name__


def _os_error(err: OSError) -> str:
    path = err.filename or "a file"
    if err.errno == errno.ENOSPC:
        return (f"no space left on the disk (writing {path}): free some space, then run the same command again; "
                "what was finished is kept and a run resumes after its last finished level")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {path} ({err.strerror}): make the folder writable, or choose another --out"
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{path} is a file where a folder is needed: remove it, or choose another --out"
    if err.errno == errno.ENOENT:
        return f"{path} does not exist ({err.strerror}): check the path"
    if err.errno == errno.EISDIR:
        return f"{path} is a folder where a file is needed: check the path"
    return f"{err.strerror or err}: {path}"


def debugging(flag: bool = False) -> bool:
    """Whether to show tracebacks: ``--debug`` or ``LIPKIT_DEBUG`` set to anything but 0."""
    return flag or os.environ.get("LIPKIT_DEBUG", "0") not in ("", "0")


RESUME = "every finished level and record is kept: run the same command again to resume"


def reported(work: Callable[[], int], *, debug: bool = False, interrupted: Callable[[], str] | None = None) -> int:
    """``work()``'s exit code; a user error prints one line (exit 2), Ctrl-C one line (exit 130).

    ``interrupted()`` says what was finished and what a rerun will do, after Ctrl-C (by default
    :data:`RESUME`).
    """
    try:
        return work()
    except KeyboardInterrupt:
        if debugging(debug):
            raise
        try:
            said = interrupted() if interrupted else RESUME
        except Exception:  # a folder that cannot be read now: the general word still holds
            said = RESUME
        print(f"lipkit: interrupted; {said}", file=sys.stderr)
        return INTERRUPTED
    except user_errors() as err:
        if debugging(debug):
            raise
        print(f"lipkit: error: {one_line(err)}", file=sys.stderr)
        return 2
