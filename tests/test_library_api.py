"""The library does what the CLI does: the same job through `run_label`/`run_eval` in this process
and through a real `rosprompt` process gives the same output bytes and the same metrics, with
and without a prompt (so the lexicon default is covered); the README's Library examples run as
written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, SAMPLES
from rosprompt_cli import (
    EvalJob,
    LabelJob,
    LabelOptions,
    LabelSet,
    RosPromptError,
    ScorerSpec,
    build_scorer,
    evaluate,
    load_labelled,
    parse_label_arg,
    run_eval,
    run_label,
)
from rosprompt_cli.events import Notice, RowsDone

LABELS = "sports,politics,health"
# What differs between two runs of the same job: timings, and where the output went.
RUN_SPECIFIC = {"seconds", "stage_seconds", "rows_per_second", "output"}


def _comparable(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key not in RUN_SPECIFIC}


def _on_tiny(prompted: bool, tiny_model: str, tiny_trained_prompt: Path) -> tuple[list, ScorerSpec]:
    """The command-line options and the ScorerSpec of one run on the tiny test encoder: with a
    prompt trained on it, or with none (the lexicon default on)."""
    if prompted:
        return ["--prompt", tiny_trained_prompt], ScorerSpec(prompt=str(tiny_trained_prompt))
    return ["--model", tiny_model, "--no-prompt"], ScorerSpec(model=tiny_model, use_prompt=False)


@pytest.mark.parametrize("prompted", [True, False], ids=["prompt", "no-prompt"])
def test_label_job_writes_the_bytes_the_cli_writes(cli_process, tmp_path, prompted, tiny_model, tiny_trained_prompt):
    src = tmp_path / "in.jsonl"
    src.write_text("".join((SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8").splitlines(True)[:60]),
                   encoding="utf-8")
    scorer_args, spec = _on_tiny(prompted, tiny_model, tiny_trained_prompt)
    cli_process("label", src, "--labels", LABELS, "--top-k", "2", "--out", tmp_path / "cli.jsonl",
        "--summary", tmp_path / "cli.json", *scorer_args)
    events: list = []
    result = run_label(
        LabelJob(str(src), parse_label_arg(LABELS), out=str(tmp_path / "lib.jsonl"), options=LabelOptions(top_k=2),
                 scorer=spec, summary=str(tmp_path / "lib.json")),
        on_event=events.append,
    )
    assert (tmp_path / "lib.jsonl").read_bytes() == (tmp_path / "cli.jsonl").read_bytes()
    cli_summary = json.loads((tmp_path / "cli.json").read_text())
    assert _comparable(result.summary) == _comparable(cli_summary)
    assert json.loads((tmp_path / "lib.json").read_text()) == json.loads(json.dumps(result.summary))
    assert result.status == "ok" and result.rejected == 0 and result.summary["rows"] == 60
    expected_note = f"prompt {tiny_trained_prompt}" if prompted else "no prompt (plain zero-shot), lexicon label names"
    assert cli_summary["prompt"] == expected_note
    # progress and status lines arrive as events, never printed
    assert sum(e.count for e in events if isinstance(e, RowsDone)) == 60
    assert any(isinstance(e, Notice) and "60 rows ->" in e.message for e in events)


@pytest.mark.parametrize("prompted", [True, False], ids=["prompt", "no-prompt"])
def test_eval_job_reports_the_metrics_the_cli_reports(cli_process, tmp_path, prompted, sample_slice, tiny_model,
                                                      tiny_trained_prompt):
    src = str(sample_slice / "news_slice.csv")  # all 7 gold labels and 11 languages of the sample
    scorer_args, spec = _on_tiny(prompted, tiny_model, tiny_trained_prompt)
    cli_process("eval", src, "--label-col", "category", "--lang-col", "lang", "--output", tmp_path / "m.json",
                *scorer_args)
    result = run_eval(EvalJob(src, label_col="category", lang_col="lang", scorer=spec))
    assert json.loads(json.dumps(result.as_dict())) == json.loads((tmp_path / "m.json").read_text())
    # the lower-level evaluate() on a scorer follows the same rules (lexicon default included)
    data = load_labelled(src, "text", "category", "lang")
    gold = LabelSet.from_names(sorted(data.label_names()))
    scorer = build_scorer(spec)
    assert evaluate(scorer, data, gold).as_dict() == result.report.as_dict()
    with pytest.raises(RosPromptError, match=r"gold labels \['travel'\] are not among the labels"):
        evaluate(scorer, data, LabelSet.from_names([n for n in gold.names if n != "travel"]))


def _readme_library_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Library\n") : readme.index("## Exit codes")]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 3, "the Library section's examples changed: update this test"
    return blocks


def _check_label_example(folder: Path, stdout: str) -> None:
    assert stdout.startswith("ok 315 {")
    assert "315 rows -> tagged_py/news_multilingual.parquet" in stdout
    assert pl.read_parquet(folder / "tagged_py.parquet").height == 315
    assert pl.read_parquet(folder / "tagged_py" / "news_multilingual.parquet").height == 315
    assert json.loads((folder / "run_py.json").read_text())["status"] == "ok"


def _check_eval_example(folder: Path, stdout: str) -> None:
    assert re.fullmatch(r"shipped prompt default\.safetensors: accuracy [01]\.\d{3}, Swahili [01]\.\d{3}\n", stdout)


def _check_scorer_cache_example(folder: Path, stdout: str) -> None:
    assert stdout == "2 inputs labelled, 1 model load\n"
    for name in ("tagged_py_news_multilingual_csv.parquet", "tagged_py_news_multilingual_jsonl.parquet"):
        assert pl.read_parquet(folder / name).height == 315


# each example of the Library section, in its own fresh folder (so the three run in parallel)
_LIBRARY_CHECKS = [_check_label_example, _check_eval_example, _check_scorer_cache_example]


@pytest.mark.parametrize("number", range(len(_LIBRARY_CHECKS)), ids=["label", "eval", "scorer-cache"])
def test_readme_library_examples_run_as_written(rosprompt_home, tmp_path, number):
    shutil.copytree(SAMPLES, tmp_path / "samples")
    proc = subprocess.run([sys.executable, "-c", _readme_library_blocks()[number]], cwd=tmp_path, capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    _LIBRARY_CHECKS[number](tmp_path, proc.stdout.decode())


def test_a_scorer_built_once_labels_two_inputs_with_one_model_load(tmp_path, monkeypatch, rosprompt_home):
    """run_label with a ScorerCache: the second input reuses the first one's scorer (and the model
    is loaded once: load_backbone counted); a built scorer passed as it is loads nothing more."""
    from rosprompt_cli import backbone as backbone_module
    from rosprompt_cli.spec import ScorerCache

    loads = []
    real_load = backbone_module.load_backbone  # build_scorer imports it from there when it builds
    monkeypatch.setattr(backbone_module, "load_backbone", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    scorers = ScorerCache()
    labels = parse_label_arg(LABELS)
    for number in (1, 2):
        src = tmp_path / f"in{number}.jsonl"
        src.write_text('{"text": "The striker scored twice in the final."}\n', encoding="utf-8")
        result = run_label(LabelJob(str(src), labels, out=str(tmp_path / f"out{number}.jsonl")), scorer=scorers)
        assert result.summary["label_counts"] == {"sports": 1}
    assert scorers.loads == 1 and len(loads) == 1
    built = scorers(ScorerSpec())
    run_label(LabelJob(str(tmp_path / "in1.jsonl"), labels, out=str(tmp_path / "out3.jsonl")), scorer=built)
    assert len(loads) == 1 and (tmp_path / "out3.jsonl").read_bytes() == (tmp_path / "out1.jsonl").read_bytes()
    with pytest.raises(RosPromptError, match="each Ray worker builds its own scorer"):
        run_label(LabelJob(str(tmp_path / "in1.jsonl"), labels, out=str(tmp_path / "o.parquet"), engine="ray"),
                  scorer=built)
