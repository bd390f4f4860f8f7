"""Every combination of `label`'s enumerated options (issue 31): runtime x dtype x quantize x
verbalizer x device on a 3-row input, and each of their values paired with the options that
change how rows are scored or written. Each run ends in 0 (labelled), 1 (refused in one line
naming what to change) or 2 (usage), never 3 (an internal error): an option pair that cannot
work is refused before the model is asked. `--engine ray` gets the same pairs in
tests/test_ray_engine.py, on the Ray instance those tests share."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import tiny_encoder

LABELS = "sports,politics,health"

# every train, label and eval of this module on the tiny test encoder
cli = tiny_encoder.cli

ENUMERATED = {
    "--runtime": ("auto", "torch", "onnx"),
    "--dtype": ("auto", "float32", "bfloat16", "float16"),
    "--quantize": ("none", "int8"),
    "--verbalizer": ("embed", "mlm"),
    "--device": ("auto", "cpu", "cuda"),
}
# options that change how rows are scored or written, each paired with every enumerated value
PAIRED = (["--adapt"], ["--adapt-by", "lang"], ["--min-score", "0.5"], ["--multi-label"], ["--all-scores"],
          ["--top-k", "2"], ["--no-prompt"], ["--no-lexicon"], ["--on-error", "fail"], ["--max-batch-tokens", "0"])


def _three_rows(folder: Path) -> Path:
    src = folder / "three.jsonl"
    rows = [("The striker scored twice in the cup final.", "en"), ("El parlamento aprobó el presupuesto.", "es"),
            ("A new vaccine trial began at the hospital.", "en")]
    src.write_text("".join(json.dumps({"text": t, "lang": lang}) + "\n" for t, lang in rows), encoding="utf-8")
    return src


def _check(proc, args: list[str]) -> None:
    err = proc.stderr.decode(errors="replace")
    errors = [line for line in err.splitlines() if line.startswith("rosprompt: error:")]
    assert proc.returncode in (0, 1, 2), (args, proc.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    if proc.returncode == 1:
        assert len(errors) == 1, (args, err)


def _product() -> list[list[str]]:
    names = list(ENUMERATED)
    return [[part for name, value in zip(names, values) for part in (name, value)]
            for values in itertools.product(*ENUMERATED.values())]


def _pairs() -> list[list[str]]:
    # one enumerated value at a time, so the scorer it builds serves its pairs (ScorerCache)
    return [[name, value, *extra] for name, values in ENUMERATED.items() for value in values for extra in PAIRED]


def test_every_combination_of_the_enumerated_options_ends_in_0_1_or_2(cli, tmp_path):
    src = _three_rows(tmp_path)
    outcomes: dict[int, int] = {}
    for args in _product():
        proc = cli("label", src, "--labels", LABELS, *args, "--out", tmp_path / "out.jsonl", "--force", check=False)
        _check(proc, args)
        outcomes[proc.returncode] = outcomes.get(proc.returncode, 0) + 1
    assert outcomes.get(0, 0) >= 8 and outcomes.get(1, 0) >= 60, outcomes  # both kinds really ran


def test_the_mlm_verbalizer_on_a_masked_lm_with_every_runtime_dtype_quantize_and_device(cli, tmp_path, tiny_mlm_dir):
    src = _three_rows(tmp_path)
    names = ["--runtime", "--dtype", "--quantize", "--device"]
    labelled = 0
    for values in itertools.product(*(ENUMERATED[name] for name in names)):
        args = [part for name, value in zip(names, values) for part in (name, value)]
        proc = cli("label", src, "--labels", LABELS, "--model", tiny_mlm_dir, "--no-prompt", "--verbalizer", "mlm",
                   *args, "--out", tmp_path / "out.jsonl", "--force", check=False)
        _check(proc, args)
        labelled += proc.returncode == 0
    assert labelled >= 4


def test_every_enumerated_value_paired_with_each_scoring_and_output_option(cli, tmp_path):
    src = _three_rows(tmp_path)
    for args in _pairs():
        proc = cli("label", src, "--labels", LABELS, *args, "--out", tmp_path / "out.jsonl", "--force", check=False)
        _check(proc, args)
