"""The built-in multilingual label lexicon."""

from __future__ import annotations

import yaml

from rosprompt_cli.lexicon import LEXICON_PATH, load_lexicon, lookup

SIB_AND_BBC = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography",
               "business", "technology"]
LOW_RESOURCE = ["swh_Latn", "yor_Latn", "hau_Latn", "amh_Ethi", "ibo_Latn", "zul_Latn", "npi_Deva", "khm_Khmr"]


def test_coverage():
    lexicon = load_lexicon()
    assert len(lexicon) >= 40
    for label in SIB_AND_BBC + ["economy", "crime", "weather", "religion", "education", "environment", "science",
                                "culture", "war", "disasters"]:
        assert label in lexicon, label
    for label, by_language in lexicon.items():
        assert len(by_language) >= 25, (label, len(by_language))
        assert set(LOW_RESOURCE) <= set(by_language), (label, set(LOW_RESOURCE) - set(by_language))
        assert label in by_language["eng_Latn"], "the English names include the label itself"


def test_entries_are_non_empty_without_duplicates():
    raw = yaml.safe_load(LEXICON_PATH.read_text(encoding="utf-8"))
    for label, by_language in raw.items():
        for language, names in by_language.items():
            assert names, (label, language)
            assert all(isinstance(n, str) and n.strip() == n and n for n in names), (label, language)
            assert len(set(names)) == len(names), (label, language)
    assert load_lexicon() == raw, "the loaded lexicon is the file, unchanged"


def test_lookup_is_case_insensitive():
    assert lookup("Sports") == lookup("sports") is not None
    assert lookup("no such topic") is None
