"""`train` and `eval` through the real CLI; prompt files and backbone identity."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SAMPLES, SIB, SIB_LABELS, SLICE_ROWS, requires_sib


def test_eval_on_samples_is_well_above_chance(cli_process, tmp_path):
    """The smoke test of `eval` in a real process."""
    out = tmp_path / "m.json"
    proc = cli_process("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--lang-col", "lang",
               "--no-prompt", "--output", out)
    report = json.loads(out.read_text())
    assert report["n"] == 315
    assert report["accuracy"] > 0.6 and report["macro_f1"] > 0.6  # chance: 0.14
    assert len(report["per_language"]) == 11
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 315
    text = proc.stdout.decode()
    for heading in ("accuracy", "per label", "per language", "confusion"):
        assert heading in text


def test_train_then_label_and_eval_with_the_prompt(cli, trained_prompt, tmp_path, sample_slice):
    from rosprompt_cli.prompt import SoftPrompt

    prompt = SoftPrompt.load(trained_prompt)
    meta = prompt.meta
    assert prompt.vectors.shape == (8, 384)
    assert meta.backbone_name == "intfloat/multilingual-e5-small" and meta.backbone_hash.startswith("sha256:")
    assert meta.verbalizer == "embed" and meta.text_prefix == "query: "
    assert sorted(meta.train_labels) == sorted(SIB_LABELS.split(","))
    assert meta.hyperparameters["epochs"] == 4 and meta.metrics["train_examples"] == 56
    assert trained_prompt.stat().st_size < 64_000

    sample = sample_slice / "news_slice.csv"  # all 11 languages and 7 categories of the sample
    out = tmp_path / "tagged.parquet"
    cli("label", sample, "--labels", SIB_LABELS, "--prompt", trained_prompt, "--out", out)
    import polars as pl

    tagged = pl.read_parquet(out)
    assert tagged.height == SLICE_ROWS
    prompted_acc = (tagged["label"] == tagged["category"]).mean()

    metrics = tmp_path / "m.json"
    cli("eval", sample, "--label-col", "category", "--prompt", trained_prompt, "--output", metrics)
    report = json.loads(metrics.read_text())
    assert abs(report["accuracy"] - prompted_acc) < 1e-9, "label and eval agree"
    assert report["accuracy"] > 0.6


def test_training_is_deterministic_for_a_seed(tiny_backbone):
    from rosprompt_cli.examples import load_labelled
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.training import TrainConfig, train_prompt

    data = load_labelled(str(SAMPLES / "train_en.csv"), "text", "label").sample_per_class(2, seed=1)
    labels = LabelSet.from_names(sorted(data.label_names()))
    config = TrainConfig(prompt_length=4, epochs=2, batch_size=4, seed=7)
    a = train_prompt(tiny_backbone, data, labels, config)
    b = train_prompt(tiny_backbone, data, labels, config)
    c = train_prompt(tiny_backbone, data, labels, TrainConfig(prompt_length=4, epochs=2, batch_size=4, seed=8))
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.equal(a.vectors, c.vectors)
    init = torch.nn.functional.normalize(a.vectors - c.vectors, dim=-1)
    assert torch.isfinite(init).all()


def _tiny_bert_dir(path, hidden: int, bundled_dir):
    """A randomly initialised BERT with the bundled tokenizer, saved like any HF checkpoint; its
    vocabulary is 1,000 rows, enough for a backbone that is only ever refused."""
    import shutil

    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1_000, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(bundled_dir / name, path / name)
    return path


@pytest.mark.parametrize("hidden", [384, 32])
def test_prompt_is_refused_on_another_backbone(cli, tmp_path, rosprompt_home, hidden):
    """The shipped prompt, trained on the bundled model, on another one of the same hidden size
    and of another: refused before the encoder is loaded (so the other's vocabulary can be small)."""
    from rosprompt_cli.bundled import bundled_model_dir
    from rosprompt_cli.prompt import shipped_prompt_path

    other = _tiny_bert_dir(tmp_path / f"tiny-{hidden}", hidden, bundled_model_dir())
    proc = cli("label", SAMPLES / "news_multilingual.csv", "--labels", "sports,politics", "--prompt",
               shipped_prompt_path(), "--model", other, "--out", tmp_path / "o.csv", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "trained on backbone intfloat/multilingual-e5-small" in err and str(other) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()


def test_local_model_folder_works_without_a_prompt(cli, tmp_path, tiny_model):
    out = tmp_path / "o.csv"
    cli("label", SAMPLES / "news_multilingual.csv", "--labels", "sports,politics", "--model", tiny_model, "--out", out)
    assert len(out.read_text().splitlines()) == 316


def test_corrupt_prompt_file_is_a_one_line_error(tiny_cli, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    proc = tiny_cli("label", SAMPLES / "news_multilingual.csv", "--labels", "a,b", "--prompt", bad, check=False)
    assert proc.returncode == 1
    assert b"corrupt prompt file" in proc.stderr and b"Traceback" not in proc.stderr


def test_train_and_eval_from_a_datasets_folder(cli, cli_process, tmp_path):
    """The smoke test of `train` in a real process."""
    import datasets
    import polars as pl

    frame = pl.read_csv(SAMPLES / "train_en.csv")
    names = sorted(set(frame["label"]))
    ds = datasets.Dataset.from_dict(
        {"text": frame["text"].to_list(), "label": [names.index(x) for x in frame["label"]]},
        features=datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}),
    )
    datasets.DatasetDict({"train": ds, "test": ds.select(range(14))}).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "p.safetensors"
    cli_process("train", tmp_path / "ds", "--shots", "2", "--epochs", "1", "--prompt-len", "4", "--out", out)
    metrics = tmp_path / "m.json"
    cli("eval", tmp_path / "ds", "--prompt", out, "--output", metrics)
    report = json.loads(metrics.read_text())
    assert report["n"] == 14 and set(report["labels"]) == set(names)


@requires_sib
def test_eval_on_a_sib200_dev_file(cli, tmp_path):
    metrics = tmp_path / "m.json"
    cli("eval", SIB / "dev" / "swh_Latn.tsv", "--label-col", "category", "--no-prompt", "--output", metrics)
    report = json.loads(metrics.read_text())
    assert report["n"] == 99 and report["accuracy"] > 0.3


@requires_sib
def test_train_on_a_tsv_with_its_label_in_another_column(tiny_cli, tmp_path):
    """README's SIB-200 training line (8 shots per class, seed 1), in one epoch."""
    from rosprompt_cli.prompt import SoftPrompt

    out = tmp_path / "sib8.safetensors"
    tiny_cli("train", SIB / "eng_Latn" / "train.tsv", "--label-col", "category", "--shots", "8", "--seed", "1",
        "--epochs", "1", "--prompt-len", "4", "--out", out)
    meta = SoftPrompt.load(out).meta
    assert sorted(meta.train_labels) == sorted(SIB_LABELS.split(","))
    assert meta.metrics["train_examples"] == 56 and meta.hyperparameters["seed"] == 1


def _ingredient_run():
    """What every ingredient case trains on: 2 examples per class, the sample label file (several
    names per label) and the lexicon's names by label language."""
    from rosprompt_cli.examples import load_labelled
    from rosprompt_cli.labels import load_label_file
    from rosprompt_cli.lexicon import names_by_language

    data = load_labelled(str(SAMPLES / "train_en.csv"), "text", "label").sample_per_class(2, seed=1)
    labels = load_label_file(SAMPLES / "labels.yaml")
    return data, labels, names_by_language(labels)


@pytest.fixture(scope="module")
def plain_prompt(tiny_backbone):
    """The prompt without any ingredient, which every case must differ from: trained once."""
    from rosprompt_cli.training import TrainConfig, train_prompt

    data, labels, extra = _ingredient_run()
    return train_prompt(tiny_backbone, data, labels, TrainConfig(prompt_length=4, epochs=2, batch_size=4, seed=3),
                        extra_names=extra)


NEGATIVE_TOPICS = ("weather", "religion", "crime", "music", "food", "tourism", "elections", "medicine")


@pytest.mark.parametrize(
    "options",
    [
        {"language_keep": 0.5},
        {"smoothing": 0.2},
        {"penalty": "kl", "penalty_weight": 1.0},
        {"penalty": "variance", "penalty_weight": 1.0},
        {"penalty": "l2", "penalty_weight": 0.1},
        {"smoothing": 0.1, "negatives": True},
        {"language_keep": 0.5, "smoothing": 0.1, "penalty": "kl", "penalty_weight": 1.0, "negatives": True},
    ],
)
def test_each_rosprompt_ingredient_trains_deterministically(tiny_backbone, plain_prompt, options):
    """On the tiny test encoder: the training loop is the same code on any tiny_backbone. Which
    open-world negatives the bundled model finds too close to a training label is
    test_near_synonym_negatives_of_the_bundled_model_are_left_out_before_training's claim."""
    from rosprompt_cli.training import TrainConfig, train_prompt

    options = dict(options)
    data, labels, extra = _ingredient_run()
    negatives = _eight_negative_topics(labels) if options.pop("negatives", False) else None
    config = TrainConfig(prompt_length=4, epochs=2, batch_size=4, seed=3, **options)
    a = train_prompt(tiny_backbone, data, labels, config, extra_names=extra, negatives=negatives)
    b = train_prompt(tiny_backbone, data, labels, config, extra_names=extra, negatives=negatives)
    assert torch.equal(a.vectors, b.vectors)
    assert torch.isfinite(a.vectors).all()
    assert not torch.equal(a.vectors, plain_prompt.vectors), "the ingredient changes training"
    assert a.meta.hyperparameters | options == a.meta.hyperparameters, "recorded in the prompt file"
    assert a.meta.metrics["label_languages"] > 20
    if negatives:
        assert 0 < a.meta.metrics["open_world_negatives"] <= len(negatives), "recorded in the prompt file"


def _eight_negative_topics(labels):
    """8 of the lexicon's 43 open-world topics (441 of 2,597 names to embed); on the bundled
    model three of them (tourism, elections, medicine) are near-synonyms of a training label."""
    from rosprompt_cli.lexicon import open_world_negatives

    return {topic: names for topic, names in open_world_negatives(labels).items() if topic in NEGATIVE_TOPICS}


def test_near_synonym_negatives_of_the_bundled_model_are_left_out_before_training(backbone):
    """The open-world negatives training would use (phase 1, `prepare`: no epoch is run): the
    bundled model's embeddings leave out the near-synonyms of the training labels, and only them."""
    from rosprompt_cli.training import TrainConfig, prepare

    data, labels, extra = _ingredient_run()
    negatives = _eight_negative_topics(labels)
    config = TrainConfig(prompt_length=4, epochs=2, batch_size=4, seed=3, smoothing=0.1)
    setup = prepare(backbone, data, labels, config, extra_names=extra, negatives=negatives)
    kept = setup.pool.n_classes - setup.n_train
    assert 0 < kept < len(negatives), "near-synonyms of the training labels are left out"
    assert kept == len(negatives) - 3, "tourism, elections and medicine, the three near-synonyms, and no other"


def test_near_synonym_negatives_are_left_out():
    from rosprompt_cli.training import NamePool, drop_close_negatives

    # training classes 0, 1; negatives 2 (close to class 0) and 3 (far from both); every vector
    # also shares a common direction (dimension 3), as sentence embeddings do, which centring removes
    vectors = torch.tensor([[1.0, 0.0, 0.0, 3.0], [0.0, 1.0, 0.0, 3.0], [0.9, 0.1, 0.0, 3.0], [0.0, 0.0, 1.0, 3.0]])
    pool = NamePool(["a", "b", "a-ish", "c"], [0, 1, 2, 3], ["eng_Latn"] * 4)
    kept, rows = drop_close_negatives(pool, vectors, 2, None, 0.3)
    assert kept.texts == ["a", "b", "c"] and kept.owner == [0, 1, 2]
    assert rows == [0, 1, 3]


def test_train_cli_accepts_the_rosprompt_options(tiny_cli, tmp_path):
    out = tmp_path / "p.safetensors"
    tiny_cli("train", SAMPLES / "train_en.csv", "--labels-file", SAMPLES / "labels.yaml", "--shots", "1", "--epochs", "1",
        "--prompt-len", "2", "--language-keep", "0.5", "--smoothing", "0.1", "--penalty", "kl", "--penalty-weight", "0.5",
        "--out", out)
    from rosprompt_cli.prompt import SoftPrompt

    hp = SoftPrompt.load(out).meta.hyperparameters
    assert (hp["language_keep"], hp["smoothing"], hp["penalty"], hp["penalty_weight"]) == (0.5, 0.1, "kl", 0.5)
    bad = tiny_cli("train", SAMPLES / "train_en.csv", "--penalty", "magic", "--out", tmp_path / "q.safetensors", check=False)
    assert bad.returncode == 1 and b"--penalty 'magic'" in bad.stderr


def test_variance_penalty_without_two_label_languages_fails_before_training(tiny_backbone):
    from rosprompt_cli.errors import RosPromptError
    from rosprompt_cli.examples import load_labelled
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.training import TrainConfig, train_prompt

    data = load_labelled(str(SAMPLES / "train_en.csv"), "text", "label").sample_per_class(1, seed=1)
    labels = LabelSet.from_names(sorted(data.label_names()))  # English names only
    epochs_run = []
    with pytest.raises(RosPromptError, match="at least two languages"):
        train_prompt(tiny_backbone, data, labels, TrainConfig(prompt_length=2, epochs=1, penalty="variance", penalty_weight=1.0),
                     on_epoch=epochs_run.append)
    assert epochs_run == []


def test_shipped_default_prompt_beats_plain_zero_shot_on_the_samples(cli, tmp_path):
    from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path

    shipped = shipped_prompt_path()
    assert shipped is not None, "prompts/default.safetensors ships with the package"
    assert SoftPrompt.load(shipped).meta.backbone_source == "bundled"
    reports = {}
    for name, flags in (("default", []), ("plain", ["--no-prompt"])):
        out = tmp_path / f"{name}.json"
        proc = cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--labels", SIB_LABELS,
                   *flags, "--output", out)
        reports[name] = (json.loads(out.read_text()), " ".join(proc.stderr.decode().split()))
    assert "shipped prompt default.safetensors" in reports["default"][1]
    assert "no prompt" in reports["plain"][1]
    default, plain = reports["default"][0], reports["plain"][0]
    assert default["accuracy"] > plain["accuracy"] and default["macro_f1"] > plain["macro_f1"]


def test_train_and_eval_outputs_are_checked_before_the_work(tiny_cli, tmp_path):
    folder = tiny_cli("train", SAMPLES / "train_en.csv", "--out", tmp_path, check=False)
    assert folder.returncode == 1 and b"is a folder" in folder.stderr and b"Traceback" not in folder.stderr
    missing = tiny_cli("eval", SAMPLES / "dev_en.csv", "--output", tmp_path / "nope" / "m.json", check=False)
    assert missing.returncode == 1 and b"does not exist" in missing.stderr and b"Traceback" not in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_label_set_without_a_choice_is_refused(tiny_cli, tmp_path):
    """One label decides every row before any text is read: label, eval and train say so in one line."""
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\nA late goal won the cup.,sports\nThe keeper saved a penalty.,sports\n",
                         encoding="utf-8")
    runs = {
        "label": ["label", SAMPLES / "news_multilingual.jsonl", "--labels", "sports", "--out", tmp_path / "o.jsonl"],
        "eval": ["eval", one_class],
        "train": ["train", one_class, "--out", tmp_path / "p.safetensors"],
    }
    for command, args in runs.items():
        proc = tiny_cli(*args, check=False)
        err = " ".join(proc.stderr.decode().split())
        assert proc.returncode == 1 and "only one label ('sports')" in err and "give at least two labels" in err, err
        assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv"]
