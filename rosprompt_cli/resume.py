"""What `--resume` needs: a fingerprint of everything that decides a run's output, a state file
beside the output recording how far an unfinished run got, and a record beside a published
output saying which run made it.

With --resume a run continues an interrupted run of the same fingerprint, starts afresh when
there is nothing to continue, and leaves alone an output already complete for the same
fingerprint; so the same command line is safe to run every night from cron.

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
from rosprompt_cli.paths import cache_home, resolved, write_json_atomically

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


def changed_parts(previous: dict, current: dict) -> list[str]:
    """The fingerprint parts that differ, in words, in the order they are reported."""
    return [words for key, words in _PARTS.items() if previous.get(key) != current.get(key)]


class RunState:
    """The `.NAME.rosprompt-state` file of an output being written."""

    def __init__(self, target: Path, fingerprint: dict[str, str]) -> None:
        self.path = sidecar(target, "state")
        self.target = target
        self.fingerprint = fingerprint

    def load_for_resume(self) -> dict | None:
        """The saved progress, after checking that the run being resumed is this one; None when
        no run was interrupted (or one was, before its first checkpoint)."""
        if not self.path.exists():
            return None
        try:
            saved = json.loads(self.path.read_text())
            previous = saved["fingerprint"]
            progress = saved["progress"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RosPromptError(
                f"{self.path}: unreadable progress file ({exc}); run without --resume to start over"
            ) from exc
        changed = changed_parts(previous, self.fingerprint)
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


class DoneRecord:
    """What --resume knows of a published output: the fingerprint of the run that made it, its
    counts, and the file's size and modification time, so that an output complete for this run
    can be told from one made by another (other input, model, prompt, labels or options) or
    changed since. Kept in the cache (`$ROSPROMPT_HOME/outputs/`), not beside the output."""

    def __init__(self, target: Path) -> None:
        self.target = resolved(target)
        key = hashlib.sha256(str(self.target).encode()).hexdigest()[:32]
        self.path = cache_home() / "outputs" / f"{key}.json"

    def _stamp(self) -> list[int]:
        stat = self.target.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def save(self, fingerprint: dict[str, str], counts: dict) -> None:
        """After the output is published."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.path, {"version": STATE_VERSION, "output": str(self.target), "stamp": self._stamp(),
                                          "fingerprint": fingerprint, "counts": counts})

    def complete_for(self, fingerprint: dict[str, str]) -> dict:
        """The counts of the complete output, if the run that made it had this fingerprint; else
        the one-line refusal (the output is never overwritten without --force)."""
        try:
            saved = json.loads(self.path.read_text())
            known = saved["output"] == str(self.target) and saved["stamp"] == self._stamp()
            previous, counts = saved["fingerprint"], saved["counts"]
        except (OSError, ValueError, KeyError, TypeError):
            known = False
        if not known:
            raise RosPromptError(
                f"{self.target}: output file exists, and no record says which run made it (it was changed since, "
                f"or made by an older rosprompt or another tool); pass --force to overwrite it"
            )
        changed = changed_parts(previous, fingerprint)
        if changed:
            raise RosPromptError(
                f"{self.target}: output file is complete, but {', '.join(changed)} changed since it was made; "
                f"pass --force to label it again"
            )
        return counts
