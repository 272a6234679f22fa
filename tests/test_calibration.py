"""Confidence that means something: contextual calibration, agreement sampling, the score threshold."""

import json
import random

import pytest

from backend.labeling.calibration import agreement, average, calibrate
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler, label_many
from tests.conftest import EVAL_DATA, SENTIMENT_CONFIG, llm_settings

SPEC = parse_spec(SENTIMENT_CONFIG)


def test_calibration_divides_out_the_content_free_prior():
    assert calibrate({"a": 0.8, "b": 0.2}, {"a": 0.8, "b": 0.2}) == pytest.approx({"a": 0.5, "b": 0.5})
    assert calibrate({"a": 0.6, "b": 0.4}, {"a": 0.75, "b": 0.25}) == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    assert calibrate({"a": 0.6, "b": 0.4}, None) == {"a": 0.6, "b": 0.4}
    assert average([{"a": 0.6, "b": 0.4}, {"a": 0.8, "b": 0.2}, None]) == pytest.approx({"a": 0.7, "b": 0.3})
    assert agreement(("a",), [("a",), ("b",), None]) == pytest.approx(0.5) and agreement(("a",), []) is None


def sst2(per_label=6, queries=80, seed=3):
    rows = [json.loads(line) for line in (EVAL_DATA / "sst2_test.jsonl").read_text().splitlines()]
    random.Random(seed).shuffle(rows)
    demos = [r for r in rows if r["label"] == "positive"][:per_label] + [r for r in rows if r["label"] == "negative"][
        :per_label
    ]  # the last demonstration is negative
    rest = [r for r in rows if r not in demos]
    pos = [r for r in rest if r["label"] == "positive"][: queries // 2]
    neg = [r for r in rest if r["label"] == "negative"][: queries // 2]
    return [Example(r["text"], (r["label"],), "seed", f"s{i:03d}") for i, r in enumerate(demos)], pos + neg


def negative_rate(fake, calibration):
    examples, queries = sst2()
    settings = llm_settings(fake, answer_mode="logprobs", calibration=calibration)
    labeler = Labeler(SPEC, examples, settings, LLMClient(settings))
    outcomes = dict(label_many(labeler, ((i, {"text": q["text"]}) for i, q in enumerate(queries)), 8))
    return sum(o.labels == ("negative",) for o in outcomes.values()) / len(queries)


def test_calibration_moves_a_recency_biased_server_closer_to_the_true_rate(fake_llm):
    true_rate = 0.5
    fake_llm.configure(prior_last=0.15)  # every answer leans to the last demonstration's label
    biased = negative_rate(fake_llm, "none")
    calls = fake_llm.stats()["requests"]
    calibrated = negative_rate(fake_llm, "contextual")
    assert biased > true_rate + 0.15, biased
    assert abs(calibrated - true_rate) < abs(biased - true_rate), (biased, calibrated)
    assert fake_llm.stats()["requests"] - calls == 80 + 3  # content-free probes once: the prompt prefix is fixed


def test_agreement_sampling_gives_a_score_only_when_asked(fake_llm):
    plain = llm_settings(fake_llm, answer_mode="text", request_logprobs=False)
    sampled = llm_settings(fake_llm, answer_mode="text", request_logprobs=False, confidence_samples=3)
    examples = [Example("John is happy.", ("positive",)), Example("Mary is sad.", ("negative",))]
    assert Labeler(SPEC, examples, plain, LLMClient(plain)).label_text("Lisa is happy.").score is None
    before = fake_llm.stats()["requests"]
    outcome = Labeler(SPEC, examples, sampled, LLMClient(sampled)).label_text("Lisa is happy.")
    assert outcome.score == 1.0 and fake_llm.stats()["requests"] - before == 4 and outcome.requests == 4
    assert [r["body"]["temperature"] for r in fake_llm.requests()[-3:]] == [0.7, 0.7, 0.7]
