"""Cron-grade reliability of `rosprompt label`, through the real CLI in subprocesses: bad input,
exit codes, the rejects file, the run summary, the output lock, and kill-and-resume.

Every run here is on the tiny test encoder (`cli` and `cli_process` below): these are claims
about files, bytes, exit codes and messages, which need labels that are deterministic, not good."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from bad_inputs import CASES, BadInput
from conftest import REPO
import tiny_encoder

LABELS = "sports,politics,health,entertainment"

# every train, label and eval of this module on the tiny test encoder
cli = tiny_encoder.cli
cli_process = tiny_encoder.cli_process


def _records(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if path.suffix == ".parquet":
        return pl.read_parquet(path).to_dicts()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(cli, tmp_path, case: BadInput):
    src = tmp_path / case.filename
    src.write_bytes(case.content)
    (tmp_path / "broken.safetensors").write_bytes(b"this is not a safetensors file")
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    if "--labels" not in args:
        args += ["--labels", LABELS]
    out = tmp_path / "out.jsonl"
    if "--out" not in args:
        args += ["--out", out]
    else:
        out = Path(args[args.index("--out") + 1])
    proc = cli("label", src, *args, check=False)
    err = " ".join(proc.stderr.decode(errors="replace").split())
    assert proc.returncode == case.exit_code, err
    assert "Traceback" not in err
    for fragment in case.message:
        assert fragment in err, (fragment, err)
    if case.exit_code in (0, 4):
        assert out.exists()
        rows = _records(out) if out.stat().st_size else []
        assert len(rows) == case.rows_out, rows
    else:
        assert not out.exists(), "a failed run publishes nothing"
        assert err.startswith("rosprompt: error:") and err.count("rosprompt: error:") == 1, err
    rejects = tmp_path / "out.rejects.jsonl"
    rejected = _records(rejects) if rejects.exists() else []
    assert len(rejected) == case.rejected
    if case.exit_code in (0, 4):
        assert case.rows_out + len(rejected) == case.records, "no row lost"
        if case.filename.endswith(".parquet"):  # no lines: a row's number, and its text as it was stored
            import io

            texts = pl.read_parquet(io.BytesIO(case.content))["text"].to_list()
            original = [t if isinstance(t, bytes) else t.encode() for t in texts]
        else:
            original = case.content.splitlines()
        for reject in rejected:  # each set-aside row keeps its line number and its original text
            assert reject["reason"] and reject["detail"]
            raw = original[reject["line"] - 1].decode("utf-8", "backslashreplace")
            assert reject["raw"] == raw
    leftovers = [p.name for p in tmp_path.iterdir() if ".rosprompt-" in p.name]
    assert leftovers == [], "no partial, lock or progress file is left behind"


def test_output_folder_not_writable(cli, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write to any folder")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n")
    proc = cli("label", src, "--labels", LABELS, "--out", ro / "o.csv", check=False)
    assert proc.returncode == 1 and b"is not writable" in proc.stderr


def test_summary_file_counts_everything(cli, tmp_path):
    src = tmp_path / "feed.jsonl"
    src.write_bytes(
        b'{"text": "The striker scored twice in the final"}\n{"text": \n[3]\n{"text": ""}\n'
        b'{"text": "Hospitals report fewer flu cases this winter"}\n'
    )
    summary = tmp_path / "run.json"
    proc = cli("label", src, "--labels", LABELS, "--out", tmp_path / "o.parquet", "--summary", summary, check=False)
    assert proc.returncode == 4
    data = json.loads(summary.read_text())
    assert (data["engine"], data["status"]) == ("local", "partial")  # every summary shape names its engine
    assert (data["rows_read"], data["rows"], data["labelled"], data["empty_text"], data["rejected"]) == (5, 3, 2, 1, 2)
    assert data["rejected_by_reason"] == {"invalid JSON": 1, "not a JSON object": 1}
    labels = pl.read_parquet(tmp_path / "o.parquet")["label"].drop_nulls().to_list()
    assert data["label_counts"] == {label: labels.count(label) for label in set(labels)} and len(labels) == 2
    assert data["rejects_file"].endswith("o.rejects.jsonl")
    assert data["model"]["name"] == str(Path(cli.model).resolve()) and data["model"]["content_hash"]
    assert "prompt" in data["prompt"] and data["labels"] == LABELS.split(",")
    assert set(data["versions"]) >= {"rosprompt", "torch", "transformers", "polars", "python"}
    assert data["seconds"] > 0 and data["rows_per_second"] > 0
    # A failed run writes a summary too, with the reason.
    proc = cli("label", src, "--labels", LABELS, "--out", tmp_path / "o2.csv", "--on-error", "fail",
               "--summary", summary, check=False)
    assert proc.returncode == 1
    failed = json.loads(summary.read_text())
    assert failed["status"] == "failed" and "line 2" in failed["error"]


def _corpus(path: Path, rows: int) -> None:
    topics = [
        "The keeper saved a penalty in the last minute of the derby",
        "Parliament passed the new budget after a long night of debate",
        "A vaccine trial reports strong protection against the virus",
        "The film festival opened with a premiere from a young director",
    ]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": i, "text": f"{topics[i % 4]} ({i})", "n": i * 0.5}) + "\n")


def _start(cli, *args: object) -> subprocess.Popen:
    return subprocess.Popen(cli.command("label", *args), cwd=REPO, env=cli.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for_progress(state: Path, proc: subprocess.Popen, rows: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            if json.loads(state.read_text())["progress"]["rows"] >= rows:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("the run made no progress")


# Rows for a run that must still be labelling when the test signals it: the tiny encoder labels
# thousands of rows a second, so a kill test gives it a few seconds of work (_interrupt checks).
MANY = 10_000


def _interrupt(proc: subprocess.Popen, how: signal.Signals, exit_code: int) -> bytes:
    """Send `how` to a run, which must still be running (one that had ended would have exited 0
    or 4, and fails here); its stderr, after checking that it exited with `exit_code`."""
    assert proc.poll() is None, "the run ended before it was interrupted: give it more rows"
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == exit_code, (proc.returncode, err.decode(errors="replace"))
    return err


def _resumed_row(stderr: bytes, rows: int) -> int:
    """The row a resumed run says it continued from, checked to be inside the input: the run it
    continues was interrupted mid-run, not after its last row."""
    import re

    found = re.search(rb"resumed at row ([\d,]+)", stderr)
    assert found, stderr
    row = int(found.group(1).replace(b",", b""))
    assert 0 < row < rows, (row, rows)
    return row


@pytest.mark.parametrize(("fmt", "how"), [("csv", signal.SIGKILL), ("jsonl", signal.SIGTERM), ("parquet", signal.SIGKILL)])
def test_kill_and_resume_gives_the_uninterrupted_output(cli, tmp_path, fmt, how):
    src = tmp_path / "feed.jsonl"
    _corpus(src, MANY + 30)  # killed after two chunks or more, with chunks left to resume (the last one short)
    common = ["--labels", LABELS, "--chunk-rows", "50", "--batch-size", "16"]
    reference = tmp_path / f"reference.{fmt}"
    cli("label", src, *common, "--out", reference)

    out = tmp_path / f"out.{fmt}"
    state = tmp_path / f".out.{fmt}.rosprompt-state"
    proc = _start(cli, src, *common, "--out", out)
    _wait_for_progress(state, proc, 100)
    err = _interrupt(proc, how, -signal.SIGKILL if how == signal.SIGKILL else 143)
    if how == signal.SIGTERM:
        assert b"--resume" in err and b"Traceback" not in err
    assert not out.exists(), "an interrupted run publishes nothing"

    resumed = cli("label", src, *common, "--out", out, "--resume")
    assert _resumed_row(resumed.stderr, MANY + 30) >= 100
    if fmt == "parquet":
        assert pl.read_parquet(out).equals(pl.read_parquet(reference)), "row for row the same"
    else:
        assert out.read_bytes() == reference.read_bytes(), "byte for byte the same"
    assert [p.name for p in tmp_path.iterdir() if ".rosprompt-" in p.name] == []


def test_resume_is_refused_when_the_run_changed(cli, tmp_path):
    src = tmp_path / "feed.jsonl"
    _corpus(src, MANY)
    common = ["--chunk-rows", "50", "--batch-size", "16", "--out", tmp_path / "o.csv"]
    proc = _start(cli, src, "--labels", LABELS, *common)
    _wait_for_progress(tmp_path / ".o.csv.rosprompt-state", proc, 50)
    assert b"--resume" in _interrupt(proc, signal.SIGINT, 130)

    changed = cli("label", src, "--labels", "sports,politics", *common, "--resume", check=False)
    assert changed.returncode == 1 and b"the labels changed" in changed.stderr
    with open(src, "a") as fh:
        fh.write('{"id": -1, "text": "one more"}\n')
    changed = cli("label", src, "--labels", LABELS, *common, "--resume", check=False)
    assert changed.returncode == 1 and b"the input file changed" in changed.stderr
    # nothing to resume (a first night, or a run killed before its first checkpoint): start afresh
    nothing = cli("label", src, "--labels", LABELS, "--out", tmp_path / "other.csv", "--resume")
    assert len(_records(tmp_path / "other.csv")) == MANY + 1 and b"resumed" not in nothing.stderr
    fresh = cli("label", src, "--labels", LABELS, *common)  # without --resume: starts over
    assert len(_records(tmp_path / "o.csv")) == MANY + 1 and b"resumed" not in fresh.stderr


def _stop(proc: subprocess.Popen) -> None:
    """Freeze a run that is still labelling (SIGSTOP): it keeps its locks, however fast the
    model, until it is continued (SIGCONT) or killed."""
    assert proc.poll() is None, "the run ended before it was stopped: give it more rows"
    proc.send_signal(signal.SIGSTOP)


def test_a_second_run_on_the_same_output_is_refused(cli, cli_process, tmp_path):
    src = tmp_path / "feed.jsonl"
    _corpus(src, MANY)
    out = tmp_path / "o.csv"
    first = _start(cli, src, "--labels", LABELS, "--chunk-rows", "50", "--batch-size", "16", "--out", out)
    try:
        _wait_for_progress(tmp_path / ".o.csv.rosprompt-state", first, 50)
        _stop(first)  # mid-run, holding the output's lock
        second = cli_process("label", src, "--labels", LABELS, "--out", out, "--force", check=False)
        assert second.returncode == 5, second.stderr
        assert b"another rosprompt run" in second.stderr and b"pid" in second.stderr
        assert first.poll() is None, "the first run held the lock all along"
    finally:
        first.kill()
        first.communicate()
    # The lock dies with its holder: a new run (here resuming) is not blocked by a stale lock.
    cli("label", src, "--labels", LABELS, "--chunk-rows", "50", "--batch-size", "16", "--out", out, "--resume")
    assert len(_records(out)) == MANY


def test_the_cron_line_with_resume_is_safe_every_night(cli, tmp_path):
    """README's cron recipe: the same command line, night after night, whatever happened before."""
    src = tmp_path / "feed.jsonl"
    _corpus(src, MANY)

    def night(out: Path, labels: str = LABELS) -> list[object]:
        return [src, "--labels", labels, "--chunk-rows", "50", "--batch-size", "16", "--out", out,
                "--summary", tmp_path / "run.json", "--resume"]

    out = tmp_path / "tagged.jsonl"
    # a night killed before its first checkpoint (the model still loading): no progress file is left
    early = _start(cli, *night(out))
    time.sleep(1.0)
    _interrupt(early, signal.SIGKILL, -signal.SIGKILL)
    assert not out.exists() and not (tmp_path / ".tagged.jsonl.rosprompt-state").exists()
    # the next night the same line starts afresh
    cli("label", *night(out))
    reference, stamp = out.read_bytes(), out.stat().st_mtime_ns
    assert len(_records(out)) == MANY and json.loads((tmp_path / "run.json").read_text())["status"] == "ok"
    # run again on a complete output: exit 0, one line, the output untouched
    again = cli("label", *night(out))
    assert b"complete already" in again.stderr and out.stat().st_mtime_ns == stamp
    summary = json.loads((tmp_path / "run.json").read_text())
    assert (summary["status"], summary["rows"]) == ("complete", MANY)
    # a night interrupted after some chunks (SIGKILL), then the same line continues it
    day2 = tmp_path / "day2.jsonl"
    proc = _start(cli, *night(day2))
    _wait_for_progress(tmp_path / ".day2.jsonl.rosprompt-state", proc, 100)
    _interrupt(proc, signal.SIGKILL, -signal.SIGKILL)
    resumed = cli("label", *night(day2))
    assert _resumed_row(resumed.stderr, MANY) >= 100 and day2.read_bytes() == reference
    # a night with other labels on a complete output: refused, naming what changed, nothing touched
    changed = cli("label", *night(out, "sports,politics"), check=False)
    assert changed.returncode == 1 and b"the labels changed" in changed.stderr and b"Traceback" not in changed.stderr
    assert out.read_bytes() == reference and out.stat().st_mtime_ns == stamp


def test_summary_says_failed_when_the_run_fails_before_it_starts(cli, tmp_path):
    """A monitor reading --summary must not see yesterday's "ok" after a run that never started."""
    summary = tmp_path / "run.json"
    (tmp_path / "notes.txt").write_text("text\nhello\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    early_failures = [
        ([tmp_path / "missing.jsonl", "--labels", "a,b"], "input file not found"),
        ([tmp_path / "notes.txt", "--labels", "a,b"], "cannot tell the input format"),
        ([tmp_path / "empty", "--labels", "a,b"], "no input files"),
        ([tmp_path / "notes.txt", "--labels-file", tmp_path / "nope.yaml"], "label file not found"),
    ]
    for args, error in early_failures:
        summary.write_text('{"status": "ok"}\n', encoding="utf-8")  # yesterday's
        out = tmp_path / ("o" if args[0].name == "empty" else "o.jsonl")
        proc = cli("label", *args, "--out", out, "--summary", summary, check=False)
        data = json.loads(summary.read_text())
        assert proc.returncode == 1 and data["status"] == "failed" and error in data["error"], (args, data)
        assert b"Traceback" not in proc.stderr
    # but never over a file the run was told to read or write
    src = tmp_path / "feed.jsonl"
    _corpus(src, 3)
    before = src.read_bytes()
    cli("label", src, "--labels", "a,b", "--out", tmp_path / "o.jsonl", "--summary", src, check=False)
    assert src.read_bytes() == before


def test_quoted_and_plain_text_come_out_as_written(cli, tmp_path):
    """TSV is the plain tab-separated format (a quote is text), except a wholly quoted field with
    its quotes doubled, as pandas and polars write TSV; CSV follows its quoting rules."""
    tsv = tmp_path / "in.tsv"
    tsv.write_bytes(b'text\tid\n"Quoted" text\t1\n"open quote\t2\n"""She said so,"" he wrote."\t3\n')
    cli("label", tsv, "--labels", LABELS, "--out", tmp_path / "tsv.jsonl")
    assert [r["text"] for r in _records(tmp_path / "tsv.jsonl")] == [
        '"Quoted" text', '"open quote', '"She said so," he wrote.']
    src = tmp_path / "in.csv"
    src.write_bytes(b'text,id\n"ok, fine",1\n"two\nlines",2\n"say ""hi""",3\n')
    cli("label", src, "--labels", LABELS, "--out", tmp_path / "csv.jsonl")
    assert [r["text"] for r in _records(tmp_path / "csv.jsonl")] == ["ok, fine", "two\nlines", 'say "hi"']
    # rosprompt's own TSV output (quoted where a value has a quote) reads back as the same text
    cli("label", tmp_path / "tsv.jsonl", "--labels", LABELS, "--out", tmp_path / "back.tsv",
        "--out-label-col", "label2", "--out-score-col", "score2")
    cli("label", tmp_path / "back.tsv", "--labels", LABELS, "--out", tmp_path / "back.jsonl",
        "--out-label-col", "label3", "--out-score-col", "score3")
    assert [r["text"] for r in _records(tmp_path / "back.jsonl")] == [
        '"Quoted" text', '"open quote', '"She said so," he wrote.']


def _limited(cli, max_bytes: int, *args: object) -> subprocess.CompletedProcess:
    """A run whose files may not grow past `max_bytes` (RLIMIT_FSIZE): writes then fail as on a
    full disk (EFBIG instead of ENOSPC, through the same code)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(cli.command("label", *args), cwd=REPO, env=cli.env, capture_output=True,
                          preexec_fn=limit, timeout=900)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_full_disk_names_the_file_publishes_nothing_and_stays_resumable(cli, tmp_path, fmt):
    src = tmp_path / "feed.csv"  # CSV is read in place (a JSONL input with a bad line gets a clean copy)
    pl.read_ndjson(_corpus(tmp_path / "feed.jsonl", 150) or tmp_path / "feed.jsonl").write_csv(src)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("1,2,3,4,5\n")
    common = ["--labels", LABELS, "--chunk-rows", "50", "--batch-size", "16"]
    cli("label", src, *common, "--out", tmp_path / f"reference.{fmt}", check=False)
    out = tmp_path / f"o.{fmt}"
    # 8 kB: the first chunk (50 rows, 5-7 kB) is written and checkpointed, the second does not fit
    full = _limited(cli, 8_000, src, *common, "--out", out, "--summary", tmp_path / "run.json")
    err = full.stderr.decode()
    assert full.returncode == 1 and "Traceback" not in err, err
    assert f"{out}: cannot write (File too large)" in err and "--resume to continue after row" in err, err
    assert not out.exists() and not (tmp_path / "o.rejects.jsonl").exists(), "nothing that looks complete"
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["status"] == "failed" and "cannot write" in summary["error"]
    resumed = cli("label", src, *common, "--out", out, "--resume", check=False)
    assert resumed.returncode == 4 and b"resumed at row" in resumed.stderr, resumed.stderr
    assert out.read_bytes() == (tmp_path / f"reference.{fmt}").read_bytes()
    assert len(_records(tmp_path / "o.rejects.jsonl")) == 1, "the rejected row is kept"


def test_a_full_disk_for_the_rejects_file_is_found_before_any_labelling(cli, tmp_path):
    src = tmp_path / "feed.jsonl"
    _corpus(src, 20)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("{broken " + "x" * 30_000 + "\n")
    out = tmp_path / "o.jsonl"
    proc = _limited(cli, 20_000, src, "--labels", LABELS, "--out", out)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and f"{tmp_path / 'o.rejects.jsonl'}: cannot write" in err, err
    assert "labels" not in err.split("cannot write")[0], "refused before the model was loaded"
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["feed.jsonl"]


def test_a_fifo_is_read_once_and_a_waiting_run_still_stops_on_a_signal(cli_process, tmp_path):
    import threading

    src = tmp_path / "feed.jsonl"
    _corpus(src, 120)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(src.read_bytes()))
    writer.start()
    cli_process("label", fifo, "--labels", LABELS, "--out", tmp_path / "o.csv")
    writer.join()
    assert [int(r["id"]) for r in _records(tmp_path / "o.csv")] == list(range(120))
    # nobody writes to the FIFO: SIGTERM ends the wait at once, leaving nothing behind
    waiting = _start(cli_process, fifo, "--labels", LABELS, "--out", tmp_path / "o2.csv")
    time.sleep(3)
    waiting.send_signal(signal.SIGTERM)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 143 and b"interrupted by SIGTERM" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.jsonl", "o.csv", "pipe.jsonl"]


def test_an_input_the_user_may_not_read_is_one_line(cli_process, tmp_path):
    import shutil

    src = tmp_path / "secret.csv"
    src.write_text("text\nhello\n", encoding="utf-8")
    src.chmod(0)
    command = cli_process.command("label", src, "--labels", LABELS, "--out", tmp_path / "o.csv")
    if os.geteuid() == 0:  # root reads anything; without these two capabilities it cannot
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop the file-permission capabilities")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    proc = subprocess.run(command, env=cli_process.env, capture_output=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.decode().strip() == f"rosprompt: error: {src}: cannot read the input (Permission denied)"


def test_two_runs_never_share_a_rejects_file(cli, cli_process, tmp_path):
    """--out day.csv and --out day.jsonl at once would both set rows aside in day.rejects.jsonl:
    the second is refused before any work, and the first keeps its rejected rows."""
    src = tmp_path / "feed.jsonl"
    _corpus(src, MANY)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    first = _start(cli, src, "--labels", LABELS, "--chunk-rows", "50", "--batch-size", "16",
                   "--out", tmp_path / "day.csv")
    try:
        _wait_for_progress(tmp_path / ".day.csv.rosprompt-state", first, 50)
        _stop(first)  # mid-run, holding the rejects file's lock
        second = cli_process("label", src, "--labels", LABELS, "--out", tmp_path / "day.jsonl", check=False)
        assert second.returncode == 5, second.stderr
        assert b"day.rejects.jsonl: another rosprompt run" in second.stderr
        assert b"pass --rejects FILE" in second.stderr
        assert not (tmp_path / "day.jsonl").exists()
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=600)
    assert first.returncode == 4, err
    assert len(_records(tmp_path / "day.rejects.jsonl")) == 1 and len(_records(tmp_path / "day.csv")) == MANY


def test_train_and_eval_never_write_over_what_they_read(cli, tmp_path):
    """`eval --output` naming the input replaced the labelled data with the metrics (exit 0)."""
    import shutil

    sample = tmp_path / "sample.csv"
    shutil.copy(REPO / "samples" / "news_multilingual.csv", sample)
    seed = tmp_path / "seed.csv"
    shutil.copy(REPO / "samples" / "train_en.csv", seed)
    before = sample.read_bytes(), seed.read_bytes()
    refused = [
        (("eval", sample, "--label-col", "category", "--output", sample), "the input and --output are the same file"),
        (("train", seed, "--out", seed, "--force"), "the input and --out are the same file"),
        (("train", seed, "--dev", sample, "--out", sample, "--force"), "--dev and --out are the same file"),
    ]
    for args, message in refused:
        proc = cli(*args, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and message in err and "Traceback" not in err, (args, err)
    assert (sample.read_bytes(), seed.read_bytes()) == before


def test_label_never_writes_over_its_label_or_prompt_file(cli, tmp_path):
    import shutil

    labels = tmp_path / "labels.yaml"
    shutil.copy(REPO / "samples" / "labels.yaml", labels)
    prompt = tmp_path / "p.safetensors"
    shutil.copy(REPO / "prompts" / "default.safetensors", prompt)
    before = labels.read_bytes(), prompt.read_bytes()
    src = tmp_path / "feed.jsonl"
    _corpus(src, 3)
    for args, message in [
        (("--labels-file", labels, "--summary", labels), "--summary and --labels-file are the same file"),
        (("--labels", LABELS, "--prompt", prompt, "--summary", prompt), "--summary and --prompt are the same file"),
    ]:
        proc = cli("label", src, *args, "--out", tmp_path / "o.jsonl", check=False)
        assert proc.returncode == 1 and message in proc.stderr.decode(), proc.stderr
    assert (labels.read_bytes(), prompt.read_bytes()) == before and not (tmp_path / "o.jsonl").exists()
