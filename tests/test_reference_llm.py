"""The fake LLM's reference mode against its own declared truth, through the real openai client over HTTP.

Nothing here uses the backend's scoring: these tests check that the equipment the scoring tests stand on
answers exactly what was declared (real cl100k tokens, greedy decoding, exact top_logprobs, echo).
"""

import json
import math

import openai
import pytest

from backend.devtools.fake_llm import FakeLLM
from backend.devtools.fake_llm.reference import Truth, encoding

QUERY = "The soup was cold and the waiter rude."
PROMPT = f"{QUERY} [SEP] The label of the above text is"
TRUTH = {
    "labels": {"Positive": 0.3, "Negative": 0.5, "Neutral": 0.2},
    "forms": {"Negative": {"Negative": 0.4, "negative": 0.35, "NEGATIVE": 0.25}},
    "shapes": [["", "", 0.6], ["The label is ", ".", 0.4]],
}


@pytest.fixture
def reference():
    with FakeLLM(reference=1) as server:
        server.declare({QUERY: TRUTH})
        yield server


@pytest.fixture
def client(reference):
    with openai.OpenAI(base_url=reference.url, api_key="sk-test", max_retries=0) as client:
        yield client


def chat(client, **kwargs):
    return client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], logprobs=True, top_logprobs=20, **kwargs
    )


def declared_strings(kind: str) -> dict[str, float]:
    return {text: p for text, _, p in Truth.from_json(TRUTH).answers(kind)}


def test_greedy_answer_with_the_exact_conditional_probabilities_at_every_position(client):
    strings = declared_strings("text")
    answer = chat(client).choices[0]
    content, entries = answer.message.content, answer.logprobs.content
    # Greedily the most likely token wins at each position: "The" (the lead phrase, 0.4) over "Positive"
    # (0.18), then " Positive" (0.3) over " Negative" (0.2): Negative (0.5) is split over three spellings.
    assert content == "The label is Positive."
    assert [e.token for e in entries] == [encoding().decode([t]) for t in encoding().encode(content)]
    assert math.exp(sum(e.logprob for e in entries)) == pytest.approx(strings[content])
    prefix = ""
    for entry in entries:
        # Every answer that continues the prefix with an alternative holds exactly that alternative's share.
        through = sum(p for text, p in strings.items() if text.startswith(prefix))
        for alternative in entry.top_logprobs:
            share = sum(
                p
                for text, p in strings.items()
                if text.startswith(prefix + alternative.token)
                and encoding().encode(text)[: len(encoding().encode(prefix)) + 1]
                == encoding().encode(prefix + alternative.token)
            )
            assert math.exp(alternative.logprob) == pytest.approx(share / through)
        assert entry.top_logprobs[0].token == entry.token  # greedy: the most likely one
        prefix += entry.token


def test_the_alternatives_at_the_first_position_cover_every_answer(client):
    first = chat(client).choices[0].logprobs.content[0].top_logprobs
    assert sum(math.exp(a.logprob) for a in first) == pytest.approx(1.0)
    assert {a.token for a in first} == {"The", "Negative", "negative", "NEG", "Positive", "Neutral"}


def test_top_logprobs_are_cut_to_what_was_asked(client):
    answer = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], logprobs=True, top_logprobs=2
    )
    assert all(len(e.top_logprobs) <= 2 for e in answer.choices[0].logprobs.content)


def test_json_answers_wrap_the_form_and_the_end_can_be_shown(reference, client):
    answer = chat(client, response_format={"type": "json_object"}).choices[0]
    assert json.loads(answer.message.content) in ({"label": "Negative"}, {"label": "Positive"})
    reference.declare({QUERY: {**TRUTH, "end": True}})
    entries = chat(client).choices[0].logprobs.content
    assert entries[-1].token == "<|endoftext|>"


def test_echo_gives_each_continuation_its_declared_probability(client):
    strings = declared_strings("completion")
    continuations = [" Negative\n\n", " negative\n\n", " Positive\n\n", " Sometimes\n\n"]
    reply = client.completions.create(
        model="m", prompt=[PROMPT + c for c in continuations], echo=True, logprobs=1, max_tokens=1
    )
    for choice, continuation in zip(reply.choices, continuations):
        logprobs = choice.logprobs
        assert choice.text.startswith(PROMPT + continuation) and logprobs.token_logprobs[0] is None
        total = sum(lp for lp, offset in zip(logprobs.token_logprobs, logprobs.text_offset) if offset >= len(PROMPT))
        assert math.exp(total) == pytest.approx(strings.get(continuation, 0.0), abs=1e-12)


def test_a_server_without_echo_refuses_it_like_openai(reference, client):
    reference.configure(echo=0)
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model="m", prompt=PROMPT + " Negative\n\n", echo=True, logprobs=1, max_tokens=1)


def test_batches_answer_each_item_from_its_own_truth(reference, client):
    reference.declare({"first item": {"labels": {"A": 0.9, "B": 0.1}}, "second item": {"labels": {"A": 0.2, "B": 0.8}}})
    schema = {"type": "object", "properties": {"items": {"type": "object"}}}
    answer = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "[item 1]\nfirst item\n[item 2]\nsecond item"}],
        response_format={"type": "json_schema", "json_schema": {"name": "b", "schema": schema}},
    )
    assert json.loads(answer.choices[0].message.content) == {"items": {"1": {"label": "A"}, "2": {"label": "B"}}}


@pytest.mark.parametrize(
    "truth, message",
    [
        ({"labels": {}}, "labels"),
        ({"labels": {"A": -1}}, "positive"),
        ({"labels": {"A": 1}, "colour": 1}, "unknown"),
        ({"labels": {"A": 1}, "forms": {"B": {"b": 1}}}, "forms"),
        ({"labels": {"A": 1}, "shapes": [["x"]]}, "shapes"),
    ],
)
def test_a_bad_truth_is_refused_with_the_field_named(reference, truth, message):
    import httpx

    response = httpx.post(reference.url[:-3] + "/_fake/truth", json={"truths": {"x": truth}})
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_a_query_without_a_declared_truth_is_a_400_not_a_made_up_answer(client):
    with pytest.raises(openai.BadRequestError, match="no truth is declared"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "something else"}])
