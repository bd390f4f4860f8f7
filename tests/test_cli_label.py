"""`rosprompt label` through the real CLI on the real bundled model."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import polars as pl
import pytest

from conftest import SAMPLES, SIB_LABELS, SLICE_ROWS

LABELS = SIB_LABELS.split(",")


def _read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_to_csv_keeps_every_row_and_column(cli_process, tmp_path):
    """The smoke test of `label` in a real process."""
    out = tmp_path / "tagged.csv"
    proc = cli_process("label", SAMPLES / "news_multilingual.csv", "--labels", SIB_LABELS, "--out", out)
    assert proc.stdout == b"", "data goes to the file, nothing to stdout"
    src = _read_csv(SAMPLES / "news_multilingual.csv")
    got = _read_csv(out)
    assert len(got) == len(src) == 315
    assert list(got[0].keys()) == ["id", "lang", "category", "text", "label", "score"]
    for a, b in zip(src, got):
        assert {k: b[k] for k in a} == a, "input values come back unchanged and in order"
        assert b["label"] in LABELS
        assert 0.0 < float(b["score"]) <= 1.0
    accuracy = sum(r["label"] == r["category"] for r in got) / len(got)
    assert accuracy > 0.6, accuracy  # chance is 1/7


def test_jsonl_to_parquet_with_all_scores_and_top_k(tiny_cli, tmp_path, sample_slice):
    sample = sample_slice / "news_slice.jsonl"
    out = tmp_path / "tagged.parquet"
    tiny_cli("label", sample, "--labels", SIB_LABELS, "--out", out, "--all-scores", "--top-k", "3")
    src = pl.read_ndjson(sample)
    got = pl.read_parquet(out)
    assert got.height == src.height
    assert got.select(src.columns).equals(src), "JSON types and values preserved"
    expected_new = ["label", "score", "label_2", "score_2", "label_3", "score_3"] + [f"score_{n}" for n in LABELS]
    assert got.columns == src.columns + expected_new
    per_label = got.select([f"score_{n}" for n in LABELS]).to_numpy()
    assert abs(per_label.sum(axis=1) - 1).max() < 1e-4, "scores are a probability distribution"
    assert (got["score"] >= got["score_2"]).all() and (got["score_2"] >= got["score_3"]).all()
    assert (got["label"] != got["label_2"]).all()


def test_stdin_to_stdout(cli_process, tmp_path):
    text = "id,text\n1,The striker scored twice as the home side won the derby 3-1.\n2,\"Parliament passed the budget, after a long night of votes.\"\n"
    # in a folder of its own: runs to stdout in one folder would share its rejects file (and its lock)
    proc = cli_process("label", "-", "--labels", "sports,politics,health", input=text.encode(), cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert [r["label"] for r in rows] == ["sports", "politics"]


def test_stdin_jsonl_is_sniffed_and_empty_text_keeps_its_row(cli_process, tmp_path):
    lines = [{"text": "Heavy rain closed the mountain pass to tourists."}, {"text": ""}, {"text": None}]
    payload = "".join(json.dumps(x) + "\n" for x in lines).encode()
    proc = cli_process("label", "-", "--labels", "travel,sports", input=payload, cwd=tmp_path)
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == 3
    assert out[0]["label"] == "travel"
    assert out[1]["label"] is None and out[2]["label"] is None


def test_multi_label_column(tiny_cli, tmp_path, sample_slice):
    out = tmp_path / "m.jsonl"
    tiny_cli("label", sample_slice / "news_slice.csv", "--labels", SIB_LABELS, "--multi-label", "--threshold", "0.2", "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        chosen = row["labels"].split("|") if row["labels"] else []
        assert set(chosen) <= set(LABELS)
        if row["score"] >= 0.2:
            assert chosen[0] == row["label"], "labels are ordered by score"


def test_existing_output_needs_force(tiny_cli, tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("keep me\n")
    proc = tiny_cli("label", SAMPLES / "news_multilingual.csv", "--labels", "a,b", "--out", out, check=False)
    assert proc.returncode == 1
    assert b"--force" in proc.stderr and b"Traceback" not in proc.stderr
    assert out.read_text() == "keep me\n", "no data loss"


def test_missing_text_column_lists_columns(tiny_cli, tmp_path):
    proc = tiny_cli("label", SAMPLES / "news_multilingual.csv", "--labels", "a,b", "--text-col", "body", "--out", tmp_path / "o.csv", check=False)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "no column 'body'" in err and "id, lang, category, text" in err and "--text-col" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()
    assert list(tmp_path.iterdir()) == [], "no partial file left behind"


def test_output_column_clash_is_refused(tiny_cli, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text,label\nhello,x\n")
    proc = tiny_cli("label", src, "--labels", "a,b", "--out", tmp_path / "o.csv", check=False)
    assert proc.returncode == 1 and b"--out-label-col" in proc.stderr
    tiny_cli("label", src, "--labels", "a,b", "--out", tmp_path / "o.csv", "--out-label-col", "predicted")
    assert _read_csv(tmp_path / "o.csv")[0].keys() == {"text", "label", "predicted", "score"}
    # two added columns with one name: refused before any work, nothing written
    for args in (["--out-label-col", "x", "--out-score-col", "x"], ["--labels", "2,b", "--top-k", "2", "--all-scores"]):
        proc = tiny_cli("label", src, "--labels", "a,b", "--out-label-col", "predicted", "--out", tmp_path / "p.csv", *args,
                   check=False)
        err = " ".join(proc.stderr.decode().split())
        assert proc.returncode == 1 and "twice; give --out-label-col/--out-score-col other names" in err, err
        assert "Traceback" not in err and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("bad", ["sports,,politics", "sports,sports"])
def test_bad_label_lists(tiny_cli, bad):
    proc = tiny_cli("label", SAMPLES / "news_multilingual.csv", "--labels", bad, check=False)
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr and proc.stderr.strip()


def test_labels_file_with_multilingual_names(tiny_cli, tmp_path, sample_slice):
    out = tmp_path / "o.csv"
    tiny_cli("label", sample_slice / "news_slice.csv", "--labels-file", SAMPLES / "labels.yaml", "--out", out)
    got = _read_csv(out)
    assert len(got) == SLICE_ROWS and {r["label"] for r in got} <= set(LABELS)


def test_lexicon_names_default_on_without_a_prompt_and_can_be_switched(cli, tmp_path):
    rows = tmp_path / "few.csv"
    rows.write_text("text\nLa selección ganó el partido de fútbol anoche.\nMvua kubwa inatarajiwa kesho pwani.\n", encoding="utf-8")
    runs = {}
    for flag in ("--lexicon", "--no-lexicon"):
        out = tmp_path / f"out{flag}.csv"
        proc = cli("label", rows, "--labels", "sports,weather,knitting", "--no-prompt", "--all-scores", flag, "--out", out)
        runs[flag] = (_read_csv(out), " ".join(proc.stderr.decode().split()))  # rich wraps long lines
    default = cli("label", rows, "--labels", "sports,weather,knitting", "--no-prompt", "--out", tmp_path / "d.csv")
    assert "lexicon label names" in " ".join(default.stderr.decode().split())
    assert "lexicon label names" in runs["--lexicon"][1]
    assert "lexicon label names" not in runs["--no-lexicon"][1]
    with_lexicon, without = runs["--lexicon"][0], runs["--no-lexicon"][0]
    assert [r["label"] for r in with_lexicon] == ["sports", "weather"]
    assert with_lexicon[0]["score_sports"] != without[0]["score_sports"], "the lexicon changes the label vectors"
    assert [r["text"] for r in without] == [r["text"] for r in with_lexicon]


def test_status_lines_are_never_wrapped(tiny_cli, tmp_path, sample_slice):
    """A log from cron keeps one event per line, however narrow the terminal says it is."""
    out = tmp_path / ("a-rather-long-folder-name-" * 3)
    out.mkdir()
    proc = tiny_cli("label", sample_slice / "news_slice.jsonl", "--labels", "sports,politics", "--out", out / "o.csv",
               env={"COLUMNS": "40"})
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 2 and all(line.startswith("rosprompt: ") for line in lines), lines


@pytest.mark.parametrize("which", ["summary-is-out", "summary-is-input", "rejects-is-out", "rejects-is-input"])
def test_one_file_in_two_roles_is_refused_before_any_work(tiny_cli, tmp_path, which):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "The match ended in a draw."}\n', encoding="utf-8")
    before = src.read_bytes()
    out = tmp_path / "out.jsonl"
    args = {"summary-is-out": ["--summary", out], "summary-is-input": ["--summary", src],
            "rejects-is-out": ["--rejects", out], "rejects-is-input": ["--rejects", src]}[which]
    proc = tiny_cli("label", src, "--labels", "sports,politics", "--out", out, *args, check=False)
    err = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1 and "are the same file; give each its own" in err and "Traceback" not in err, err
    assert src.read_bytes() == before and not out.exists()


def test_a_closed_stdout_ends_the_run_quietly(tiny_cli_process, tmp_path):
    """`rosprompt label … | head -1`: once the reader goes away the run stops, without a word. The
    input is the sample 40 times over (2.5 MB of output), far more than a pipe holds, so the run
    is still writing when the reader goes."""
    src = tmp_path / "long.jsonl"
    src.write_text((SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8") * 40, encoding="utf-8")
    proc = subprocess.Popen(tiny_cli_process.command("label", src, "--labels", "sports,politics", "--chunk-rows", "20"),
                            cwd=tmp_path, env=tiny_cli_process.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert first.startswith(b'{"id":1,') and proc.returncode == 141, err
    assert "error" not in err and "Traceback" not in err
