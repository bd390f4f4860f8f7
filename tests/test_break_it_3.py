"""Break-it, round three (issue 31): each example of the issue, through the installed command in a
real process: its exit code, its one line, and every input value of every kept row back as it was
written (compared value by value)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from conftest import SAMPLES

LABELS = "sports,politics,health"
TEXTS = ["The striker scored twice in the cup final.", "Parliament passed the budget after a long debate.",
         "A new vaccine trial began at the city hospital."]


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("rosprompt: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    return errors[0]


def test_an_unpaired_surrogate_escape_sets_its_row_aside_and_keeps_every_other_value(tiny_cli_process, tmp_path):
    src = tmp_path / "feed.jsonl"
    src.write_text('{"id": 1, "text": "' + TEXTS[0] + '"}\n'
                   '{"id": 2, "text": "broken \\ud800 text"}\n'
                   '{"id": 3, "text": "paired \\ud83d\\ude00 emoji, ' + TEXTS[1] + '"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = tiny_cli_process("label", src, "--labels", LABELS, "--out", out, check=False)
    assert proc.returncode == 4, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [(1, TEXTS[0]), (3, "paired \U0001F600 emoji, " + TEXTS[1])]
    rejected = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["column"], r["reason"]) for r in rejected] == [(2, 27, "unpaired surrogate")]
    assert rejected[0]["raw"] == '{"id": 2, "text": "broken \\ud800 text"}', "the raw line, as written"


def test_integers_beside_decimals_keep_their_value_and_an_integer_that_would_not_is_refused(tiny_cli_process, tmp_path):
    src = tmp_path / "feed.jsonl"
    src.write_text("".join(json.dumps({"n": n, "text": t}) + "\n" for n, t in zip([1, 2.5, 3], TEXTS)),
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    tiny_cli_process("label", src, "--labels", LABELS, "--out", out)
    # one column holds both: read as decimals, so 1 is written 1.0, the same JSON number (README)
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == [1, 2.5, 3]
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                           for i, t in zip([12345678901234567, 2.5, 3], TEXTS)), encoding="utf-8")
    proc = tiny_cli_process("label", big, "--labels", LABELS, "--out", tmp_path / "big-out.jsonl", check=False)
    line = _error_line(proc)
    assert proc.returncode == 1 and not (tmp_path / "big-out.jsonl").exists()
    assert f"{big}, line 1, column 'id': the integer 12345678901234567 would lose digits" in line, line


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_advise_only_what_they_have(tiny_cli_process, tmp_path, command):
    src = tmp_path / "seed.jsonl"
    src.write_text(json.dumps({"text": TEXTS[0], "label": "sports"}) + "\n{broken\n", encoding="utf-8")
    args = ["--out", tmp_path / "p.safetensors", "--epochs", "1"] if command == "train" else []
    proc = tiny_cli_process(command, src, *args, check=False)
    line = _error_line(proc)
    assert proc.returncode == 1 and f"{src}, line 2" in line and "--on-error" not in line, line


def test_a_csv_separated_by_semicolons_is_read_as_such_and_said(cli_process, tmp_path):
    src = tmp_path / "export.csv"
    src.write_text("id;text\n" + "".join(f'{i};"{t}"\n' for i, t in enumerate(TEXTS, 1)), encoding="utf-8")
    out = tmp_path / "out.csv"
    proc = cli_process("label", src, "--labels", LABELS, "--out", out)
    assert f"{src}: fields separated by ';'" in proc.stderr.decode()
    got = pl.read_csv(out, infer_schema=False)
    assert got.columns == ["id", "text", "label", "score"]
    assert got["text"].to_list() == TEXTS and got["id"].to_list() == ["1", "2", "3"]
    assert got["label"].to_list() == ["sports", "politics", "health"]
    piped = tmp_path / "pipes.csv"
    piped.write_text("id|text\n1|" + TEXTS[0] + "\n", encoding="utf-8")
    refused = cli_process("label", piped, "--labels", LABELS, "--out", tmp_path / "o2.csv", check=False)
    assert refused.returncode == 1 and "its fields look separated by '|'" in _error_line(refused)


def test_adapt_on_too_few_distinct_texts_leaves_them_uncentred_and_says_so(tiny_cli_process, tmp_path):
    src = tmp_path / "same.jsonl"
    src.write_text("".join(json.dumps({"text": TEXTS[1]}) + "\n" for _ in range(30)), encoding="utf-8")
    plain, adapted, summary = tmp_path / "plain.jsonl", tmp_path / "adapted.jsonl", tmp_path / "run.json"
    tiny_cli_process("label", src, "--labels", LABELS, "--out", plain)
    proc = tiny_cli_process("label", src, "--labels", LABELS, "--adapt", "--out", adapted, "--summary", summary)
    err = " ".join(proc.stderr.decode().split())
    assert "--adapt left 1 group(s) as they were" in err and "fewer than 20 distinct texts" in err, err
    assert adapted.read_bytes() == plain.read_bytes(), "labels and scores of a run without --adapt"
    assert json.loads(summary.read_text())["adapt_groups_not_centred"] == 1


def test_label_files_and_option_pairs_are_refused_in_one_line(tiny_cli_process, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    spaced = tmp_path / "labels.yaml"
    spaced.write_text('"sports": [sport]\n"sports ": [football]\npolitics: [politics]\n', encoding="utf-8")
    cases = [
        (["--labels-file", spaced], f"{spaced}: label 'sports' is given twice"),
        (["--labels", "sports,sports "], "label 'sports' is given twice"),
        (["--labels-file", tmp_path], f"{tmp_path}: is a folder; give a YAML or JSON label file"),
        (["--labels", LABELS, "--quantize", "int8", "--dtype", "bfloat16"],
         "--quantize int8 runs int8 weights in float32 layers; it cannot be combined with --dtype bfloat16"),
    ]
    for args, fragment in cases:
        proc = tiny_cli_process("label", src, *args, "--out", tmp_path / "out.jsonl", check=False)
        assert proc.returncode == 1 and fragment in _error_line(proc), (args, proc.stderr)
        assert not (tmp_path / "out.jsonl").exists()


def test_a_summary_that_cannot_be_written_after_publishing_exits_6(tiny_cli, tmp_path):
    """The output is complete and published; only --summary failed: exit 6, not 1 ("nothing
    published"). The summary's folder goes away while the run labels."""
    from rosprompt_cli import LabelJob, ScorerSpec, parse_label_arg, run_label
    from rosprompt_cli.errors import ExitCode, SummaryNotWritten
    from rosprompt_cli.events import RowsFinished

    folder = tmp_path / "reports"
    folder.mkdir()
    out = tmp_path / "out.jsonl"

    def remove_folder(event: object) -> None:
        if isinstance(event, RowsFinished) and folder.exists():
            folder.rmdir()

    job = LabelJob(str(SAMPLES / "news_multilingual.jsonl"), parse_label_arg(LABELS), out=str(out),
                   summary=str(folder / "run.json"), scorer=ScorerSpec(model=tiny_cli.model))
    with pytest.raises(SummaryNotWritten) as caught:
        run_label(job, on_event=remove_folder, scorer=tiny_cli.scorers)
    assert caught.value.exit_code == ExitCode.SUMMARY_NOT_WRITTEN == 6
    assert f"{out} is complete" in str(caught.value)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 315


def test_a_parquet_text_column_of_utf8_bytes_is_labelled_and_bad_bytes_set_aside(cli_process, tmp_path):
    src = tmp_path / "bytes.parquet"
    pl.DataFrame({"id": [1, 2, 3], "text": [TEXTS[0].encode(), b"\xff\xfe not text", "médico".encode()]}).write_parquet(src)
    out = tmp_path / "out.parquet"
    proc = cli_process("label", src, "--labels", LABELS, "--out", out, check=False)
    assert proc.returncode == 4, proc.stderr
    got = pl.read_parquet(out)
    assert got["id"].to_list() == [1, 3] and got["text"].to_list() == [TEXTS[0], "médico"]
    assert got["label"].to_list()[0] == "sports"
    rejected = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["column"], r["reason"]) for r in rejected] == [(2, "text", "not UTF-8")]


def test_parquet_rows_set_aside_for_bytes_and_for_keys_are_named_by_their_row_in_the_file(tiny_cli, tmp_path):
    """Bytes that are not UTF-8 and a blank --new-only-by key in one Parquet file: each row is
    named by its place in the file (not in a copy without the other kind), set aside once (its
    text first), and the empty text counted only among the rows kept."""
    src = tmp_path / "feed.parquet"
    pl.DataFrame({
        "id": ["a", "b", " ", None, "e", "f"],
        "text": [TEXTS[0].encode(), b"\xff bad", "médico".encode(), b"\xfe both", b"  ", "fin".encode()],
    }).write_parquet(src)
    out, summary = tmp_path / "out.jsonl", tmp_path / "run.json"
    proc = tiny_cli("label", src, "--labels", LABELS, "--new-only-by", "id", "--out", out, "--summary", summary, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 4, err
    rejected = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["column"], r["reason"]) for r in rejected] == [
        (2, "text", "not UTF-8"), (3, "id", "empty key"), (4, "text", "not UTF-8")]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "e", "f"]
    report = json.loads(summary.read_text())
    assert (report["rows"], report["rejected"], report["empty_text"]) == (3, 3, 1), report
    assert "1 rows have empty or missing text (rows 5)" in err, err


def test_a_summary_that_cannot_be_written_after_publishing_exits_6_in_a_real_process(tiny_cli, tiny_cli_process, tmp_path):
    """The same through the command: its files may not grow past 1,000 bytes, which the
    one-row output fits and the summary does not (the model cache is made first, in process)."""
    from test_filesystem_conditions import _with_file_size_limit

    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"text": TEXTS[0]}) + "\n", encoding="utf-8")
    tiny_cli("label", src, "--labels", LABELS, "--out", tmp_path / "warm.jsonl")
    out, summary = tmp_path / "out.jsonl", tmp_path / "run.json"
    proc = _with_file_size_limit(tiny_cli_process, [str(src), "--labels", LABELS, "--out", str(out), "--summary",
                                                    str(summary)], 1000)
    line = _error_line(proc)
    assert proc.returncode == 6, proc.stderr
    assert f"--summary {summary}: cannot write" in line and f"{out} is complete" in line, line
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == TEXTS[0]


@pytest.mark.parametrize("role", ["input", "--out"])
def test_a_symlink_loop_is_one_line_in_a_real_process(tiny_cli_process, tmp_path, role):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": TEXTS[0]}) + "\n", encoding="utf-8")
    args = [tmp_path / "a", "--out", tmp_path / "o.jsonl"] if role == "input" else [src, "--out", tmp_path / "a"]
    proc = tiny_cli_process("label", *args, "--labels", LABELS, check=False)
    line = _error_line(proc)
    assert proc.returncode == 1 and f"{tmp_path / 'a'}" in line and "symlink loop" in line, line
    assert src.read_text(encoding="utf-8") == json.dumps({"text": TEXTS[0]}) + "\n"
