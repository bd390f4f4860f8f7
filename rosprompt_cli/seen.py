"""`label --new-only-by COL`: each item labelled once, across runs, by its key.

The keys of the items labelled live in an SQLite file (the standard library's sqlite3) shared by
the runs that write into one folder (or that name the same `--seen-store`): tonight's
`--out tagged/12-04.jsonl` and tomorrow's `--out tagged/12-05.jsonl` never hold the same item.
Nothing is kept in memory but one chunk's keys; lookups go to the file a chunk at a time.

Exactly once, whatever moment a run is killed at:
- a run is a row of `runs`, 'pending' until its output is published; the keys of each chunk
  are stored (with the run and the chunk's number) when the chunk is read, before it is labelled;
- before publishing, the run records which file it is about to rename into place (device, inode
  and size of the finished partial file); after the rename it marks itself 'committed';
- the next run on the store settles every pending run first: committed if its output is the file
  it recorded (killed between the rename and the commit), kept if its progress file says it can
  be resumed, else rolled back (its keys removed: the items were never published);
- only keys of committed runs (and of the run itself) count as seen, and a resumed run drops the
  keys of the chunks it has still to label; a run is refused if, since it was interrupted,
  another run published one of the items its partial output holds.
A run holds the store's lock from start to end (exit 5 for a second one), so the store never
sees two live runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import polars as pl

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.output import OutputLock, sidecar
from rosprompt_cli.paths import resolved

T = TypeVar("T")
STORE_NAME = ".rosprompt-seen.sqlite"
STORE_VERSION = "1"
_LOOKUP_BATCH = 500  # keys per query: under SQLite's limit on bound parameters
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    output TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'committed')),
    started TEXT NOT NULL,
    publishing TEXT  -- the file about to be renamed into place: "device:inode:size"
);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT NOT NULL,
    run INTEGER NOT NULL REFERENCES runs (id),
    chunk INTEGER NOT NULL,
    PRIMARY KEY (key, run)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_by_run ON seen (run, chunk);
"""


def default_store(out: Path) -> Path:
    """One store per output folder, shared by every output written there."""
    return out.parent / STORE_NAME


def file_identity(path: Path) -> str:
    stat = os.stat(path)
    return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}"


class SeenStore:
    """The store of one run, opened and locked by `open()`; `close()` releases it."""

    def __init__(self, path: Path, output: Path) -> None:
        self.path = path
        self.output = str(resolved(output))
        self.run_id: int | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = OutputLock(path, "seen store", "pass --seen-store FILE")
        self._guard = threading.Lock()  # chunks are read in the pipeline's thread, committed in the caller's

    # ------------------------------------------------------------------ opening and settling

    def open(self) -> None:
        """Lock the store (exit 5 if another run holds it), create or check it, and settle the
        runs that ended without settling their keys."""
        if self.path.is_dir():
            raise RosPromptError(f"{self.path}: the seen store is a folder; give --seen-store a file name")
        if not self.path.parent.is_dir():
            raise RosPromptError(f"{self.path}: the seen store's folder {self.path.parent} does not exist; create it first")
        self._lock.acquire()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._create()
            self._settle()
        except sqlite3.Error as exc:
            self.close()
            raise self._unusable(exc) from None
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        with self._transaction() as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "runs" not in tables:
                raise RosPromptError(f"{self.path}: an SQLite file, but not a rosprompt seen store (it has no 'runs' "
                                     f"table); pass --seen-store FILE to keep the keys elsewhere")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (STORE_VERSION,))
            version = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()[0]
            if version != STORE_VERSION:
                raise RosPromptError(f"{self.path}: a seen store of version {version}, which this rosprompt cannot "
                                     f"read")

    def _settle(self) -> None:
        """Each pending run left by a run that is gone (the store's lock says none is running):
        committed if its output is the file it was publishing, kept if its progress file can
        resume it, else rolled back."""
        with self._transaction() as db:
            pending = db.execute("SELECT id, output, publishing FROM runs WHERE status = 'pending'").fetchall()
            for run_id, output, publishing in pending:
                target = Path(output)
                if publishing and _identity_or_none(target) == publishing:
                    self._commit(run_id, output)
                elif _resumable_run(target) != run_id:
                    self._roll_back(run_id)

    def _unusable(self, exc: sqlite3.Error) -> RosPromptError:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return RosPromptError(f"{self.path}: not a usable seen store ({text}); restore it from a backup, or move "
                                  f"it away to start a new one (every item then counts as new)")
        return RosPromptError(f"{self.path}: cannot write the seen store ({text}); check that its disk has space "
                              f"and that the file and its folder are writable, or pass --seen-store FILE")

    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None, "open() first"
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, durable when it ends (SQLite's default FULL synchronous mode)."""
        with self._guard:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _guarded(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None

    # ------------------------------------------------------------------ one run

    def begin(self, progress: dict | None, grown: bool, chunk_rows: int) -> None:
        """Start this run's record. `progress`: where the run goes on from (an interrupted run's
        progress file, or with `grown` the published output's last full chunk), else None."""
        self._guarded(lambda: self._begin(progress, grown, chunk_rows))

    def _begin(self, progress: dict | None, grown: bool, chunk_rows: int) -> None:
        earlier = progress.get("seen_run") if progress else None
        # chunk c (rows from c * chunk_rows) was written if it started before `position`
        first_open_chunk = -(-int(progress.get("position", progress["rows"])) // chunk_rows) if progress else 0
        with self._transaction() as db:
            status = None
            if earlier is not None:
                row = db.execute("SELECT status FROM runs WHERE id = ? AND output = ?", (earlier, self.output)).fetchone()
                status = row[0] if row else None
            if progress is not None and not grown:  # an interrupted run goes on under its own record
                if status != "pending":
                    raise RosPromptError(f"{self.output}: the seen store {self.path} has no record of the interrupted "
                                         f"run; run without --resume to start over")
                db.execute("DELETE FROM seen WHERE run = ? AND chunk >= ?", (earlier, first_open_chunk))
                taken = db.execute(
                    "SELECT s.key FROM seen s WHERE s.run = ? AND EXISTS (SELECT 1 FROM seen o JOIN runs r ON r.id = o.run "
                    "WHERE o.key = s.key AND r.status = 'committed' AND r.output != ?) LIMIT 1", (earlier, self.output),
                ).fetchone()
                if taken:
                    raise RosPromptError(f"{self.output}: since the run was interrupted, another run published item "
                                         f"{taken[0]!r} that its partial output holds; run without --resume to start "
                                         f"over")
                self.run_id = earlier
                return
            # a fresh start discards the partial output of an interrupted run on this output
            for (stale,) in db.execute("SELECT id FROM runs WHERE output = ? AND status = 'pending'",
                                       (self.output,)).fetchall():
                self._roll_back(stale)
            started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.run_id = db.execute("INSERT INTO runs (output, status, started) VALUES (?, 'pending', ?)",
                                     (self.output, started)).lastrowid
            if grown and first_open_chunk > 0:
                if status != "committed":
                    raise RosPromptError(f"{self.output}: the seen store {self.path} no longer holds the keys of this "
                                         f"output's rows; pass --force to label it all again")
                # the rows kept from the published output are this run's too
                db.execute("INSERT INTO seen (key, run, chunk) SELECT key, ?, chunk FROM seen WHERE run = ? AND chunk < ?",
                           (self.run_id, earlier, first_open_chunk))

    def new_rows(self, frame: pl.DataFrame, key_col: str, chunk: int) -> tuple[pl.DataFrame, int]:
        """The rows of a chunk whose key no output holds yet (nor an earlier row of this run),
        and how many were skipped; the keys of the rows kept are stored at once."""
        keys = frame.get_column(key_col).cast(pl.String).to_list()
        return self._guarded(lambda: self._new_rows(frame, keys, chunk))

    def _new_rows(self, frame: pl.DataFrame, keys: list[str], chunk: int) -> tuple[pl.DataFrame, int]:
        taken = self._seen(set(keys))
        keep = []
        for key in keys:
            keep.append(key not in taken)
            taken.add(key)
        kept = [key for key, new in zip(keys, keep) if new]
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO seen (key, run, chunk) VALUES (?, ?, ?)",
                           ((key, self.run_id, chunk) for key in kept))
        return frame.filter(pl.Series(keep, dtype=pl.Boolean)), len(keys) - len(kept)

    def _seen(self, keys: Iterable[str]) -> set[str]:
        """Of these keys, those a committed run holds for another output, or this run holds."""
        found: set[str] = set()
        pending = list(keys)
        with self._guard:
            db = self._connection()
            for start in range(0, len(pending), _LOOKUP_BATCH):
                batch = pending[start:start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    f"SELECT DISTINCT s.key FROM seen s JOIN runs r ON r.id = s.run WHERE s.key IN ({marks}) "
                    f"AND ((r.status = 'committed' AND r.output != ?) OR r.id = ?)",
                    (*batch, self.output, self.run_id),
                )
                found.update(row[0] for row in rows)
        return found

    def publishing(self, partial: Path) -> None:
        """The finished partial file is about to be renamed into place."""
        self._guarded(lambda: self._set_publishing(file_identity(partial)))

    def _set_publishing(self, identity: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET publishing = ? WHERE id = ?", (identity, self.run_id))

    def published(self) -> None:
        """The output is in place: this run's keys count as seen from now on; the runs that wrote
        the file it replaced no longer hold their items."""
        def commit() -> None:
            with self._transaction():
                self._commit(self.run_id, self.output)
        self._guarded(commit)

    def abandon(self) -> None:
        """The run failed and will not be resumed: its keys go."""
        if self.run_id is None or self._db is None:
            return
        def roll_back() -> None:
            with self._transaction():
                self._roll_back(self.run_id)
        self._guarded(roll_back)
        self.run_id = None

    def _commit(self, run_id: int, output: str) -> None:
        db = self._connection()
        db.execute("UPDATE runs SET status = 'committed' WHERE id = ?", (run_id,))
        replaced = "SELECT id FROM runs WHERE output = ? AND id != ? AND status = 'committed'"
        db.execute(f"DELETE FROM seen WHERE run IN ({replaced})", (output, run_id))
        db.execute(f"DELETE FROM runs WHERE id IN ({replaced})", (output, run_id))

    def _roll_back(self, run_id: int) -> None:
        db = self._connection()
        db.execute("DELETE FROM seen WHERE run = ?", (run_id,))
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()

    def __enter__(self) -> SeenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _identity_or_none(path: Path) -> str | None:
    try:
        return file_identity(path)
    except OSError:
        return None


def _resumable_run(target: Path) -> int | None:
    """The seen-store run that the progress file beside `target` can resume, if any."""
    try:
        saved = json.loads(sidecar(target, "state").read_text())
        return int(saved["progress"]["seen_run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
