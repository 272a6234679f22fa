"""The labeler drives the real openai client over HTTP against the fake server, in every answer mode."""

import json
import random

import pytest

from backend.labeling.examples import Example, load_seeds
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, label_many
from backend.settings import Settings
from tests.conftest import EVAL_DATA, SEEDS, SENTIMENT_CONFIG, llm_settings

SPEC = parse_spec(SENTIMENT_CONFIG)


def labeler_for(fake, spec=SPEC, examples=None, **overrides):
    settings = llm_settings(fake, **overrides)
    if examples is None:
        examples = load_seeds([SEEDS / "sentiment"], spec)
    return Labeler(spec, examples, settings, LLMClient(settings, sleep=lambda s: None))


@pytest.mark.parametrize("mode", ["json", "logprobs", "text"])
def test_an_unseen_text_gets_the_label_of_its_nearest_demonstration(fake_llm, mode):
    labeler = labeler_for(fake_llm, answer_mode=mode)
    assert labeler.label_text("Lisa is happy.").labels == ("positive",)
    assert labeler.label_text("Bob is angry.").labels == ("negative",)
    request = fake_llm.requests()[-1]["body"]
    assert request["temperature"] == 0
    assert "Amy is angry." in json.dumps(request["messages"])  # the demonstrations reached the model


def test_logprobs_mode_scores_with_a_probability_over_the_label_set(fake_llm):
    outcome = labeler_for(fake_llm, answer_mode="logprobs").label_text("Lisa is happy.")
    assert 0.5 < outcome.score <= 1.0
    assert sum(outcome.distribution.values()) == pytest.approx(1.0)
    assert set(outcome.distribution) == {"positive", "negative"}


def test_json_mode_sends_an_enum_schema_and_scores_from_logprobs(fake_llm):
    outcome = labeler_for(fake_llm, answer_mode="json").label_text("Lisa is happy.")
    body = fake_llm.requests()[-1]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["positive", "negative"]
    assert outcome.score is not None and 0 < outcome.score <= 1


def test_no_logprobs_means_no_score_never_a_constant(fake_llm):
    outcome = labeler_for(fake_llm, answer_mode="text", request_logprobs=False).label_text("Lisa is happy.")
    assert outcome.labels == ("positive",) and outcome.score is None


@pytest.mark.parametrize("mode", ["json", "logprobs", "text"])
def test_an_out_of_set_answer_is_never_emitted(fake_llm, mode):
    fake_llm.configure(rate_out_of_set=1.0)
    outcome = labeler_for(fake_llm, answer_mode=mode).label_text("Lisa is happy.")
    assert outcome.labels is None and outcome.error == "out_of_set"


def test_malformed_json_is_retried_then_reported_failed(fake_llm):
    fake_llm.configure(rate_malformed=1.0)
    outcome = labeler_for(fake_llm, answer_mode="json", answer_retries=2).label_text("Lisa is happy.")
    assert outcome.labels is None and outcome.error == "malformed"
    assert outcome.requests == 3
    assert fake_llm.stats()["requests"] == 3


def test_a_malformed_answer_then_a_good_one_labels_the_text(fake_llm):
    fake_llm.configure(rate_malformed=0.5, seed=3)
    labeler = labeler_for(fake_llm, answer_mode="json", answer_retries=5)
    outcomes = [labeler.label_text(f"Person {i} is happy.") for i in range(10)]
    assert all(o.labels == ("positive",) for o in outcomes)
    assert fake_llm.stats()["faults"].get("malformed", 0) > 0


def test_server_errors_and_rate_limits_are_retried(fake_llm):
    fake_llm.configure(rate_500=0.3, rate_429=0.3, retry_after=0.01, seed=1)
    labeler = labeler_for(fake_llm, max_retries=20)
    outcomes = [labeler.label_text(f"Kid {i} is excited.") for i in range(20)]
    assert all(o.ok for o in outcomes)
    faults = fake_llm.stats()["faults"]
    assert faults.get("429", 0) > 0 and faults.get("500", 0) > 0


def test_a_hanging_server_times_out_and_the_failure_is_recorded(fake_llm):
    fake_llm.configure(rate_hang=1.0, hang_s=3)
    outcome = labeler_for(fake_llm, timeout=0.3, max_retries=1).label_text("Lisa is happy.")
    assert outcome.labels is None and outcome.error == "llm_error" and "timeout" in outcome.detail


def test_the_api_key_goes_to_the_server_and_nowhere_else(fake_llm, caplog):
    labeler = labeler_for(fake_llm)
    outcome = labeler.label_text("Lisa is happy.")
    assert "sk-test-fake" not in repr(outcome) and "sk-test-fake" not in caplog.text


def trec_split(per_label=16, queries=120, seed=7):
    rows = [json.loads(line) for line in (EVAL_DATA / "trec_test.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    seeds, rest = {}, []
    for row in rows:
        bucket = seeds.setdefault(row["label"], [])
        (bucket if len(bucket) < per_label else rest).append(row)
    return [r for bucket in seeds.values() for r in bucket], rest[:queries]


TREC_CONFIG = """<View><Text name="text" value="$text"/><Choices name="type" toName="text">
<Choice value="ABBR"/><Choice value="DESC"/><Choice value="ENTY"/><Choice value="HUM"/><Choice value="LOC"/>
<Choice value="NUM"/></Choices></View>"""


def accuracy(labeler, rows, concurrency=8):
    outcomes = dict(label_many(labeler, ((i, {"text": r["text"]}) for i, r in enumerate(rows)), concurrency))
    return sum(outcomes[i].labels == (r["label"],) for i, r in enumerate(rows)) / len(rows)


def test_a_prompt_without_its_demonstrations_is_detectably_worse(fake_llm):
    spec = parse_spec(TREC_CONFIG)
    seeds, queries = trec_split()
    examples = [Example(r["text"], (r["label"],), "seed", str(i)) for i, r in enumerate(seeds)]
    with_demos = accuracy(labeler_for(fake_llm, spec, examples), queries)
    without = accuracy(labeler_for(fake_llm, spec, []), queries)
    assert with_demos > without + 0.2, (with_demos, without)


def test_a_batch_request_answers_every_item_like_single_requests(fake_llm):
    texts = [
        f"{name} is {mood}."
        for name, mood in [
            ("Lisa", "happy"),
            ("Bob", "angry"),
            ("Kim", "excited"),
            ("Ned", "sad"),
            ("Oli", "happy"),
            ("Pia", "angry"),
        ]
    ]
    single = [labeler_for(fake_llm).label_text(t).labels for t in texts]
    fake_llm.reset()
    batched = labeler_for(fake_llm, batch_size=6)
    outcomes = batched.ask_batch(texts)
    assert [o.labels for o in outcomes] == single
    assert fake_llm.stats()["requests"] == 1
    body = fake_llm.requests()[0]["body"]
    assert body["messages"][-1]["content"].count("[item ") == 6
    assert sorted(body["response_format"]["json_schema"]["schema"]["properties"]["items"]["required"]) == [
        str(n) for n in range(1, 7)
    ]
    assert sum(o.prompt_tokens for o in outcomes) == fake_llm.stats()["prompt_tokens"]
    assert all(o.score is not None for o in outcomes)


def test_items_missing_from_a_batch_answer_are_asked_again_alone(fake_llm):
    fake_llm.configure(batch_drop=2)
    outcomes = labeler_for(fake_llm, batch_size=5).ask_batch([f"Kid {i} is happy." for i in range(5)])
    assert all(o.labels == ("positive",) for o in outcomes)
    assert fake_llm.stats()["requests"] == 1 + 2
    assert [o.requests for o in outcomes] == [1, 0, 0, 1, 1]


def test_an_out_of_set_batch_never_emits_a_label(fake_llm):
    fake_llm.configure(rate_out_of_set=1.0)
    outcomes = labeler_for(fake_llm, batch_size=4).ask_batch([f"Kid {i} is happy." for i in range(4)])
    assert all(o.labels is None and o.error == "out_of_set" for o in outcomes)


def test_batches_apply_to_json_mode_only(fake_llm):
    assert labeler_for(fake_llm, batch_size=8).batch_size == 8
    assert labeler_for(fake_llm, batch_size=8, answer_mode="logprobs").batch_size == 1


def test_nearest_k_by_embeddings_embeds_each_demonstration_once(fake_llm):
    pool = [
        Example(f"{name} is {mood} today", (label,), "seed", str(i))
        for i, (name, mood, label) in enumerate(
            [
                ("Ann", "happy", "positive"),
                ("Ben", "sad", "negative"),
                ("Cat", "excited", "positive"),
                ("Dan", "angry", "negative"),
                ("Eve", "cheerful", "positive"),
                ("Fay", "gloomy", "negative"),
            ]
        )
    ]
    labeler = labeler_for(fake_llm, examples=pool, selection="nearest-k", selection_k=2, embedding_model="fake-embed")
    assert fake_llm.stats()["by_endpoint"]["/v1/embeddings"] == 1  # the pool, in one batch
    outcomes = labeler.label_datas([{"text": "Gus is gloomy today"}, {"text": "Hal is excited today"}])
    assert [o.labels for o in outcomes] == [("negative",), ("positive",)]
    assert fake_llm.stats()["by_endpoint"]["/v1/embeddings"] == 2  # both queries in one more batch
    last = fake_llm.requests()[-1]["body"]["messages"]
    assert len(last) == 1 + 2 * 2 + 1 and "Cat is excited today" in last[-3]["content"]  # most similar last
    assert (
        labeler.model_version
        != labeler_for(fake_llm, examples=pool, selection="nearest-k", selection_k=2).model_version
    )


def test_mmr_needs_embedding_vectors_not_tfidf():
    from backend.settings import SettingsError

    with pytest.raises(SettingsError, match="EMBEDDING_MODEL is tfidf"):
        Settings.from_env({"DEMO_SELECTION": "mmr-k", "EMBEDDING_MODEL": "tfidf"})
    assert Settings.from_env({"DEMO_SELECTION": "mmr-k"}).selection == "mmr-k"  # by the local model


def test_a_long_text_is_truncated_to_the_budget_and_says_so(fake_llm):
    labeler = labeler_for(fake_llm, context_window=1024, max_tokens=64)
    text = "Lisa is happy. " * 2000
    call = labeler.prepare(text)
    assert labeler.counter.messages(call.body["messages"]) <= 1024 - 64
    assert call.truncated_chars > 0 and "truncated" in call.body["messages"][-1]["content"]
    outcome = labeler.label_text(text)
    assert outcome.labels == ("positive",) and outcome.truncated_chars == call.truncated_chars
