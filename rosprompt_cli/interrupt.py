"""SIGINT and SIGTERM as one exception, so that every command stops the same clean way.

The handler raises `Interrupted` wherever the main thread is (between two torch calls at worst,
well under a second). Whatever was being written is cut off by the resume logic, which trusts
only checkpointed output, so stopping anywhere is safe. Later signals are ignored while the
command cleans up.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupted(BaseException):
    """Raised in the main thread on SIGINT/SIGTERM; a BaseException so that no `except Exception`
    swallows it. The exit code is the shell's convention, 128 + signal number."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum = signum
        self.message = message or f"interrupted by {SIGNAL_NAMES.get(signum, signum)}; no output was published"
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def with_message(self, message: str) -> Interrupted:
        return Interrupted(self.signum, message)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for sig in SIGNAL_NAMES:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def install_handlers() -> None:
    for sig in SIGNAL_NAMES:
        signal.signal(sig, _on_signal)
