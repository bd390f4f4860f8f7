"""Library pieces without the CLI: metrics, labels, prompt files, I/O."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.readers import open_source
from rosprompt_cli.output import TableWriter
from rosprompt_cli.labels import LabelSet, load_label_file, parse_label_arg, resolve_label_set
from rosprompt_cli.metrics import evaluate_predictions
from rosprompt_cli.prompt import PromptMeta, SoftPrompt


def test_metrics_on_a_hand_checked_example():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    r = evaluate_predictions(gold, pred, ["a", "b", "c"], ["x", "x", "y", "y", "y"])
    assert r.accuracy == pytest.approx(3 / 5)
    by = {m.label: m for m in r.per_label}
    # a: tp1 fp1 fn1 -> P=R=F1=.5; b: tp2 fp1 fn0 -> P=2/3 R=1 F1=.8; c: tp0 -> 0
    assert by["a"].f1 == pytest.approx(0.5)
    assert by["b"].precision == pytest.approx(2 / 3) and by["b"].recall == 1 and by["b"].f1 == pytest.approx(0.8)
    assert by["c"].f1 == 0 and by["c"].support == 1
    assert r.macro_f1 == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert r.per_language["x"]["accuracy"] == pytest.approx(0.5)
    assert r.per_language["y"]["accuracy"] == pytest.approx(2 / 3)
    assert r.confusion["c"]["a"] == 1 and r.confusion["a"]["b"] == 1


def test_label_parsing_and_validation(tmp_path):
    assert parse_label_arg(" sports , politics ").names == ["sports", "politics"]
    for bad in ("a,,b", "a,a", "a|b,c", ","):
        with pytest.raises(RosPromptError):
            parse_label_arg(bad)
    f = tmp_path / "l.yaml"
    f.write_text("sports: [sports, deportes, michezo]\npolitics: siasa\n")
    ls = load_label_file(f)
    assert ls.as_dict() == {"sports": ["sports", "deportes", "michezo"], "politics": ["politics", "siasa"]}
    # names from the file extend the labels chosen on the command line
    assert resolve_label_set("politics", str(f)).as_dict() == {"politics": ["politics", "siasa"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("sports: [a, b\npolitics: c\n")
    with pytest.raises(RosPromptError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_label_file(bad)
    badj = tmp_path / "bad.json"
    badj.write_text('{"a": [1,]}')
    with pytest.raises(RosPromptError, match=r"bad.json:1:\d+: invalid JSON"):
        load_label_file(badj)


def test_prompt_round_trip_and_validation(tmp_path):
    meta = PromptMeta(backbone_name="m", backbone_hash="sha256:abc", hidden_size=4, prompt_length=2,
                      train_labels={"a": ["a"]}, hyperparameters={"lr": 0.01})
    prompt = SoftPrompt(torch.arange(8, dtype=torch.float32).reshape(2, 4), meta)
    path = prompt.save(tmp_path / "p.safetensors")
    again = SoftPrompt.load(path)
    assert torch.equal(again.vectors, prompt.vectors) and again.meta == meta
    again.check_backbone("m", "sha256:abc", 4)
    with pytest.raises(RosPromptError, match="trained on backbone m"):
        again.check_backbone("other", "sha256:def", 4)
    with pytest.raises(ValueError):
        SoftPrompt(torch.zeros(3, 4), meta)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_writer_round_trip_and_atomicity(tmp_path, suffix):
    frame = pl.DataFrame({"id": ["007", "2"], "text": ['a, "quoted"\tvalue', "ünïcode ✓"]})
    out = tmp_path / f"o{suffix}"
    fmt = suffix.lstrip(".")
    with TableWriter(str(out), fmt) as writer:
        writer.write(frame.head(1))
        assert not out.exists(), "nothing is published before the run completes"
        writer.write(frame.tail(1))
    with open_source(str(out)) as src:
        back = src.read_all()
    assert back.equals(frame)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]

    failed = tmp_path / f"failed{suffix}"
    with pytest.raises(RuntimeError):
        with TableWriter(str(failed), fmt) as writer:
            writer.write(frame)
            raise RuntimeError("killed")
    assert not failed.exists() and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_output_folder_must_exist(tmp_path):
    with pytest.raises(RosPromptError, match="does not exist"):
        TableWriter(str(tmp_path / "nope" / "o.csv"), "csv")


def test_label_set_requires_labels():
    with pytest.raises(RosPromptError):
        LabelSet(())
    with pytest.raises(RosPromptError, match="no labels given"):
        resolve_label_set(None, None)
    assert json.dumps(LabelSet.from_names(["x"]).as_dict()) == '{"x": ["x"]}'


def test_label_files_keep_names_as_written_and_refuse_repeats(tmp_path):
    words = tmp_path / "words.yaml"
    words.write_text("yes: [si, ja]\nno:\n'off': aus\n1.0: one\n", encoding="utf-8")
    assert load_label_file(words).as_dict() == {"yes": ["yes", "si", "ja"], "no": ["no"], "off": ["off", "aus"],
                                                "1.0": ["1.0", "one"]}
    assert load_label_file(tmp_path / "words.yaml").names == ["yes", "no", "off", "1.0"]
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("sports: [a]\npolitics: b\nsports: [c]\n", encoding="utf-8")
    with pytest.raises(RosPromptError, match=r"repeated.yaml:3:1: invalid YAML \(label 'sports' is given twice\)"):
        load_label_file(repeated)
    repeated_json = tmp_path / "repeated.json"
    repeated_json.write_text('{"a": ["x"], "a": ["y"]}', encoding="utf-8")
    with pytest.raises(RosPromptError, match=r"repeated.json: label 'a' is given twice"):
        load_label_file(repeated_json)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"café": ["x"]}'.encode("latin-1"))
    with pytest.raises(RosPromptError, match=r"latin1.json: byte 5 is not UTF-8"):
        load_label_file(latin1)
