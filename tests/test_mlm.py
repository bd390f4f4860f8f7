"""The masked-LM verbalizer on a small real XLMRobertaForMaskedLM (random weights, the bundled
model's real tokenizer): template layout, mask positions, padding, and train -> label -> eval
through the CLI with --model <local dir>."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from conftest import SAMPLES, SIB_LABELS
from rosprompt_cli.errors import RosPromptError


@pytest.fixture(scope="module")
def mlm_backbone(tiny_mlm_dir):
    from rosprompt_cli.backbone import load_backbone

    return load_backbone(str(tiny_mlm_dir), "cpu")


def test_a_masked_lm_gets_the_mlm_verbalizer_and_an_encoder_the_embedding_one(mlm_backbone, backbone):
    from rosprompt_cli.verbalizers import choose_verbalizer

    assert mlm_backbone.mlm_head is not None and backbone.mlm_head is None
    assert choose_verbalizer("auto", mlm_backbone) == "mlm"
    assert choose_verbalizer("auto", backbone) == "embed"
    assert choose_verbalizer("embed", mlm_backbone) == "embed"
    with pytest.raises(RosPromptError, match="no masked-LM head"):
        choose_verbalizer("mlm", backbone)


def test_word_queries_use_the_first_meaningful_piece_or_the_mean(mlm_backbone):
    from rosprompt_cli.verbalizers.expansion import word_queries

    tok = mlm_backbone.tokenizer
    table = mlm_backbone.word_embeddings.weight
    # 'économie' is ['▁', 'économie'] and 'Xx' is ['▁X', 'x'] in this vocabulary
    ids = {w: tok(w, add_special_tokens=False)["input_ids"] for w in ("économie", "Xx")}
    assert tok.convert_ids_to_tokens(ids["économie"])[0] == "▁"
    first = word_queries(tok, table, ["économie", "Xx"], "first")
    assert torch.equal(first[0], table[ids["économie"][1]])  # the bare marker is passed over
    assert torch.equal(first[1], table[ids["Xx"][0]])
    mean = word_queries(tok, table, ["Xx"], "mean")
    assert torch.allclose(mean[0], table[ids["Xx"]].mean(0))


def test_template_keeps_its_mask_and_truncates_only_the_text(mlm_backbone):
    from rosprompt_cli.verbalizers.mlm import MlmOptions, MlmScorer

    tok = mlm_backbone.tokenizer
    scorer = MlmScorer(mlm_backbone, options=MlmOptions(template="{text} Topic: {mask}."), max_length=12)
    long_text = "word " * 500
    enc = scorer.encode(["short", long_text, "a <mask> inside the text"])
    for row, length in zip(enc.input_ids, enc.lengths):
        tokens = row[:length].tolist()
        assert tokens[0] == tok.cls_token_id and tokens[-1] == tok.sep_token_id
        assert tokens.count(tok.mask_token_id) == 1, "exactly the template's mask, even when the text holds '<mask>'"
        assert tokens[-4:-1] == list(scorer.template.after[-3:]), "the template after the text survives truncation"
    assert enc.lengths.max() == 12
    with pytest.raises(RosPromptError, match="--max-length"):
        MlmScorer(mlm_backbone, options=MlmOptions(template="{text} Topic: {mask}."), max_length=8)


@pytest.mark.parametrize("side", ["right", "left"])
def test_mask_position_is_found_in_every_row_whatever_the_padding(mlm_backbone, side):
    from rosprompt_cli.verbalizers.mlm import mask_positions, right_aligned

    tok = mlm_backbone.tokenizer
    texts = ["<mask> one", "two words <mask>", "many more words before the <mask> and after it", "x <mask>"]
    enc = tok(texts, padding=True, padding_side=side, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    expected = [tok(t)["input_ids"].index(tok.mask_token_id) for t in texts]
    aligned_ids, aligned_mask = right_aligned(ids, mask)
    assert mask_positions(aligned_ids, tok.mask_token_id).tolist() == expected
    assert aligned_mask[:, 0].all() and torch.equal(aligned_mask.sum(1), mask.sum(1))
    found = mask_positions(ids, tok.mask_token_id).tolist()
    lead = (mask.shape[1] - mask.sum(1)).tolist() if side == "left" else [0] * len(texts)
    assert found == [e + pad for e, pad in zip(expected, lead)]
    with pytest.raises(RosPromptError, match="mask tokens"):
        mask_positions(tok(["no mask here"], return_tensors="pt")["input_ids"], tok.mask_token_id)


def test_scores_do_not_depend_on_batch_padding_or_side(mlm_backbone):
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.verbalizers.mlm import MlmScorer, mask_logits
    from rosprompt_cli.prompt import PromptMeta, SoftPrompt

    torch.manual_seed(1)
    meta = PromptMeta(mlm_backbone.name, mlm_backbone.content_hash, mlm_backbone.hidden_size, 3, verbalizer="mlm")
    scorer = MlmScorer(mlm_backbone, SoftPrompt(torch.randn(3, mlm_backbone.hidden_size), meta))
    texts = ["a short one", "a much longer text " * 20, "medium length text here"]
    labels = scorer.label_vectors(LabelSet.from_names(["sports", "politics", "health"]))
    enc = scorer.encode(texts)
    ids, mask = enc.padded()
    together = scorer.logits(scorer.batch_vectors(ids, mask), labels)
    for i, text in enumerate(texts):
        alone = scorer.logits(scorer.batch_vectors(*scorer.encode([text]).padded()), labels)
        assert torch.allclose(alone[0], together[i], atol=1e-5)
    # the same batch left-padded gives the same vocabulary logits at the mask
    lengths = mask.sum(1)
    shift = (mask.shape[1] - lengths).unsqueeze(1)
    index = (torch.arange(mask.shape[1]).unsqueeze(0) - shift) % mask.shape[1]
    left_ids, left_mask = ids.gather(1, index), mask.gather(1, index)
    assert not left_mask[:, 0].all()
    with torch.inference_mode():
        right = mask_logits(mlm_backbone, ids, mask, scorer._prompt_vectors)
        left = mask_logits(mlm_backbone, left_ids, left_mask, scorer._prompt_vectors)
    assert torch.allclose(left, right, atol=1e-5)


def test_the_decoder_shortcut_equals_the_full_vocabulary_logits(mlm_backbone):
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.lexicon import expand
    from rosprompt_cli.verbalizers.mlm import MlmScorer, mask_logits

    scorer = MlmScorer(mlm_backbone)
    labels = scorer.label_vectors(expand(LabelSet.from_names(["sports", "politics", "health"])))
    ids, mask = scorer.encode(["The match ended 2-1", "Le parlement a voté la loi", "Hospitals need nurses"]).padded()
    with torch.inference_mode():
        full = labels.class_scores(labels.word_scores(mask_logits(mlm_backbone, ids, mask, None)))
    assert torch.allclose(scorer.logits(scorer.batch_vectors(ids, mask), labels), full, atol=1e-4)


def test_mlm_training_is_deterministic_and_moves_the_prompt(mlm_backbone):
    from rosprompt_cli.examples import load_labelled
    from rosprompt_cli.labels import LabelSet
    from rosprompt_cli.lexicon import names_by_language
    from rosprompt_cli.training import TrainConfig, initial_prompt, train_prompt

    data = load_labelled(str(SAMPLES / "train_en.csv"), "text", "label").sample_per_class(2, seed=1)
    labels = LabelSet.from_names(sorted(data.label_names()))
    config = TrainConfig(prompt_length=4, epochs=2, batch_size=4, lr=0.05, language_keep=0.5, smoothing=0.1,
                         penalty="variance", penalty_weight=1.0)
    extra = names_by_language(labels)
    a = train_prompt(mlm_backbone, data, labels, config, extra_names=extra)
    b = train_prompt(mlm_backbone, data, labels, config, extra_names=extra)
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.allclose(a.vectors, initial_prompt(mlm_backbone, config)), "gradients reach the prompt"
    assert a.meta.verbalizer == "mlm" and a.meta.temperature == 1.0
    assert a.meta.verbalizer_options == {"template": "A {mask} news: {text}", "neighbours": 12, "aggregate": "max",
                                         "word_pieces": "first"}
    for penalty in ("kl", "l2"):
        train_prompt(mlm_backbone, data, labels, TrainConfig(prompt_length=2, epochs=1, penalty=penalty, penalty_weight=1.0))


def test_train_label_eval_through_the_cli_with_a_local_masked_lm(cli, tiny_mlm_dir, tmp_path):
    from rosprompt_cli.prompt import SoftPrompt

    prompt = tmp_path / "mlm.safetensors"
    cli("train", SAMPLES / "train_en.csv", "--model", tiny_mlm_dir, "--epochs", "2", "--prompt-len", "4",
        "--neighbours", "5", "--aggregate", "mean", "--dev", SAMPLES / "dev_en.csv", "--out", prompt)
    meta = SoftPrompt.load(prompt).meta
    assert meta.verbalizer == "mlm" and meta.backbone_source == str(tiny_mlm_dir)
    assert meta.verbalizer_options["neighbours"] == 5 and meta.verbalizer_options["aggregate"] == "mean"

    out = tmp_path / "tagged.csv"
    summary = tmp_path / "summary.json"
    cli("label", SAMPLES / "news_multilingual.csv", "--labels", SIB_LABELS, "--prompt", prompt, "--out", out,
        "--summary", summary)
    tagged = pl.read_csv(out)
    source = pl.read_csv(SAMPLES / "news_multilingual.csv")
    assert tagged.height == source.height and tagged["text"].to_list() == source["text"].to_list()
    assert set(tagged["label"].to_list()) <= set(SIB_LABELS.split(","))
    assert json.loads(summary.read_text())["model"]["verbalizer"] == "mlm"

    metrics = tmp_path / "m.json"
    cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--prompt", prompt, "--output", metrics)
    report = json.loads(metrics.read_text())
    accuracy = (tagged["label"] == tagged["category"]).mean()
    assert report["n"] == 315 and abs(report["accuracy"] - accuracy) < 1e-9, "label and eval agree"

    # NPPrompt: no training, the MLM verbalizer and the plain template
    proc = cli("eval", SAMPLES / "news_multilingual.csv", "--label-col", "category", "--model", tiny_mlm_dir,
               "--no-prompt", "--verbalizer", "mlm", "--output", metrics)
    assert b"no prompt (NPPrompt)" in b" ".join(proc.stderr.split()) and json.loads(metrics.read_text())["n"] == 315


def test_mlm_choices_that_cannot_work_are_refused_in_one_line(cli, tiny_mlm_dir, tmp_path):
    cases = [
        (["--verbalizer", "mlm"], b"has no masked-LM head"),  # the bundled e5 has none
        (["--model", tiny_mlm_dir, "--verbalizer", "embed", "--neighbours", "3"], b"--neighbours is an option of the MLM"),
        (["--model", tiny_mlm_dir, "--mlm-template", "no mask {text}"], b"must contain {mask} and {text}"),
        (["--model", tiny_mlm_dir, "--aggregate", "median"], b"--aggregate 'median'"),
    ]
    for extra, message in cases:
        proc = cli("label", SAMPLES / "news_multilingual.csv", "--labels", "sports,politics", "--out",
                   tmp_path / "o.csv", *extra, check=False)
        assert proc.returncode == 1 and message in b" ".join(proc.stderr.split()), (extra, proc.stderr)
        assert b"Traceback" not in proc.stderr and not (tmp_path / "o.csv").exists()
