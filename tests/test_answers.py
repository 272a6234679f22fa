"""Answers: parsed tolerantly, validated strictly (their probabilities: test_probabilities.py)."""

import pytest

from backend.labeling.answers import InvalidAnswer, locate_json, match_label, parse_json_answer, parse_text_answer
from backend.labeling.parser import parse_spec
from tests.conftest import MULTI_CONFIG, SEEDS, SENTIMENT_CONFIG

SPEC = parse_spec(SENTIMENT_CONFIG)
SUPPORT = parse_spec((SEEDS / "support" / "config.xml").read_text())
MULTI = parse_spec(MULTI_CONFIG)


@pytest.mark.parametrize(
    "raw, label",
    [
        ("positive", "positive"),
        ("Positive", "positive"),
        (" POSITIVE. ", "positive"),
        ("pos", "positive"),
        ("The label of the above text is negative.", "negative"),
        ("negative\n", "negative"),
    ],
)
def test_text_answers_map_onto_the_label_set(raw, label):
    assert parse_text_answer(raw, SPEC) == (label,)


@pytest.mark.parametrize("raw", ["neutral", "", "p", "positive or negative", "banana"])
def test_text_answers_outside_the_set_are_no_label(raw):
    with pytest.raises(InvalidAnswer):
        parse_text_answer(raw, SPEC)


def test_alias_and_display_name_both_map_to_the_stored_value():
    assert match_label("Technical issue", SUPPORT) == "technical"
    assert match_label("technical", SUPPORT) == "technical"
    assert match_label("tech", SUPPORT) == "technical"


@pytest.mark.parametrize(
    "raw, labels",
    [
        ('{"label": "positive"}', ("positive",)),
        ('```json\n{"label": "Negative"}\n```', ("negative",)),
        ('Sure! Here is the answer: {"label": "positive"} Hope it helps.', ("positive",)),
        ('{"sentiment": "negative"}', ("negative",)),
        ('"positive"', ("positive",)),
    ],
)
def test_json_answers_are_parsed_tolerantly(raw, labels):
    assert parse_json_answer(raw, SPEC) == labels


@pytest.mark.parametrize(
    "raw, kind",
    [
        ('{"label": "pos', "malformed"),
        ('{"label": "neutral"}', "out_of_set"),
        ('{"x": 1}', "malformed"),
        ('{"label": 3}', "malformed"),
        ('{"label": ["positive", "negative"]}', "malformed"),
        ("", "malformed"),
    ],
)
def test_json_answers_outside_the_set_or_broken_are_refused(raw, kind):
    with pytest.raises(InvalidAnswer) as info:
        parse_json_answer(raw, SPEC)
    assert info.value.kind == kind


def test_multiple_choice_answers_in_both_forms():
    assert parse_json_answer('{"labels": ["food", "sports"]}', MULTI) == ("sports", "food")
    assert parse_text_answer("food; Sports", MULTI) == ("sports", "food")
    with pytest.raises(InvalidAnswer):
        parse_json_answer('{"labels": ["food", "cars"]}', MULTI)


@pytest.mark.parametrize(
    "raw, found",
    [
        ('{"label": "x"}', ('{"label": "x"}', 0)),
        ('Sure: {"label": "x"} ok', ('{"label": "x"} ok', 6)),
        ('```json\n  {"label": "x"}\n```', ('{"label": "x"}', 10)),
        ("no json here", None),
    ],
)
def test_the_json_of_an_answer_is_located_where_it_starts(raw, found):
    assert locate_json(raw) == found
    if found:
        assert raw[found[1] :].startswith(found[0][:5])


def test_a_label_inside_a_longer_labels_mention_is_not_a_second_mention():
    spec = parse_spec(
        '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="Sci"/>'
        '<Choice value="Sci/Tech"/><Choice value="World"/><Choice value="World News"/></Choices></View>'
    )
    assert parse_text_answer("The label is sci/tech", spec) == ("Sci/Tech",)
    assert parse_text_answer("The label is World News.", spec) == ("World News",)
    assert parse_text_answer("The label is Sci.", spec) == ("Sci",)
    with pytest.raises(InvalidAnswer):
        parse_text_answer("Sci or World", spec)
