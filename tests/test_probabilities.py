"""Label probabilities read from hand-built token alternatives: each rule of labeling/probabilities.py on its own.

The end-to-end checks against a server whose answers follow a declared distribution are in test_scoring.py
and test_scoring_properties.py; these name the rules one case at a time.
"""

import math

import pytest

from backend.labeling.answers import TokenLogprob
from backend.labeling.parser import parse_spec
from backend.labeling.probabilities import Reading, consistent_labels, json_slots, label_forms, score_answer, text_slots
from tests.conftest import MULTI_CONFIG


def config(*labels: str) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return f'<View><Text name="text" value="$text"/><Choices name="c" toName="text">{choices}</Choices></View>'


SENTIMENT = parse_spec(config("Positive", "Negative", "Neutral"))
TOPICS = parse_spec(config("Sci", "Sci/Tech", "World", "World News", "Sports"))


def tok(token: str, p: float, *alternatives: tuple[str, float]) -> TokenLogprob:
    """A generated token with probability p; the alternatives list includes it first, as servers do."""
    top = ((token, math.log(p)),) + tuple((alt, math.log(q)) for alt, q in alternatives)
    return TokenLogprob(token, math.log(p), top)


def sure(token: str) -> TokenLogprob:
    return tok(token, 1.0)


def test_a_leading_phrase_is_not_the_label_the_label_position_is():
    # "The label is Positive": the first token's alternatives hold a stray "Negative" at 0.01; the label's own
    # position says Positive 0.7, Negative 0.3.
    tokens = [
        tok("The", 0.99, ("Negative", 0.01)),
        sure(" label"),
        sure(" is"),
        tok(" Positive", 0.7, (" Negative", 0.3)),
    ]
    scored = score_answer(tokens, "The label is Positive", SENTIMENT, False, ("Positive",))
    assert scored.labels == ("Positive",)
    assert scored.score == pytest.approx(0.99 * 0.7 / (0.99 + 0.01))


def test_every_surface_form_of_a_label_counts_for_it_and_the_generated_one_too():
    # Greedy picked "Negative" (0.4, the single most likely token) but Positive has 0.6 over three spellings.
    tokens = [tok("Negative", 0.4, ("Positive", 0.25), ("positive", 0.2), (" POSITIVE", 0.15))]
    scored = score_answer(tokens, "Negative", SENTIMENT, False, ("Negative",))
    assert scored.labels == ("Positive",) and scored.score == pytest.approx(0.6)
    assert scored.distribution["Negative"] == pytest.approx(0.4)


def test_a_partial_token_shared_by_two_labels_counts_for_neither():
    # "Ne" may become Negative or Neutral: its 0.45 is nobody's, but it is label mass (so Positive is 0.55).
    tokens = [tok("Pos", 0.55, ("Ne", 0.45)), sure("itive")]
    scored = score_answer(tokens, "Positive", SENTIMENT, False, ("Positive",))
    assert scored.labels == ("Positive",) and scored.score == pytest.approx(0.55)
    assert scored.unattributed == pytest.approx(0.45)
    assert scored.distribution["Negative"] == 0 and scored.distribution["Neutral"] == 0


def test_unattributed_mass_that_could_change_the_argmax_leaves_the_parsed_label_unscored():
    tokens = [tok("Positive", 0.4, ("Ne", 0.35), ("Neutral", 0.25))]  # "Ne" could make Neutral 0.6
    scored = score_answer(tokens, "Positive", SENTIMENT, False, ("Positive",))
    assert scored.labels == ("Positive",) and scored.score is None


def test_a_prefix_label_is_told_apart_by_the_closing_quote():
    # {"label": "Sci/Tech"}: after "Sci" the answer could close the string (Sci, 0.3) or go on (Sci/Tech).
    tokens = [
        sure('{"'),
        sure("label"),
        sure('":'),
        sure(' "'),
        tok("Sci", 0.75, ("World", 0.25)),
        tok("/T", 0.6, ('"}', 0.4)),
        sure("ech"),
        sure('"}'),
    ]
    scored = score_answer(tokens, '{"label": "Sci/Tech"}', TOPICS, True, ("Sci/Tech",))
    assert scored.labels == ("Sci/Tech",) and scored.score == pytest.approx(0.45)
    assert scored.distribution["Sci"] == pytest.approx(0.3)


def test_a_prefix_label_the_answer_ended_after_is_both_labels_when_the_end_is_hidden():
    # Plain "Sci", then the end of the answer, which OpenAI does not show: Sci or the start of Sci/Tech.
    tokens = [tok("Sci", 0.6, ("Sports", 0.4))]
    scored = score_answer(tokens, "Sci", TOPICS, False, ("Sci",))
    assert scored.unattributed == pytest.approx(0.6) and scored.score is None  # could be either: no score
    shown_end = [tok("Sci", 0.6, ("Sports", 0.4)), tok("<|endoftext|>", 0.5, ("/T", 0.5))]  # vLLM shows it
    scored = score_answer(shown_end, "Sci", TOPICS, False, ("Sci",))
    assert scored.score == pytest.approx(0.4) and scored.labels == ("Sports",)  # Sci 0.3, Sci/Tech 0.3


def test_what_the_list_leaves_out_where_the_answer_could_have_ended_is_unattributed_label_mass():
    # "World News": after "World" the hidden end (World) has what " News" leaves, 0.2 of 0.7.
    tokens = [tok("World", 0.7, ("Sports", 0.3)), tok(" News", 0.5 / 0.7)]
    scored = score_answer(tokens, "World News", TOPICS, False, ("World News",))
    assert scored.labels == ("World News",) and scored.score == pytest.approx(0.5)
    assert scored.unattributed == pytest.approx(0.2)


def test_a_longer_label_is_not_a_shorter_one_followed_by_more():
    forms = label_forms(TOPICS, False)
    assert consistent_labels("World News", forms) == {"World News"}
    assert consistent_labels("World N", forms) == {"World News"}
    assert consistent_labels("World ", forms) == {"World", "World News"}
    assert consistent_labels("World.", forms) == {"World"}
    assert consistent_labels("Sci/", forms) == {"Sci/Tech"}
    assert consistent_labels("sci", forms) == {"Sci", "Sci/Tech"}
    assert consistent_labels("", forms) == {"Sci", "Sci/Tech", "World", "World News", "Sports"}
    assert consistent_labels("Spot", forms) == frozenset()


def test_json_scores_the_label_not_its_spelling_and_a_short_label_inside_the_key_is_not_it():
    spec = parse_spec(config("a", "b"))
    tokens = [
        sure('{"'),
        tok("label", 0.9, ("labels", 0.1)),
        sure('":'),
        sure(' "'),
        tok("a", 0.5, ("A", 0.2), ("b", 0.3)),
        sure('"}'),
    ]
    scored = score_answer(tokens, '{"label": "a"}', spec, True, ("a",))
    # "a" is both the label and inside the key "label"; the score is P(a) at the value: 0.5 + 0.2 (as "A").
    assert scored.labels == ("a",) and scored.score == pytest.approx(0.7)


def test_no_alternatives_means_no_score_never_a_constant():
    only_itself = [TokenLogprob("Positive", math.log(0.6), (("Positive", math.log(0.6)),))]  # top_logprobs=1
    assert score_answer(only_itself, "Positive", SENTIMENT, False, ("Positive",)).score is None
    no_top = [TokenLogprob("Positive", math.log(0.6), ())]
    assert score_answer(no_top, "Positive", SENTIMENT, False, ("Positive",)).score is None
    assert score_answer(None, "Positive", SENTIMENT, False, ("Positive",)).score is None


def test_tokens_that_do_not_spell_the_answer_give_no_score():
    tokens = [tok("Negative", 0.9, ("Positive", 0.1))]
    assert score_answer(tokens, "Positive", SENTIMENT, False, ("Positive",)).score is None


def test_a_token_holding_part_of_a_character_is_compared_as_bytes():
    spec = parse_spec(config("Négatif", "Neutre"))
    # cl100k splits "Négatif" as "N", "\xc3\xa9g", "atif"; the server sends bytes, the client keeps them.
    part = b"\xc3\xa9g".decode("utf-8", "surrogateescape")
    tokens = [tok("N", 0.8, ("Neut", 0.2)), tok(part, 1.0), sure("atif")]
    scored = score_answer(tokens, "Négatif", spec, False, ("Négatif",))
    assert scored.labels == ("Négatif",) and scored.score == pytest.approx(0.8)


def test_multiple_choice_score_is_the_product_of_each_labels_probability_where_it_is_named():
    spec = parse_spec(MULTI_CONFIG)  # sports, politics, science, food
    tokens = [
        sure('{"'),
        sure("labels"),
        sure('":'),
        sure(' ["'),
        tok("sports", 0.8, ("food", 0.2)),
        sure('",'),
        sure(' "'),
        tok("food", 0.6, ("science", 0.4)),
        sure('"]}'),
    ]
    content = '{"labels": ["sports", "food"]}'
    scored = score_answer(tokens, content, spec, True, ("sports", "food"))
    assert scored.labels == ("sports", "food") and scored.score == pytest.approx(0.8 * 0.6)
    text_tokens = [tok("sports", 0.8, ("food", 0.2)), sure(";"), tok(" food", 0.6, (" science", 0.4))]
    scored = score_answer(text_tokens, "sports; food", spec, False, ("sports", "food"))
    assert scored.score == pytest.approx(0.8 * 0.6)


def test_label_positions_in_json_answers_batches_and_prose():
    content = 'Sure! {"items": {"1": {"label": "Sci"}, "2": {"label": "World News"}}}'
    assert json_slots(content, TOPICS, "2") == [("World News", content.index("World News"))]
    assert json_slots(content, TOPICS, "1") == [("Sci", content.index('Sci"'))]
    assert json_slots('{"label": "nope"}', TOPICS) == []
    assert text_slots("The label is world news.", TOPICS, ("World News",)) == [("World News", 13)]
    assert text_slots("sci/t", TOPICS, ("Sci/Tech",)) == [("Sci/Tech", 0)]  # an abbreviation: its first word


def test_a_reading_is_determined_only_when_no_split_of_the_unattributed_mass_changes_the_leader():
    reading = Reading({"A": 0.5, "B": 0.3}, {frozenset({"B", "C"}): 0.15}, shown=True)
    assert reading.determined()
    reading.ambiguous[frozenset({"B", "C"})] = 0.25
    assert not reading.determined()
