"""Labels and scores against a server whose answers follow a declared distribution (the fake LLM's reference
mode: real cl100k tokens, greedy answers, exact top_logprobs), through the real openai client over HTTP.

The first tests are the defects of the scoring this replaced, one each: each failed on that code.
"""

import json
import logging

import pytest

from backend.devtools.fake_llm import FakeLLM
from backend.labeling.examples import Example
from backend.labeling.fingerprint import fingerprint
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler
from backend.model.options import BadOptions, parse_options, prompt_for
from backend.settings import Settings, SettingsError
from tests.conftest import llm_settings

TASK = "The delivery came two weeks late and the box was crushed."
DEMOS = [
    Example("Great service, thank you!", ("Positive",), "seed", "1"),
    Example("Never again.", ("Negative",), "seed", "2"),
]


def config(*labels: str, multiple: bool = False) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    kind = ' choice="multiple"' if multiple else ""
    return f'<View><Text name="text" value="$text"/><Choices name="c" toName="text"{kind}>{choices}</Choices></View>'


@pytest.fixture
def reference():
    with FakeLLM(reference=1) as server:
        yield server


def label(server, labels, truth, mode="logprobs", examples=DEMOS, task=TASK, **settings):
    """Declare the truth of the task, label it, return the outcome."""
    server.declare({task: truth})
    spec = parse_spec(config(*labels)) if isinstance(labels, tuple) else labels
    settings = llm_settings(server, answer_mode=mode, **settings)
    return Labeler(spec, examples, settings, LLMClient(settings, sleep=lambda s: None)).label_text(task)


# ---- the defects, one test each ---------------------------------------------------------------------------


def test_words_before_the_label_are_not_scored_as_the_label(reference):
    # Four leading phrases crowd the first position's five alternatives: only "Negative" of the bare answers
    # shows there (p 0.0045). It used to win with score 1.0; the label's own position says Positive 0.55.
    truth = {
        "labels": {"Positive": 0.55, "Negative": 0.45},
        "shapes": [
            ["The label is ", "", 0.6],
            ["Label: ", "", 0.15],
            ["Answer: ", "", 0.12],
            ["Sentiment: ", "", 0.12],
            ["", "", 0.01],
        ],
    }
    outcome = label(reference, ("Positive", "Negative"), truth, top_logprobs=5)
    assert outcome.answer == "The label is Positive"
    assert outcome.labels == ("Positive",) and outcome.score == pytest.approx(0.55, abs=0.01)


def test_a_label_that_is_a_prefix_of_another_no_longer_takes_its_mass(reference):
    # Sci/Tech 0.45 is the most likely; "Sci" (0.3) is a prefix of it. The server shows the end (as vLLM does).
    truth = {"labels": {"Sci": 0.3, "Sci/Tech": 0.45, "World": 0.25}, "end": True}
    outcome = label(reference, ("Sci", "Sci/Tech", "World"), truth)
    assert outcome.labels == ("Sci/Tech",) and outcome.score == pytest.approx(0.45)


def test_the_generated_label_counts_all_its_surface_forms_too(reference):
    # Greedy says "Positive" (0.3, the single most likely token); Positive has 0.55 over two spellings,
    # Negative 0.45 over two. The generated label used to get only its own token and lose.
    truth = {
        "labels": {"Positive": 0.55, "Negative": 0.45},
        "forms": {"Positive": {"Positive": 0.3, "positive": 0.25}, "Negative": {"Negative": 1, "negative": 1}},
    }
    outcome = label(reference, ("Positive", "Negative"), truth)
    assert outcome.answer == "Positive"
    assert outcome.labels == ("Positive",) and outcome.score == pytest.approx(0.55)


def test_a_partial_token_counts_for_no_label_rather_than_for_each(reference):
    # cl100k spells Neuroscience and Neurology from the same first token "Ne" (0.45 together).
    truth = {"labels": {"Physics": 0.55, "Neuroscience": 0.25, "Neurology": 0.2}}
    outcome = label(reference, ("Physics", "Neuroscience", "Neurology"), truth)
    assert outcome.labels == ("Physics",) and outcome.score == pytest.approx(0.55)
    assert outcome.unattributed == pytest.approx(0.45)


def test_top_logprobs_outside_1_to_20_are_refused_in_logprobs_mode():
    for value in ("0", "21", "-1"):
        with pytest.raises(SettingsError, match="LLM_TOP_LOGPROBS"):
            Settings.from_env({"LLM_ANSWER_MODE": "logprobs", "LLM_TOP_LOGPROBS": value})
    assert Settings.from_env({"LLM_ANSWER_MODE": "json", "LLM_TOP_LOGPROBS": "0"}).top_logprobs == 0
    with pytest.raises(SettingsError, match="LLM_TOP_LOGPROBS"):
        Settings.from_env({"LLM_ANSWER_MODE": "json", "LLM_TOP_LOGPROBS": "21"})
    settings = Settings.from_env({"LLM_TOP_LOGPROBS": "0"})
    with pytest.raises(BadOptions, match="LLM_TOP_LOGPROBS"):  # a project switching to logprobs mode
        prompt_for(settings, parse_options({"mode": "logprobs"}, settings))


def test_json_scores_the_label_not_the_spelling_it_generated(reference):
    # {"label": "Negative"} is the greedy answer (0.4), but Positive has 0.6 over two spellings.
    truth = {"labels": {"Positive": 0.6, "Negative": 0.4}, "forms": {"Positive": {"Positive": 0.35, "positive": 0.25}}}
    outcome = label(reference, ("Positive", "Negative"), truth, mode="json")
    assert json.loads(outcome.answer) == {"label": "Negative"}
    assert outcome.labels == ("Positive",) and outcome.score == pytest.approx(0.6)


def test_json_scores_a_short_label_at_its_value_not_inside_the_key(reference):
    # "a" occurs inside the key "label": the score used to be that certain key token's, 1.0.
    outcome = label(reference, ("a", "b"), {"labels": {"a": 0.7, "b": 0.3}}, mode="json")
    assert outcome.labels == ("a",) and outcome.score == pytest.approx(0.7)


# ---- every mode, batches, multiple choice -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["json", "logprobs", "text"])
def test_every_answer_mode_scores_the_declared_probability(reference, mode):
    truth = {
        "labels": {"Positive": 0.2, "Negative": 0.65, "Neutral": 0.15},
        "forms": {"Negative": {"Negative": 0.5, "negative": 0.3, " negative": 0.2}},
        "shapes": [["", "", 0.7], ["", ".", 0.3]],
    }
    outcome = label(reference, ("Positive", "Negative", "Neutral"), truth, mode=mode)
    assert outcome.labels == ("Negative",) and outcome.score == pytest.approx(0.65)
    body = reference.requests()[-1]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 20  # json and text ask for alternatives too


def test_without_logprobs_the_parsed_label_stands_and_the_score_is_null(reference):
    truth = {"labels": {"Positive": 0.3, "Negative": 0.7}}
    outcome = label(reference, ("Positive", "Negative"), truth, mode="text", request_logprobs=False)
    assert outcome.labels == ("Negative",) and outcome.score is None
    outcome = label(reference, ("Positive", "Negative"), truth, mode="json", top_logprobs=0)
    assert outcome.labels == ("Negative",) and outcome.score is None  # no alternatives: no score


def test_a_batch_scores_each_item_at_its_own_label(reference):
    labels = ("Positive", "Negative", "Neutral")
    truths = {
        f"batch item {i}": {"labels": dict(zip(labels, shares)), "forms": {"Positive": {"Positive": 1, "positive": 1}}}
        for i, shares in enumerate([(0.7, 0.2, 0.1), (0.45, 0.4, 0.15), (0.1, 0.3, 0.6)])
    }
    reference.declare(truths)
    settings = llm_settings(reference, answer_mode="json", batch_size=3)
    labeler = Labeler(parse_spec(config(*labels)), DEMOS, settings, LLMClient(settings))
    outcomes = labeler.ask_batch(list(truths))
    assert reference.stats()["requests"] == 1
    assert [o.labels for o in outcomes] == [("Positive",), ("Positive",), ("Neutral",)]
    assert [o.score for o in outcomes] == pytest.approx([0.7, 0.45, 0.6])


def test_multiple_choice_scores_the_stated_labels_where_they_are_named(reference):
    spec = parse_spec(config("sports", "politics", "food", multiple=True))
    truth = {"labels": {"sports": 0.8, "food": 0.2}}
    outcome = label(reference, spec, truth, mode="json")
    assert outcome.labels == ("sports",) and outcome.score == pytest.approx(0.8)
    assert reference.requests()[-1]["body"]["response_format"]["json_schema"]["schema"]["properties"]["labels"]


# ---- echo ---------------------------------------------------------------------------------------------------


def test_echo_scores_every_label_exactly_in_one_request(reference):
    # Sci/Tech would never be generated greedily in plain text here (the hidden end after "Sci" hides it);
    # echo reads P(" Sci/Tech" and the end) itself.
    truth = {"labels": {"Sci": 0.3, "Sci/Tech": 0.45, "World": 0.25}, "forms": {"World": {"World": 3, "world": 1}}}
    outcome = label(reference, ("Sci", "Sci/Tech", "World"), truth, scoring="echo")
    assert outcome.labels == ("Sci/Tech",) and outcome.score == pytest.approx(0.45)
    assert outcome.distribution == pytest.approx({"Sci": 0.3, "Sci/Tech": 0.45, "World": 0.25})
    body = reference.requests()[-1]["body"]
    assert reference.stats()["by_endpoint"] == {"/v1/completions": 1} and body["echo"] is True
    prompt = body["prompt"][0]
    assert "Never again. [SEP] The label of the above text is Negative\n\n" in prompt
    assert f"{TASK} [SEP] The label of the above text is Sci\n\n" == prompt[prompt.index(TASK) :]
    assert outcome.prompt_tokens > 0 and outcome.requests == 1


def test_echo_is_refused_with_a_clear_message_once(reference, caplog):
    reference.configure(echo=0)  # as OpenAI's current models answer echo with logprobs
    with caplog.at_level(logging.ERROR):
        outcome = label(reference, ("A", "B"), {"labels": {"A": 0.6, "B": 0.4}}, scoring="echo")
        settings = llm_settings(reference, scoring="echo")
        labeler = Labeler(parse_spec(config("A", "B")), DEMOS, settings, LLMClient(settings))
        outcomes = [labeler.label_text(TASK) for _ in range(3)]
    assert outcome.error == "echo_unsupported" and outcome.labels is None
    assert "LLM_SCORING=echo" in outcome.detail and "LLM_SCORING=answer" in outcome.detail
    assert "not supported" in outcome.detail  # the server's own words
    assert all(o.error == "echo_unsupported" for o in outcomes)
    assert reference.stats()["requests"] == 2  # each labeler asked once, then knew
    assert caplog.text.count("LLM_SCORING=echo needs") == 2


def test_once_echo_worked_a_refused_task_fails_alone(reference):
    reference.declare({TASK: {"labels": {"A": 0.6, "B": 0.4}}})
    settings = llm_settings(reference, scoring="echo")
    labeler = Labeler(parse_spec(config("A", "B")), DEMOS, settings, LLMClient(settings))
    assert labeler.label_text(TASK).labels == ("A",)
    failed = labeler.label_text("a task the server answers with a 400")
    assert failed.error == "llm_error" and "no truth is declared" in failed.detail
    assert labeler.label_text(TASK).labels == ("A",)


def test_echo_against_a_server_that_ignores_it_is_refused(fake_llm):
    # The stand-in answers completions without echoing the prompt (as servers without the feature do).
    settings = llm_settings(fake_llm, scoring="echo")
    outcome = Labeler(parse_spec(config("Positive", "Negative")), DEMOS, settings, LLMClient(settings)).label_text(TASK)
    assert outcome.error == "echo_unsupported" and "answered without them" in outcome.detail


def test_echo_with_contextual_calibration_divides_out_the_content_free_prior(reference):
    prior = {"labels": {"Positive": 0.8, "Negative": 0.2}}
    reference.declare({"N/A": prior, "[MASK]": prior})  # the empty probe has no truth: it is skipped
    outcome = label(
        reference,
        ("Positive", "Negative"),
        {"labels": {"Positive": 0.7, "Negative": 0.3}},
        scoring="echo",
        calibration="contextual",
    )
    # (0.7 / 0.8) : (0.3 / 0.2) -> Negative 1.5 / 2.375
    assert outcome.labels == ("Negative",) and outcome.score == pytest.approx(1.5 / 2.375)


def test_echo_covers_single_choice_configs_and_other_configs_keep_answer_scoring(reference):
    spec = parse_spec(config("sports", "food", multiple=True))
    outcome = label(reference, spec, {"labels": {"sports": 0.9, "food": 0.1}}, mode="json", scoring="echo")
    assert outcome.labels == ("sports",) and outcome.score == pytest.approx(0.9)
    assert reference.stats()["by_endpoint"] == {"/v1/chat/completions": 1}


# ---- scoring settings move the model version and the cache key -------------------------------------------------


def test_scoring_settings_move_model_version_and_cache_key():
    spec = parse_spec(config("Positive", "Negative"))
    variants = [
        {},
        {"LLM_SCORING": "echo"},
        {"LLM_TOP_LOGPROBS": "5"},
        {"LLM_REQUEST_LOGPROBS": "false"},
        {"LLM_ANSWER_MODE": "logprobs", "CALIBRATION": "contextual"},
    ]
    versions, keys = set(), set()
    for env in variants:
        settings = Settings.from_env({"LLM_MODEL": "m", **env})
        labeler = Labeler(spec, DEMOS, settings, None)
        versions.add(labeler.model_version)
        keys.add(labeler.cache_key(TASK))
        assert labeler.model_version == fingerprint(spec, labeler.examples, labeler.prompt).model_version
    assert len(versions) == len(variants) and len(keys) == len(variants)
    # Echo makes the answer mode irrelevant: the same version whatever LLM_ANSWER_MODE says.
    echo = {
        Labeler(spec, DEMOS, Settings.from_env({"LLM_SCORING": "echo", "LLM_ANSWER_MODE": mode}), None).model_version
        for mode in ("json", "logprobs", "text")
    }
    assert len(echo) == 1
