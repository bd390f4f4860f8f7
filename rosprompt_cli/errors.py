"""The one exception type whose message is shown to users as it is."""

from __future__ import annotations


class RosPromptError(Exception):
    """An error in the user's data, arguments or environment.

    The message is a single line that says what is wrong and, where possible, where
    (file, line, column) and what to do. The CLI prints it without a traceback.
    """

    exit_code = 1
