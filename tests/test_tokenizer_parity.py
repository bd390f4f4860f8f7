"""The tokenizer rosprompt loads gives the ids of the genuine multilingual-e5-small tokenizer."""

from __future__ import annotations

import csv

from conftest import SIB, requires_sib

# 24 languages, 15 scripts.
LANGUAGES = [
    "eng_Latn", "fra_Latn", "vie_Latn", "swh_Latn", "yor_Latn", "tur_Latn", "rus_Cyrl", "ell_Grek",
    "arb_Arab", "pes_Arab", "heb_Hebr", "hin_Deva", "npi_Deva", "ben_Beng", "tam_Taml", "tel_Telu",
    "tha_Thai", "khm_Khmr", "amh_Ethi", "kat_Geor", "hye_Armn", "zho_Hans", "jpn_Jpan", "kor_Hang",
]


def _dev_texts(lang: str) -> list[str]:
    with open(SIB / "dev" / f"{lang}.tsv", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh, delimiter="\t")]


@requires_sib
def test_ids_match_the_genuine_tokenizer_on_sib200_dev(backbone):
    from tokenizers import Tokenizer

    from rosprompt_cli.bundled import genuine_tokenizer_path

    genuine = Tokenizer.from_file(str(genuine_tokenizer_path()))
    checked = 0
    for lang in LANGUAGES:
        for text in _dev_texts(lang):
            for variant in (text, "query: " + text, text + "  ", " <mask> " + text):
                ours = backbone.tokenizer(variant)["input_ids"]
                assert ours == genuine.encode(variant).ids, (lang, variant)
                checked += 1
    assert checked == len(LANGUAGES) * 99 * 4


def test_vocabulary_matches_the_bundled_weights(backbone):
    from rosprompt_cli.bundled import bundled_bin_path, read_q4_file

    pieces = read_q4_file(bundled_bin_path()).pieces
    vocab = backbone.tokenizer.convert_ids_to_tokens(list(range(len(pieces))))
    assert vocab == pieces
    assert backbone.word_embeddings.weight.shape[0] >= len(pieces)


@requires_sib
def test_batch_tokenisation_with_prompt_room_matches_single(backbone):
    from rosprompt_cli.verbalizers.embed import tokenize

    texts = _dev_texts("hin_Deva")[:8]
    batch = tokenize(backbone, texts, "query: ", prompt_length=16)
    for i, text in enumerate(texts):
        single = backbone.tokenizer("query: " + text)["input_ids"]
        row = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
        assert row == single
