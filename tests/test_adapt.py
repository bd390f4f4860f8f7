"""`--adapt` / `--adapt-by`: corpus centring at label and eval time. Deterministic, resumable to
the byte, bounded in what it embeds, and refused in one line where it cannot work."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES
from rosprompt_cli.adapt import AdaptOptions, Centres, estimate_centres, estimate_streaming, sample_positions
from rosprompt_cli.errors import RosPromptError

LABELS_FILE = SAMPLES / "labels.yaml"


def test_the_sample_is_capped_per_group_and_evenly_spread():
    groups = ["a"] * 10_000 + ["b"] * 30 + ["a"] * 5
    chosen = sample_positions(groups, 100)
    assert len(chosen) == 100 + 30
    in_a = [p for p in chosen if groups[p] == "a"]
    assert in_a[0] == 0 and in_a[-1] > 9_800, "spread over the whole group, not its start"
    assert sample_positions(groups, 100) == chosen, "the same input, the same sample"
    with pytest.raises(RosPromptError, match="more than 1,000 values"):
        sample_positions([str(i) for i in range(1_001)], 100)


def test_the_streaming_estimate_embeds_only_the_sample_and_equals_the_in_memory_one():
    rng = np.random.default_rng(0)
    groups = [("sw", "en", "en")[i % 3] for i in range(9_000)]
    vectors = rng.normal(size=(9_000, 8)).astype(np.float32)
    texts = [str(i) for i in range(9_000)]
    embedded: list[str] = []

    def vectors_of(batch: list[str]) -> np.ndarray:
        embedded.extend(batch)
        return vectors[[int(t) for t in batch]]

    def rows():  # the input read in chunks of 1,000 rows
        for start in range(0, 9_000, 1_000):
            yield texts[start:start + 1_000], groups[start:start + 1_000]

    options = AdaptOptions(by="lang", sample_rows=200)
    streamed = estimate_streaming(rows, options, vectors_of)
    assert len(embedded) == 400, "at most sample_rows texts per group are embedded, whatever the input size"
    in_memory = estimate_centres(groups, options, lambda positions: vectors[positions])
    assert streamed.digest() == in_memory.digest()
    assert Centres.from_dict(json.loads(json.dumps(streamed.as_dict()))).digest() == streamed.digest()


def _label(cli, *args: object, check: bool = True, src: Path = SAMPLES / "news_multilingual.csv"):
    return cli("label", src, "--labels-file", LABELS_FILE, *args, check=check)


def test_label_adapt_is_deterministic_and_changes_the_scores(cli, cli_process, tmp_path, sample_slice):
    src = sample_slice / "news_three_languages.csv"  # 84 rows, 28 in each of 3 languages
    _label(cli, "--out", tmp_path / "plain.csv", src=src)
    first = _label(cli, "--adapt-by", "lang", "--out", tmp_path / "a.csv", "--summary", tmp_path / "run.json", src=src)
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "plain.csv").read_bytes()
    assert b"centred on 3 groups, from 84 sampled rows" in first.stderr
    assert json.loads((tmp_path / "run.json").read_text())["adapt"] == "centred on 3 groups, from 84 sampled rows"
    assert [p.name for p in tmp_path.iterdir() if ".rosprompt-" in p.name] == [], "no centres file left behind"
    # a second run, from stdin (read from its spooled copy): the same bytes
    piped = subprocess.run(cli_process.command("label", "-", "--labels-file", LABELS_FILE, "--adapt-by", "lang"),
                           input=src.read_bytes(), capture_output=True, cwd=tmp_path, env=cli_process.env,
                           check=True)
    assert piped.stdout == (tmp_path / "a.csv").read_bytes()


def test_label_adapt_resumes_to_the_uninterrupted_output(tiny_cli, tmp_path):
    from test_cli_reliability import MANY, _interrupt, _resumed_row, _start, _wait_for_progress

    src = tmp_path / "feed.jsonl"
    topics = ["The keeper saved a penalty in the derby", "Parliament passed the budget", "Mwanasiasa ashinda uchaguzi",
              "Timu ya taifa yashinda mechi"]
    with open(src, "w", encoding="utf-8") as fh:
        for i in range(MANY):
            fh.write(json.dumps({"id": i, "lang": "sw" if i % 4 >= 2 else "en", "text": f"{topics[i % 4]} ({i})"}) + "\n")
    common = [src, "--labels", "sports,politics", "--adapt-by", "lang", "--adapt-sample", "100", "--chunk-rows", "50",
              "--batch-size", "16"]
    tiny_cli("label", *common, "--out", tmp_path / "reference.jsonl")
    out = tmp_path / "o.jsonl"
    proc = _start(tiny_cli, *common, "--out", out)
    _wait_for_progress(tmp_path / ".o.jsonl.rosprompt-state", proc, 100)
    _interrupt(proc, signal.SIGKILL, -signal.SIGKILL)
    assert (tmp_path / ".o.jsonl.rosprompt-centres").exists(), "the centres are kept for --resume"
    resumed = tiny_cli("label", *common, "--out", out, "--resume")
    assert _resumed_row(resumed.stderr, MANY) >= 100
    assert out.read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert not (tmp_path / ".o.jsonl.rosprompt-centres").exists()
    # other adapt options are another run: the complete output is not taken for theirs
    other = tiny_cli("label", src, "--labels", "sports,politics", "--adapt", "--chunk-rows", "50", "--batch-size",
                     "16", "--out", out, "--resume", check=False)
    assert other.returncode == 1 and b"options changed" in other.stderr, other.stderr


def test_adapt_is_refused_in_one_line_where_it_cannot_work(tiny_cli, tmp_path, tiny_mlm_dir):
    ids = tmp_path / "ids.csv"
    ids.write_text("id,text\n" + "".join(f"{i},text number {i}\n" for i in range(1_001)), encoding="utf-8")
    cases = [
        (["--adapt-by", "region"], "no column 'region'"),
        (["--adapt-sample", "5", "--adapt"], "--adapt-sample must be at least 20"),
        (["--adapt", "--engine", "ray"], "--adapt is for --engine local"),
        (["--adapt", "--model", tiny_mlm_dir, "--verbalizer", "mlm", "--no-prompt"], "--adapt centres the text vectors"),
    ]
    for args, message in cases:
        proc = _label(tiny_cli, *args, "--out", tmp_path / "o.parquet", check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and message in err and "Traceback" not in err, (args, err)
        assert not (tmp_path / "o.parquet").exists()
    proc = tiny_cli("label", ids, "--labels", "a,b", "--adapt-by", "id", "--out", tmp_path / "o.csv", check=False)
    assert proc.returncode == 1 and b"more than 1,000 values" in proc.stderr, proc.stderr


def test_eval_adapt_measures_what_label_adapt_does(tiny_cli, tmp_path, sample_slice):
    src = sample_slice / "news_three_languages.csv"  # 84 rows, 28 in each of 3 languages, all 7 categories
    args = [src, "--label-col", "category", "--lang-col", "lang"]
    tiny_cli("eval", *args, "--output", tmp_path / "plain.json")
    tiny_cli("eval", *args, "--adapt-by", "lang", "--output", tmp_path / "adapted.json")
    plain, adapted = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "adapted.json"))
    assert "centred on 3 groups" in adapted["prompt"] and "centred" not in plain["prompt"]
    assert adapted["per_label"] != plain["per_label"]
    # eval's predictions are label's: the same rows get the same labels
    gold = "entertainment,geography,health,politics,science/technology,sports,travel"  # eval's label set
    tiny_cli("label", src, "--labels", gold, "--adapt-by", "lang", "--out", tmp_path / "tagged.csv")
    import csv

    with open(tmp_path / "tagged.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    right = sum(row["label"] == row["category"] for row in rows)
    assert right / len(rows) == pytest.approx(adapted["accuracy"], abs=1 / len(rows))
