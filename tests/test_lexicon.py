"""The built-in multilingual label lexicon."""

from __future__ import annotations

import yaml

from rosprompt_cli.labels import GIVEN, LabelSet
from rosprompt_cli.lexicon import LEXICON_PATH, expand, load_lexicon, lookup, open_world_negatives

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


def test_short_forms_resolve_to_lexicon_topics():
    assert lookup("tech") == lookup("technology")
    assert lookup("Sport") == lookup("sports")


def test_expand_adds_lexicon_names_with_their_languages_and_keeps_unknown_labels():
    given = LabelSet.from_mapping({"sports": ["sports", "deportes"], "knitting": ["knitting"]})
    expanded = expand(given)
    sports, knitting = expanded.labels
    assert sports.verbalisations[:2] == ("sports", "deportes") and sports.languages[:2] == (GIVEN, GIVEN)
    assert "michezo" in sports.verbalisations  # Swahili, from the lexicon
    assert sports.languages[sports.verbalisations.index("michezo")] == "swh_Latn"
    assert len(set(sports.verbalisations)) == len(sports.verbalisations), "a name is embedded once per label"
    assert knitting.verbalisations == ("knitting",) and knitting.language_of(0) == GIVEN
    names, owner, languages = expanded.name_table()
    assert len(names) == len(owner) == len(languages) == len(sports.verbalisations) + 1


def test_open_world_negatives_leave_out_the_labels_and_their_aliases():
    negatives = open_world_negatives(["tech", "sports"])
    assert "technology" not in negatives and "sports" not in negatives
    assert "weather" in negatives and len(negatives) == len(load_lexicon()) - 2
    english = open_world_negatives(["tech", "sports"], {"eng_Latn"})
    assert set(english) == set(negatives) and all(set(e) == {"eng_Latn"} for e in english.values())
