"""What `--resume` needs: a fingerprint of everything that decides a run's output, and a state
file beside the output recording how far the run got.

The state is rewritten atomically after each committed chunk, and only after the chunk itself
is durable (output.TableWriter.checkpoint), so after any crash it never claims more than the
partial output holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.output import sidecar
from rosprompt_cli.paths import write_json_atomically

STATE_VERSION = 1
# Fingerprint parts, in the order a mismatch is reported, with the words used to report it.
_PARTS = {
    "input": "the input file",
    "model": "the model",
    "prompt": "the prompt",
    "labels": "the labels",
    "options": "the labelling options",
    "version": "the rosprompt version",
}


def value_digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class RunState:
    """The `.NAME.rosprompt-state` file of an output being written."""

    def __init__(self, target: Path, fingerprint: dict[str, str]) -> None:
        self.path = sidecar(target, "state")
        self.target = target
        self.fingerprint = fingerprint

    def load_for_resume(self) -> dict:
        """The saved progress, after checking that the run being resumed is this one."""
        if not self.path.exists():
            raise RosPromptError(
                f"{self.target}: there is no interrupted run to resume (no progress file beside it); "
                f"run without --resume"
            )
        try:
            saved = json.loads(self.path.read_text())
            previous = saved["fingerprint"]
            progress = saved["progress"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RosPromptError(
                f"{self.path}: unreadable progress file ({exc}); run without --resume to start over"
            ) from exc
        changed = [words for key, words in _PARTS.items() if previous.get(key) != self.fingerprint.get(key)]
        if changed:
            raise RosPromptError(
                f"{self.target}: cannot resume: {', '.join(changed)} changed since the interrupted run; "
                f"run without --resume to start over"
            )
        return progress

    def save(self, progress: dict) -> None:
        write_json_atomically(
            self.path, {"version": STATE_VERSION, "fingerprint": self.fingerprint, "progress": progress}
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
