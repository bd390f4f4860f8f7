"""The one exception type whose message is shown to users as it is, the exit codes, and the
check of an option whose value must be one of a few choices."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes (README "Exit codes"). SIGINT/SIGTERM exit with the shell's
    128 + signal number (interrupt.Interrupted)."""

    OK = 0
    ERROR = 1  # bad data, arguments or environment: one line says what and where
    USAGE = 2  # Typer/Click usage error
    INTERNAL = 3  # a bug: please report it
    REJECTED = 4  # label: output published, but some input rows were set aside (the rejects file)
    LOCKED = 5  # label: another run is writing the same output (output.OutputLocked)
    SUMMARY_NOT_WRITTEN = 6  # label: output published and complete, but --summary could not be written
    STDOUT_CLOSED = 141  # label: stdout's reader went away (| head); 128 + SIGPIPE, as the shell reports it


class RosPromptError(Exception):
    """An error in the user's data, arguments or environment.

    The message is a single line that says what is wrong and, where possible, where
    (file, line, column) and what to do. The CLI prints it without a traceback.
    """

    exit_code: int = ExitCode.ERROR


def check_choice(flag: str, value: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`, else the one-line error naming the option."""
    allowed = tuple(choices)
    if value not in allowed:
        raise RosPromptError(f"{flag} {value!r}: expected one of {', '.join(allowed)}")
    return value


class WriteFailed(RosPromptError):
    """A file could not be written (a full disk, a quota, a file system that holds no files)."""


class SummaryNotWritten(WriteFailed):
    """The run finished and published its output; only its --summary could not be written."""

    exit_code = ExitCode.SUMMARY_NOT_WRITTEN


def write_failed(path: object, exc: BaseException) -> WriteFailed:
    """The one-line error for an OSError (or a writer's error wrapping one) while writing `path`."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
    # polars words an OSError as "...: No space left on device (os error 28)"
    reason = re.sub(r"^.*underlying IO error: |\s*\(os error \d+\)$", "", reason)
    return WriteFailed(f"{path}: cannot write ({reason})")
