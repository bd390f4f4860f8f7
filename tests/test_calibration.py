"""Calibrated scores (issue 30): the temperature changes how sure a score says it is, never which
label a row gets; prompt files from before calibration still load and say which calibration
they use; --min-score leaves rows unlabelled and counts them in every format and across a resume;
eval --calibrate fits on a sample, refusing one too small."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import SAMPLES, SIB_LABELS
from rosprompt_cli.calibration import MIN_ROWS, Calibration, fit_temperature, softmax
from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path


def _first_rows(tmp_path: Path, rows: int = 40) -> Path:
    """The first rows of the multilingual sample (labelling all 315 adds time, not evidence)."""
    out = tmp_path / "first.jsonl"
    lines = (SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:rows]), encoding="utf-8")
    return out


def _prompt_with(tmp_path: Path, name: str, calibration: dict | None) -> Path:
    shipped = SoftPrompt.load(shipped_prompt_path())
    out = tmp_path / name
    SoftPrompt(shipped.vectors, replace(shipped.meta, calibration=calibration)).save(out)
    return out


def test_the_fitted_temperature_minimises_the_likelihood_and_keeps_every_rows_order():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 5)) * 3
    gold = np.where(rng.random(400) < 0.7, logits.argmax(1), rng.integers(0, 5, 400))  # mostly right: under 1/T
    t = fit_temperature(logits, gold)

    def nll(temperature: float) -> float:
        return -np.log(softmax(logits, temperature)[np.arange(400), gold]).mean()

    assert nll(t) <= min(nll(t * 0.9), nll(t * 1.1)) + 1e-9
    assert np.array_equal(softmax(logits, t).argmax(1), logits.argmax(1))
    with pytest.raises(ValueError):
        Calibration(temperature=0.0)


def test_calibration_changes_the_scores_never_the_labels(cli, tmp_path):
    hot = _prompt_with(tmp_path, "hot.safetensors", Calibration(0.2, "a test").as_dict())
    cold = _prompt_with(tmp_path, "cold.safetensors", Calibration(3.0, "a test").as_dict())
    runs = {}
    for name, prompt in (("hot", hot), ("cold", cold)):
        out = tmp_path / f"{name}.parquet"
        cli("label", _first_rows(tmp_path), "--labels", SIB_LABELS, "--prompt", prompt, "--top-k", "3",
            "--all-scores", "--out", out)
        runs[name] = pl.read_parquet(out)
    hot_run, cold_run = runs["hot"], runs["cold"]
    for column in ("label", "label_2", "label_3"):
        assert hot_run[column].to_list() == cold_run[column].to_list(), column
    assert (hot_run["score"] > cold_run["score"]).all(), "a lower temperature says more sure, on every row"
    per_label = hot_run.select([f"score_{n}" for n in SIB_LABELS.split(",")]).to_numpy()
    assert abs(per_label.sum(axis=1) - 1).max() < 1e-4


def test_a_prompt_file_from_before_calibration_loads_and_says_which_calibration_it_uses(cli, tmp_path):
    old = _prompt_with(tmp_path, "old.safetensors", None)
    # as an older rosprompt wrote it: format 1, no calibration key at all
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(old), framework="pt") as fh:
        meta = json.loads(fh.metadata()["rosprompt"])
        vectors = fh.get_tensor("prompt")
    del meta["calibration"]
    meta["format_version"] = 1
    save_file({"prompt": vectors}, str(old), metadata={"rosprompt": json.dumps(meta)})
    summary = tmp_path / "run.json"
    proc = cli("label", _first_rows(tmp_path), "--labels", "sports,politics", "--prompt", old,
               "--out", tmp_path / "o.jsonl", "--summary", summary)
    err = " ".join(proc.stderr.decode().split())
    used = json.loads(summary.read_text())["calibration"]
    if used["fitted_on"]:  # the backbone's default, fitted for the shipped prompt
        assert "scores calibrated (the prompt stores none: the default, " in err, err
        assert used["fitted_on"].startswith("the prompt stores none: the default, ")
    else:
        assert "scores not calibrated" in err, err


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_min_score_leaves_a_row_without_a_label_keeps_its_score_and_counts_it(cli, tmp_path, fmt):
    src = tmp_path / "in.jsonl"
    rows = [{"id": 1, "text": "The striker scored twice and the home side won the cup final."},
            {"id": 2, "text": "Ok."}, {"id": 3, "text": ""},
            {"id": 4, "text": "Parliament passed the budget after a long night of votes."}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plain = tmp_path / f"plain.{fmt}"
    cli("label", src, "--labels", "sports,politics,health", "--out", plain)
    read = {"csv": pl.read_csv, "jsonl": pl.read_ndjson, "parquet": pl.read_parquet}[fmt]
    scores = read(plain)["score"].to_list()
    threshold = sorted(s for s in scores if s is not None)[1]  # between the two lowest scores of rows with text
    out, summary = tmp_path / f"min.{fmt}", tmp_path / "run.json"
    proc = cli("label", src, "--labels", "sports,politics,health", "--min-score", str(threshold), "--out", out,
               "--summary", summary)
    got = read(out)
    assert got["score"].to_list() == scores, "every score is still written"
    expected = [label if score is not None and score >= threshold else None
                for label, score in zip(read(plain)["label"].to_list(), scores)]
    assert got["label"].to_list() == expected and expected.count(None) == 2
    data = json.loads(summary.read_text())
    assert (data["labelled"], data["empty_text"], data["below_min_score"]) == (2, 1, 1)
    assert "1 below --min-score" in " ".join(proc.stderr.decode().split())


def test_min_score_counts_survive_a_resume(cli, tmp_path):
    """A run interrupted after its first chunk, then resumed: the same bytes and the same counts as
    one uninterrupted run."""
    from rosprompt_cli import LabelJob, LabelOptions, ScorerSpec, parse_label_arg, run_label
    from rosprompt_cli.events import RowsDone
    from rosprompt_cli.interrupt import Interrupted

    src = tmp_path / "feed.jsonl"
    lines = (SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:40]
    src.write_text("".join(lines), encoding="utf-8")

    def job(out: Path, resume: bool = False) -> LabelJob:
        return LabelJob(str(src), parse_label_arg(SIB_LABELS), out=str(out), options=LabelOptions(min_score=0.3),
                        chunk_rows=10, resume=resume, scorer=ScorerSpec(), summary=str(out) + ".json")

    whole = run_label(job(tmp_path / "whole.parquet"), scorer=cli.scorers)
    assert 0 < whole.summary["below_min_score"] < 40

    state = tmp_path / ".cut.parquet.rosprompt-state"

    def stop_after_first_chunk(event: object) -> None:
        """SIGINT once the first chunk is saved (the writer works a chunk or two behind)."""
        if isinstance(event, RowsDone) and not event.earlier:
            seen.append(event.count)
            if sum(seen) > 10:
                deadline = time.monotonic() + 60
                while not state.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise Interrupted(signal.SIGINT)

    seen: list[int] = []
    with pytest.raises(Interrupted):
        run_label(job(tmp_path / "cut.parquet"), on_event=stop_after_first_chunk, scorer=cli.scorers)
    resumed = run_label(job(tmp_path / "cut.parquet", resume=True), scorer=cli.scorers)
    assert resumed.summary["resumed_from_row"] > 0
    assert (tmp_path / "cut.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    counts = ("rows", "labelled", "empty_text", "below_min_score", "label_counts")
    assert {k: resumed.summary[k] for k in counts} == {k: whole.summary[k] for k in counts}


def test_eval_calibrate_fits_on_the_sample_and_refuses_one_too_small(cli, tmp_path):
    out = tmp_path / "calibrated.safetensors"
    proc = cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--calibrate", "--out-prompt", out,
               "--output", tmp_path / "m.json")
    err = " ".join(proc.stderr.decode().split())
    fitted = SoftPrompt.load(out).meta.calibration
    assert fitted["rows"] == 315 and fitted["ece_after"] < fitted["ece_before"], fitted
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["fitted_calibration"] | {"adapted_temperature": fitted["adapted_temperature"]} == fitted
    before = metrics["calibration"]["ece"]  # the scores as the shipped prompt's calibration makes them
    assert f"expected calibration error {before:.3f} (as the prompt was) -> {fitted['ece_after']:.3f}" in err
    # the file's calibration is the one label then uses
    again = cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--prompt", out,
                "--output", tmp_path / "again.json")
    assert f"T={fitted['temperature']:.3f}" in " ".join(again.stderr.decode().split())
    assert json.loads((tmp_path / "again.json").read_text())["calibration"]["ece"] < before
    small = cli("eval", SAMPLES / "dev_en.csv", "--calibrate", "--out-prompt", tmp_path / "small.safetensors",
                check=False)
    message = small.stderr.decode().strip()
    assert small.returncode == 1 and len(message.splitlines()) == 1, message
    assert f"--calibrate needs at least {MIN_ROWS} labelled rows" in message and "it has 28" in message
    assert not (tmp_path / "small.safetensors").exists()
    for args, fragment in ((["--calibrate"], "give --out-prompt"), (["--out-prompt", tmp_path / "x.safetensors"], "add --calibrate"),
                           (["--calibrate", "--out-prompt", tmp_path / "y.safetensors", "--no-prompt"], "not --no-prompt")):
        refused = cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", *args, check=False)
        assert refused.returncode == 1 and fragment in refused.stderr.decode(), refused.stderr


def test_eval_reports_what_each_min_score_keeps(cli, tmp_path, sample_slice):
    metrics = tmp_path / "m.json"
    cli("eval", sample_slice / "news_slice.csv", "--label-col", "category", "--output", metrics)
    report = json.loads(metrics.read_text())
    coverage = report["coverage"]
    assert [row["threshold"] for row in coverage] == [round(0.1 * k, 1) for k in range(1, 10)]
    kept = [row["kept"] for row in coverage]
    assert kept == sorted(kept, reverse=True) and kept[0] <= 1.0
    assert report["calibration"]["ece"] >= 0 and "score_calibration" in report


def test_eval_calibrate_with_adapt_fits_only_the_adapt_temperature(cli, tmp_path, sample_slice):
    sample = sample_slice / "news_three_languages.csv"  # 84 rows, 28 a language: each centred on its own
    plain = tmp_path / "plain.safetensors"
    cli("eval", sample, "--label-col", "category", "--calibrate", "--out-prompt", plain)
    both = tmp_path / "both.safetensors"
    proc = cli("eval", sample, "--label-col", "category", "--prompt", plain,
               "--adapt-by", "lang", "--calibrate", "--out-prompt", both)
    assert "the --adapt temperature fitted on 84 rows" in " ".join(proc.stderr.decode().split())
    first, second = SoftPrompt.load(plain).meta.calibration, SoftPrompt.load(both).meta.calibration
    assert second["temperature"] == first["temperature"], "the plain temperature is kept"
    assert second["adapted_temperature"] != first["adapted_temperature"]
    # the two files differ only in the --adapt temperature: only runs with --adapt score differently
    outputs = {}
    for name, prompt in (("plain", plain), ("both", both)):
        for mode, adapt in (("no adapt", []), ("adapt", ["--adapt-by", "lang"])):
            out = tmp_path / f"{name}-{mode}.jsonl".replace(" ", "-")
            cli("label", _first_rows(tmp_path), "--labels", SIB_LABELS, "--prompt", prompt, *adapt,
                "--out", out)
            outputs[name, mode] = out
    assert outputs["plain", "no adapt"].read_bytes() == outputs["both", "no adapt"].read_bytes()
    a, b = pl.read_ndjson(outputs["plain", "adapt"]), pl.read_ndjson(outputs["both", "adapt"])
    assert a["label"].to_list() == b["label"].to_list()
    assert a["score"].to_list() != b["score"].to_list()
