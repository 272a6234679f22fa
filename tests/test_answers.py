"""Answers: parsed tolerantly, validated strictly; logprobs become a distribution over the label set."""

import math

import pytest

from backend.labeling.answers import (InvalidAnswer, TokenLogprob, label_distribution, match_label,
                                      parse_json_answer, parse_text_answer, span_confidence)
from backend.labeling.spec import parse_spec
from tests.conftest import MULTI_CONFIG, SENTIMENT_CONFIG, SEEDS

SPEC = parse_spec(SENTIMENT_CONFIG)
SUPPORT = parse_spec((SEEDS / "support" / "config.xml").read_text())
MULTI = parse_spec(MULTI_CONFIG)


@pytest.mark.parametrize("raw, label", [
    ("positive", "positive"), ("Positive", "positive"), (" POSITIVE. ", "positive"), ("pos", "positive"),
    ("The label of the above text is negative.", "negative"), ("negative\n", "negative"),
])
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


@pytest.mark.parametrize("raw, labels", [
    ('{"label": "positive"}', ("positive",)),
    ('```json\n{"label": "Negative"}\n```', ("negative",)),
    ('Sure! Here is the answer: {"label": "positive"} Hope it helps.', ("positive",)),
    ('{"sentiment": "negative"}', ("negative",)),
    ('"positive"', ("positive",)),
])
def test_json_answers_are_parsed_tolerantly(raw, labels):
    assert parse_json_answer(raw, SPEC) == labels


@pytest.mark.parametrize("raw, kind", [
    ('{"label": "pos', "malformed"), ('{"label": "neutral"}', "out_of_set"), ('{"x": 1}', "malformed"),
    ('{"label": 3}', "malformed"), ('{"label": ["positive", "negative"]}', "malformed"), ("", "malformed"),
])
def test_json_answers_outside_the_set_or_broken_are_refused(raw, kind):
    with pytest.raises(InvalidAnswer) as info:
        parse_json_answer(raw, SPEC)
    assert info.value.kind == kind


def test_multiple_choice_answers_in_both_forms():
    assert parse_json_answer('{"labels": ["food", "sports"]}', MULTI) == ("sports", "food")
    assert parse_text_answer("food; Sports", MULTI) == ("sports", "food")
    with pytest.raises(InvalidAnswer):
        parse_json_answer('{"labels": ["food", "cars"]}', MULTI)


def lp(p):
    return math.log(p)


def test_distribution_from_single_token_labels():
    tokens = [TokenLogprob("positive", lp(0.7), (("positive", lp(0.7)), ("negative", lp(0.2)), ("neutral", lp(0.1))))]
    dist = label_distribution(tokens, SPEC)
    assert dist["positive"] == pytest.approx(0.7 / 0.9)
    assert dist["negative"] == pytest.approx(0.2 / 0.9)


def test_distribution_follows_multi_token_labels_that_share_a_prefix():
    # Labels "Billing" and "Bill..." style collisions: tokens "Tech" "nical" vs "Feed" "back".
    tokens = [TokenLogprob("tech", lp(0.6), (("tech", lp(0.6)), ("Feed", lp(0.3)))),
              TokenLogprob("nical", lp(0.9), (("nical", lp(0.9)), ("no", lp(0.1))))]
    dist = label_distribution(tokens, SUPPORT)
    assert max(dist, key=dist.get) == "technical"
    assert dist["technical"] == pytest.approx(0.54 / (0.54 + 0.3))
    assert dist["Feedback"] == pytest.approx(0.3 / (0.54 + 0.3))


def test_no_distribution_without_mass_on_labels():
    assert label_distribution([TokenLogprob("banana", lp(0.9), (("banana", lp(0.9)),))], SPEC) is None
    assert label_distribution([], SPEC) is None


def test_span_confidence_is_the_probability_of_the_label_tokens():
    tokens = [TokenLogprob('{"label": "', 0.0), TokenLogprob("positive", lp(0.8)), TokenLogprob('"}', lp(0.99))]
    assert span_confidence(tokens, '{"label": "positive"}', ["positive"]) == pytest.approx(0.8)
    assert span_confidence(tokens, "something else", ["positive"]) is None
