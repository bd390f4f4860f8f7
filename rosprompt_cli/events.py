"""What library operations report while they work, as data: the CLI renders these events (status
lines, a progress bar on a terminal); a Python caller may collect, log or ignore them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Notice:
    """A status line; `warning` for something the user should look at."""

    message: str
    warning: bool = False


@dataclass(frozen=True)
class RowsStarted:
    """Work on `total` items begins (rows to label or score; epochs to train: `unit`);
    `description` says what is being done."""

    description: str
    total: int | None = None
    unit: str = "rows"


@dataclass(frozen=True)
class RowsDone:
    """`count` more items are done (labelling: after every forward pass); `note`: what to show
    beside the count, such as the last epoch's loss; `earlier`: done by an earlier run (the rows
    a resumed run starts after), so not part of this run's speed."""

    count: int
    note: str = ""
    earlier: bool = False


@dataclass(frozen=True)
class RowsFinished:
    """The rows announced by the last RowsStarted are done (or the work stopped)."""


Event = Union[Notice, RowsStarted, RowsDone, RowsFinished]
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default event handler: report nothing."""


def info(on_event: OnEvent, message: str) -> None:
    on_event(Notice(message))


def warn(on_event: OnEvent, message: str) -> None:
    on_event(Notice(message, warning=True))
