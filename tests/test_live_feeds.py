"""Live feeds through `rosprompt label`: an input that grows at its end (`--resume` labels only
what was appended) and overlapping fetches (`--new-only-by COL`: each item once, across runs and
crashes, by its key in an SQLite store)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO
import tiny_encoder

LABELS = "sports,politics,health,entertainment"

# every train, label and eval of this module on the tiny test encoder
cli = tiny_encoder.cli
cli_process = tiny_encoder.cli_process


TOPICS = [
    "The keeper saved a penalty in the last minute of the derby",
    "Parliament passed the new budget after a long night of debate",
    "A vaccine trial reports strong protection against the virus",
    "The film festival opened with a premiere from a young director",
]


def _items(first: int, last: int) -> list[dict]:
    return [{"url": f"https://news.example/{i}", "text": f"{TOPICS[i % 4]} ({i})", "n": i} for i in range(first, last)]


def _write(path: Path, items: list[dict], append: bool = False) -> None:
    if path.suffix == ".csv":
        frame = pl.DataFrame(items)
        with open(path, "a" if append else "w", encoding="utf-8", newline="") as fh:
            fh.write(frame.write_csv(include_header=not append))
        return
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False).to_dicts()
    if path.suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def texts_seen(monkeypatch):
    """The texts the model was given, counted at the scorer's tokeniser (every scored row passes there)."""
    from rosprompt_cli.verbalizers.embed import EmbeddingScorer

    seen: list[str] = []
    encode = EmbeddingScorer.encode

    def counting(self, texts):
        seen.extend(texts)
        return encode(self, texts)

    monkeypatch.setattr(EmbeddingScorer, "encode", counting)
    return seen


# ------------------------------------------------------------------------------ grown inputs


@pytest.mark.parametrize(("fmt", "out_fmt", "first", "chunk"), [
    ("jsonl", "jsonl", 24, 8),  # the earlier run ended on a chunk boundary: only the new rows are labelled
    ("csv", "csv", 21, 8),  # it did not: its short last chunk is labelled again, with the new rows
    ("jsonl", "parquet", 21, 8),
])
def test_an_appended_input_labels_only_what_was_added_and_gives_a_full_runs_bytes(
        cli, tmp_path, texts_seen, fmt, out_fmt, first, chunk):
    feed, out, full = tmp_path / f"feed.{fmt}", tmp_path / f"tagged.{out_fmt}", tmp_path / f"full.{out_fmt}"
    common = ["--labels", LABELS, "--chunk-rows", chunk, "--batch-size", 4]
    _write(feed, _items(0, first))
    cli("label", feed, *common, "--out", out, "--resume")
    assert len(texts_seen) == first
    _write(feed, _items(first, 40), append=True)
    texts_seen.clear()
    grown = cli("label", feed, *common, "--out", out, "--resume", "--summary", tmp_path / "s.json")
    relabelled = first % chunk  # the earlier run's short last chunk
    assert len(texts_seen) == 40 - first + relabelled
    assert texts_seen[0] == _items(first - relabelled, first - relabelled + 1)[0]["text"]
    assert f"the input grew: the first {first - relabelled} rows kept" in grown.stderr.decode()
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["input_grew"] is True and summary["resumed_from_row"] == first - relabelled
    assert summary["rows"] == 40 and sum(summary["label_counts"].values()) == 40

    cli("label", feed, *common, "--out", full)  # one run over the grown input: the same bytes
    assert out.read_bytes() == full.read_bytes()
    assert [r["url"] for r in _rows(out)] == [item["url"] for item in _items(0, 40)]
    again = cli("label", feed, *common, "--out", out, "--resume")  # and then nothing more to do
    assert "complete already" in again.stderr.decode()
    assert [p.name for p in tmp_path.iterdir() if ".rosprompt-" in p.name] == []


def test_an_input_changed_other_than_at_its_end_is_refused(cli, tmp_path):
    feed, out = tmp_path / "feed.jsonl", tmp_path / "tagged.jsonl"
    _write(feed, _items(0, 12))
    cli("label", feed, "--labels", LABELS, "--out", out, "--resume")
    published = out.read_bytes()
    edited = _items(0, 12)
    edited[5]["text"] = "An edited headline about the election"
    _write(feed, edited + _items(12, 16))
    refused = cli("label", feed, "--labels", LABELS, "--out", out, "--resume", check=False)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and err.count("error:") == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert "the input file changed since it was made, and not only by rows added at its end; pass --force" in err
    assert out.read_bytes() == published

    # grown, but the new rows change a column's type (every row's output would change): refused
    _write(feed, _items(0, 12))
    cli("label", feed, "--labels", LABELS, "--out", out, "--force")
    with open(feed, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"url": "u-x", "text": "One more", "n": 1.5}) + "\n")
    refused = cli("label", feed, "--labels", LABELS, "--out", out, "--resume", check=False)
    assert refused.returncode == 1 and "the rows added change its columns or their types" in refused.stderr.decode()

    # read while the collector was writing its last line: the line was set aside, and what is
    # appended completes it, which changes that row
    _write(feed, _items(0, 12))
    half = json.dumps(_items(12, 13)[0])
    with open(feed, "a", encoding="utf-8") as fh:
        fh.write(half[:30])
    assert cli("label", feed, "--labels", LABELS, "--out", out, "--force", check=False).returncode == 4
    with open(feed, "a", encoding="utf-8") as fh:
        fh.write(half[30:] + "\n" + json.dumps(_items(13, 14)[0]) + "\n")
    refused = cli("label", feed, "--labels", LABELS, "--out", out, "--resume", check=False)
    assert refused.returncode == 1 and "its last line had no line end" in refused.stderr.decode()


def test_adapt_is_not_continued_on_a_grown_input(cli, tmp_path):
    feed, out = tmp_path / "feed.jsonl", tmp_path / "tagged.jsonl"
    _write(feed, _items(0, 24))
    cli("label", feed, "--labels", LABELS, "--out", out, "--adapt", "--resume")
    _write(feed, _items(24, 28), append=True)
    refused = cli("label", feed, "--labels", LABELS, "--out", out, "--adapt", "--resume", check=False)
    assert refused.returncode == 1
    assert "--adapt centres the text vectors on the whole input" in refused.stderr.decode()


# ------------------------------------------------------------------------- --new-only-by


def _fetch(path: Path, first: int, last: int) -> None:
    _write(path, _items(first, last))


def _urls(folder: Path) -> list[str]:
    return [row["url"] for out in sorted(folder.glob("*.jsonl")) if "rejects" not in out.name for row in _rows(out)]


def test_overlapping_fetches_give_each_item_once(cli, tmp_path, texts_seen):
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    fetches = [(0, 20), (12, 30), (25, 40)]  # an RSS poller: each fetch repeats most of the last
    for night, (first, last) in enumerate(fetches):
        fetch = tmp_path / f"fetch{night}.jsonl"
        _fetch(fetch, first, last)
        texts_seen.clear()
        cli("label", fetch, "--labels", LABELS, "--new-only-by", "url", "--chunk-rows", 8,
            "--out", tagged / f"night{night}.jsonl", "--summary", tmp_path / f"s{night}.json")
        summary = json.loads((tmp_path / f"s{night}.json").read_text())
        previous_last = fetches[night - 1][1] if night else first
        assert summary["skipped_seen"] == previous_last - first
        assert summary["rows"] == last - previous_last == len(texts_seen), "only new items reach the model"
        assert summary["seen_store"] == str(tagged / ".rosprompt-seen.sqlite")
    urls = _urls(tagged)
    assert sorted(urls) == sorted(item["url"] for item in _items(0, 40)) and len(set(urls)) == len(urls)

    # an item repeated inside one fetch is labelled once too; a row without a key is set aside
    fetch = tmp_path / "fetch3.jsonl"
    _write(fetch, _items(40, 43) + _items(41, 42) + [{"url": " ", "text": "No key here", "n": 0}])
    done = cli("label", fetch, "--labels", LABELS, "--new-only-by", "url", "--out", tagged / "night3.jsonl",
               check=False)
    assert done.returncode == 4 and "1 empty key" in done.stderr.decode()
    assert [r["url"] for r in _rows(tagged / "night3.jsonl")] == [item["url"] for item in _items(40, 43)]
    reject = _rows(tagged / "night3.rejects.jsonl")[0]
    assert reject["line"] == 5 and reject["column"] == "url" and reject["reason"] == "empty key"


def test_replacing_an_output_keeps_its_items_in_exactly_one_output(cli, tmp_path):
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    _fetch(tmp_path / "a.csv", 0, 10)
    _fetch(tmp_path / "b.csv", 5, 15)
    args = ["--labels", LABELS, "--new-only-by", "url"]
    cli("label", tmp_path / "a.csv", *args, "--out", tagged / "a.jsonl")
    cli("label", tmp_path / "b.csv", *args, "--out", tagged / "b.jsonl")
    # a.jsonl written again (--force): its own items are new to it, b's are not
    cli("label", tmp_path / "a.csv", *args, "--out", tagged / "a.jsonl", "--force")
    assert len(_rows(tagged / "a.jsonl")) == 10
    urls = _urls(tagged)
    assert sorted(urls) == sorted(item["url"] for item in _items(0, 15)) and len(set(urls)) == len(urls)


_KILL_AT = """
import os, signal, sys
from rosprompt_cli import seen
from rosprompt_cli.commands import main

method, call, when = sys.argv.pop(1), int(sys.argv.pop(1)), sys.argv.pop(1)
original = getattr(seen.SeenStore, method)
calls = []

def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == call and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(self, *args, **kwargs)
    if len(calls) == call:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(seen.SeenStore, method, dying)
sys.argv[0] = "rosprompt"
main()
"""


@pytest.mark.parametrize(("point", "method", "call", "when"), [
    ("before the store's lock is taken", "open", 1, "before"),
    ("after settling the store, before the run starts", "begin", 1, "after"),
    ("during labelling, two chunks in", "new_rows", 2, "after"),
    ("with the output finished, before it is renamed into place", "publishing", 1, "after"),
    ("between publishing and the store's commit", "published", 1, "before"),
])
def test_kill_9_at_any_point_loses_no_item_and_repeats_none(cli, cli_process, tmp_path, point, method, call, when):
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    args = ["--labels", LABELS, "--new-only-by", "url", "--chunk-rows", 4]
    _fetch(tmp_path / "f0.jsonl", 0, 10)
    cli("label", tmp_path / "f0.jsonl", *args, "--out", tagged / "n0.jsonl")
    _fetch(tmp_path / "f1.jsonl", 6, 18)
    killed = subprocess.run([sys.executable, "-c", _KILL_AT, method, str(call), when,
                             *cli_process.argv(("label", tmp_path / "f1.jsonl", *args, "--out", tagged / "n1.jsonl",
                                                "--resume"))],
                            cwd=REPO, env=cli_process.env, capture_output=True)
    assert killed.returncode == -9, (point, killed.stderr.decode())
    assert (tagged / "n1.jsonl").exists() == (method == "published"), point
    # the same cron line again, then the next fetch
    cli("label", tmp_path / "f1.jsonl", *args, "--out", tagged / "n1.jsonl", "--resume")
    _fetch(tmp_path / "f2.jsonl", 14, 22)
    cli("label", tmp_path / "f2.jsonl", *args, "--out", tagged / "n2.jsonl", "--resume")
    urls = _urls(tagged)
    assert sorted(urls) == sorted(item["url"] for item in _items(0, 22)), point
    assert len(set(urls)) == len(urls), point
    with sqlite3.connect(tagged / ".rosprompt-seen.sqlite") as db:
        assert db.execute("SELECT count(*) FROM seen").fetchone()[0] == 22
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'pending'").fetchone()[0] == 0


def test_an_interrupted_run_resumes_with_its_keys(cli, cli_process, tmp_path):
    """SIGTERM mid-run keeps the partial output and its keys (pending); --resume goes on from
    the last saved chunk and drops the keys of chunks it has still to write."""
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    args = ["--labels", LABELS, "--new-only-by", "url", "--chunk-rows", 4]
    _fetch(tmp_path / "f.jsonl", 0, 40)
    # the ninth chunk is read at most six chunks ahead of the write stage (pipeline.DEPTH): the
    # first chunks are written, and saved in the progress file, by then
    killed = subprocess.run([sys.executable, "-c", _KILL_AT.replace("SIGKILL", "SIGTERM"), "new_rows", "9", "after",
                             *cli_process.argv(("label", tmp_path / "f.jsonl", *args, "--out", tagged / "n.jsonl"))],
                            cwd=REPO, env=cli_process.env, capture_output=True)
    assert killed.returncode == 143, killed.stderr.decode()
    done = cli("label", tmp_path / "f.jsonl", *args, "--out", tagged / "n.jsonl", "--resume")
    assert "resumed at row" in done.stderr.decode()
    assert _urls(tagged) == [item["url"] for item in _items(0, 40)]
    with sqlite3.connect(tagged / ".rosprompt-seen.sqlite") as db:
        assert db.execute("SELECT count(*), count(DISTINCT run) FROM seen").fetchone() == (40, 1)


def test_a_damaged_or_unwritable_store_is_one_line_and_publishes_nothing(cli, tmp_path):
    _fetch(tmp_path / "f.jsonl", 0, 6)
    store = tmp_path / "keys.sqlite"
    store.write_bytes(b"this is not an SQLite file, only text that looks like nothing\n" * 100)
    out = tmp_path / "n.jsonl"
    args = ["--labels", LABELS, "--new-only-by", "url", "--out", out]
    refused = cli("label", tmp_path / "f.jsonl", *args, "--seen-store", store, check=False)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and err.count("\n") == 1 and "not a usable seen store" in err, err  # before the model
    assert not out.exists()

    with sqlite3.connect(tmp_path / "other.sqlite") as db:  # an SQLite file of something else
        db.execute("CREATE TABLE t (x)")
    refused = cli("label", tmp_path / "f.jsonl", *args, "--seen-store", tmp_path / "other.sqlite", check=False)
    assert refused.returncode == 1 and "not a rosprompt seen store" in refused.stderr.decode()

    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        refused = cli("label", tmp_path / "f.jsonl", *args, "--seen-store", locked / "keys.sqlite", check=False)
        assert refused.returncode == 1 and "keys.sqlite" in refused.stderr.decode()
        (tmp_path / "ro.sqlite").touch(mode=0o400)
        refused = cli("label", tmp_path / "f.jsonl", *args, "--seen-store", tmp_path / "ro.sqlite", check=False)
        assert refused.returncode == 1 and "cannot write the seen store" in refused.stderr.decode()
        assert not out.exists()

    # a full disk (files may not grow past 2,000 bytes; the store's first page is 4,096), as root too
    from test_filesystem_conditions import _with_file_size_limit

    refused = _with_file_size_limit(cli, [str(tmp_path / "f.jsonl"), *map(str, args), "--seen-store",
                                          str(tmp_path / "new.sqlite")], 2000)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and err.count("\n") == 1 and "cannot write the seen store" in err, err
    assert "check that its disk has space" in err and not out.exists()


def test_new_only_by_refusals(cli, tmp_path):
    _fetch(tmp_path / "f.jsonl", 0, 4)
    cases = [
        (["--new-only-by", "url"], "--new-only-by needs --out FILE"),
        (["--new-only-by", "guid", "--out", tmp_path / "o.jsonl"], "--new-only-by"),
        (["--seen-store", tmp_path / "k.sqlite", "--out", tmp_path / "o.jsonl"], "pass --new-only-by COL too"),
        (["--new-only-by", "url", "--out", tmp_path / "o.jsonl", "--seen-store", tmp_path / "f.jsonl"], "--seen-store"),
    ]
    for extra, message in cases:
        refused = cli("label", tmp_path / "f.jsonl", "--labels", LABELS, *extra, check=False)
        err = refused.stderr.decode()
        assert refused.returncode == 1 and message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "o.jsonl").exists()


def test_a_second_run_on_the_same_store_is_refused_with_exit_5(cli, tmp_path):
    """Two runs that share a store (outputs in one folder) cannot both settle and skip: the
    second stops at once, before any work, as a second run on one output does."""
    from rosprompt_cli.output import OutputLock

    tagged = tmp_path / "tagged"
    tagged.mkdir()
    _fetch(tmp_path / "f.jsonl", 0, 4)
    with OutputLock(tagged / ".rosprompt-seen.sqlite", "seen store"):  # a run in progress holds it
        refused = cli("label", tmp_path / "f.jsonl", "--labels", LABELS, "--new-only-by", "url",
                      "--out", tagged / "b.jsonl", check=False)
    err = refused.stderr.decode()
    assert refused.returncode == 5 and "is writing this seen store" in err and err.count("\n") == 1, err
    assert list(tagged.iterdir()) == []


def test_a_summary_is_never_written_over_the_seen_store(cli, tmp_path):
    """A run refused before it starts still writes its --summary, but never over a file it keeps."""
    _fetch(tmp_path / "f.jsonl", 0, 4)
    store = tmp_path / "keys.sqlite"
    cli("label", tmp_path / "f.jsonl", "--labels", LABELS, "--new-only-by", "url", "--out", tmp_path / "a.jsonl",
        "--seen-store", store)
    kept = store.read_bytes()
    refused = cli("label", tmp_path / "f.jsonl", "--labels", LABELS, "--new-only-by", "url", "--out",
                  tmp_path / "b.jsonl", "--seen-store", store, "--summary", store, check=False)
    err = refused.stderr.decode()
    assert refused.returncode == 1 and "--seen-store" in err and "--summary" in err, err
    assert store.read_bytes() == kept


def test_a_folder_of_fetches_gives_each_item_once(cli, tmp_path):
    """A folder input writes one output per file (Parquet) into the --out folder, all sharing its store:
    the files are labelled in order, each item in the first file that has it."""
    fetches = tmp_path / "fetches"
    fetches.mkdir()
    _fetch(fetches / "a.jsonl", 0, 10)
    _fetch(fetches / "b.jsonl", 6, 16)
    done = cli("label", fetches, "--labels", LABELS, "--new-only-by", "url", "--out", tmp_path / "tagged",
               "--summary", tmp_path / "s.json")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["skipped_seen"] == 4 and summary["rows"] == 16, done.stderr.decode()
    assert [r["url"] for r in _rows(tmp_path / "tagged" / "b.parquet")] == [i["url"] for i in _items(10, 16)]
    assert (tmp_path / "tagged" / ".rosprompt-seen.sqlite").exists()
