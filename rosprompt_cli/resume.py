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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.output import sidecar
from rosprompt_cli.paths import cache_home, resolved, sha256_file, write_json_atomically
from rosprompt_cli.version import __version__

if TYPE_CHECKING:
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.verbalizers import Scorer

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


def run_fingerprint(input_path: Path, scorer: Scorer, label_set: LabelSet, options: dict) -> dict[str, str]:
    """Everything that decides a run's output, part by part (_PARTS): the input's bytes, the
    model, the prompt (its vectors and metadata), the labels, the run's `options` with the
    scorer's own settings, and the rosprompt version."""
    prompt = "none"
    if scorer.prompt is not None:
        digest = hashlib.sha256(scorer.prompt.vectors.detach().cpu().float().numpy().tobytes())
        digest.update(json.dumps(asdict(scorer.prompt.meta), sort_keys=True, default=str).encode())
        prompt = digest.hexdigest()
    backbone = scorer.backbone
    scoring = {"max_length": scorer.max_length, "device": str(backbone.device), "precision": backbone.precision,
               "runtime": backbone.runtime, "scorer": scorer.settings()}
    return {
        "input": sha256_file(input_path),
        "model": backbone.content_hash,
        "prompt": prompt,
        "labels": value_digest(label_set.name_table()),
        "options": value_digest(options | scoring),
        "version": __version__,
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


@dataclass(frozen=True)
class InputExtent:
    """What a published output covers of its input: the input's size and its column types
    (None where the format has none: CSV and TSV hold text). A later input whose first `size`
    bytes are the same and whose column types did not change has only grown at its end."""

    size: int
    schema: dict[str, str] | None = None


@dataclass(frozen=True)
class Published:
    """What --resume found of a published output made by this very run (model, prompt, labels,
    options): `counts` when it is complete for this input; `boundary` (a progress dict) when
    the input has grown since, the output being kept up to that chunk boundary."""

    counts: dict | None = None
    boundary: dict | None = None


class DoneRecord:
    """What --resume knows of a published output: the fingerprint of the run that made it, its
    counts, what it covers of its input, where its last full chunk ends, and the file's size and
    modification time, so that an output complete for this run can be told from one made by
    another (other input, model, prompt, labels or options) or changed since. Kept in the cache
    (`$ROSPROMPT_HOME/outputs/`), not beside the output."""

    def __init__(self, target: Path) -> None:
        self.target = resolved(target)
        key = hashlib.sha256(str(self.target).encode()).hexdigest()[:32]
        self.path = cache_home() / "outputs" / f"{key}.json"

    def _stamp(self, path: Path | None = None) -> list[int]:
        stat = (path or self.target).stat()
        return [stat.st_size, stat.st_mtime_ns]

    def save(self, fingerprint: dict[str, str], counts: dict, extent: InputExtent | None = None,
             boundary: dict | None = None, stamp_of: Path | None = None) -> None:
        """When the output is published; `stamp_of`: the finished file about to be renamed into
        place (a rename keeps its size and time). `boundary`: the progress after its last full
        chunk, where a run over the same input grown at its end goes on from."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.path, {"version": STATE_VERSION, "output": str(self.target),
                                          "stamp": self._stamp(stamp_of),
                                          "fingerprint": fingerprint, "counts": counts,
                                          "input": asdict(extent) if extent else None, "boundary": boundary})

    def _saved(self) -> dict:
        try:
            saved = json.loads(self.path.read_text())
            if (saved["output"] == str(self.target) and saved["stamp"] == self._stamp()
                    and isinstance(saved.get("fingerprint"), dict) and isinstance(saved.get("counts"), dict)):
                return saved
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise RosPromptError(
            f"{self.target}: output file exists, and no record says which run made it (it was changed since, "
            f"or made by an older rosprompt or another tool); pass --force to overwrite it"
        )

    def published_for(self, fingerprint: dict[str, str], input_path: Path | None = None,
                      extent: InputExtent | None = None, growth_refused: str | None = None) -> Published:
        """The output complete for this fingerprint, or made by the same run over the first part of
        this input (`input_path`, whose extent now is `extent`); anything else is refused in one
        line. `growth_refused`: why this run cannot go on from a grown input, if it cannot."""
        saved = self._saved()
        changed = changed_parts(saved["fingerprint"], fingerprint)
        if not changed:
            return Published(counts=saved["counts"])
        if changed == [_PARTS["input"]] and input_path is not None and extent is not None:
            grown = self._grown(saved, input_path, extent)
            refused = grown if isinstance(grown, str) else growth_refused
            if grown is not False and refused:
                raise RosPromptError(f"{self.target}: the input grew since this output was made, but {refused}; "
                                     f"pass --force to label it all again")
            if grown is True:
                return Published(boundary=saved["boundary"])
        how = ", and not only by rows added at its end" if changed == [_PARTS["input"]] and input_path else ""
        raise RosPromptError(
            f"{self.target}: output file is complete, but {', '.join(changed)} changed since it was made{how}; "
            f"pass --force to label it again"
        )

    def _grown(self, saved: dict, input_path: Path, extent: InputExtent) -> bool | str:
        """True when the input only grew at its end since the output was made; a reason when it
        grew but cannot be gone on from (the earlier input's last line was not ended, or the new
        rows change the column types, and with them every row's output); False when it changed
        otherwise."""
        try:
            before = InputExtent(**saved["input"])
            boundary = saved["boundary"]
        except (KeyError, TypeError):
            return False  # made by an older rosprompt, which kept no extent
        if boundary is None or extent.size <= before.size:
            return False
        if sha256_file(input_path, before.size) != saved["fingerprint"]["input"]:
            return False
        if before.size and not _ends_a_line(input_path, before.size):
            return ("its last line had no line end when the output was made, so the rows added may have joined "
                    "that line and changed its row")
        if extent.schema != before.schema:
            return "the rows added change its columns or their types, and with them every row's output"
        return True


def _ends_a_line(path: Path, size: int) -> bool:
    """Whether the first `size` bytes of the file end with a line end."""
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"
