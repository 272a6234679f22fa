"""DEMO_SELECTION=auto: every demonstration while they fit comfortably in the token budget, nearest-k after.

A project starts with the shipped seeds: every prompt shows all of them (the classic algorithm). Annotators
label hundreds of tasks; once the demonstrations would take more than the half of the prompt budget that a
task text may not use, prompts get the 8 nearest by the local model instead, /status says so and why, and
model_version moves.
"""

from __future__ import annotations

import logging

import pytest

from backend.labeling.auto_selection import choose_selection, comfortable_room, demonstration_tokens
from backend.labeling.budget import Budget
from backend.labeling.examples import load_seeds
from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler
from backend.model.local_embeddings import model_id
from backend.model.options import prompt_for
from backend.pipeline.projects import apply_version_policy, register
from backend.settings import Settings
from backend.state import store
from backend.web.service import Service
from benchmarks.common import as_examples, choices_config, read_jsonl, split_seeds
from tests.conftest import SEEDS, llm_settings

TOPICS = choices_config(["Business", "Sci/Tech", "Sports", "World"], "topic")


def news(count: int) -> list:
    seeds, _ = split_seeds(read_jsonl("ag_news_test.jsonl"), count // 4, 0)
    return as_examples(seeds)


def demonstrations_in(request: dict) -> int:
    return (len(request["messages"]) - 2) // 2


@pytest.mark.parametrize("seed_set", ["support", "sentiment"])
@pytest.mark.parametrize("model", ["gpt-4o-mini", "fake-llm"])  # the default model; the demo's 16,384-token window
def test_auto_keeps_every_demonstration_for_the_shipped_seeds(fake_llm, seed_set, model):
    spec = parse_spec((SEEDS / seed_set / "config.xml").read_text())
    examples = load_seeds([SEEDS / seed_set], spec)
    settings = llm_settings(fake_llm, model=model)
    assert settings.selection == "auto"  # the default
    labeler = Labeler(spec, examples, settings, LLMClient(settings))
    assert labeler.choice.setting == "auto" and labeler.choice.selection.strategy == "all"
    assert "fit comfortably" in labeler.choice.reason
    assert demonstrations_in(labeler.chat_request("Where is my parcel?")) == len(examples) > 0
    explicit = Labeler(spec, examples, llm_settings(fake_llm, model=model, selection="all"), None)
    assert labeler.model_version == explicit.model_version  # the same prompts: the same version, the same cache


def test_auto_switches_to_nearest_k_by_the_local_model_when_the_demonstrations_exceed_the_budget(fake_llm, caplog):
    caplog.set_level(logging.INFO, logger="backend.model.labeler")
    spec = parse_spec(TOPICS)
    settings = llm_settings(fake_llm)  # fake-llm: a 16,384-token window, so about 8,000 tokens of room
    few = Labeler(spec, news(40), settings, LLMClient(settings))
    many = Labeler(spec, news(400), settings, LLMClient(settings))
    assert few.choice.selection.strategy == "all"
    assert many.choice.selection.strategy == "nearest-k" and many.choice.selection.k == 8
    assert many.choice.similarity == model_id()
    assert "400 demonstrations take more than 8,064 of the 16,128-token prompt budget" in many.choice.reason
    assert "selection auto: 400 demonstrations take more" in caplog.text
    text = "Stocks slid on Wall Street as oil prices jumped after the OPEC meeting."
    request = many.chat_request(text, many.query_vectors([text])[0])
    assert demonstrations_in(request) == 8
    nearest = Labeler(spec, news(400), llm_settings(fake_llm, selection="nearest-k"), LLMClient(settings))
    everything = Labeler(spec, news(400), llm_settings(fake_llm, selection="all"), None)
    assert many.model_version == nearest.model_version != everything.model_version != few.model_version
    # With DEMO_K the switch uses that k, and TF-IDF when EMBEDDING_MODEL says so.
    tfidf = Labeler(spec, news(400), llm_settings(fake_llm, selection_k=5, embedding_model="tfidf"), None)
    assert tfidf.choice.selection.describe() == "nearest-k:5" and tfidf.choice.similarity == "tfidf"
    assert tfidf.model_version != many.model_version


def test_the_switch_happens_exactly_where_the_demonstrations_pass_half_the_budget(fake_llm):
    spec = parse_spec(TOPICS)
    examples = news(40)
    settings = llm_settings(fake_llm)
    prompt = prompt_for(settings, {})
    labeler = Labeler(spec, examples, settings, None)
    tokens = demonstration_tokens(spec, labeler.examples, prompt, labeler.counter, 10**9)
    at = Budget(context_window=2 * tokens + 256, answer_tokens=256)  # room == tokens exactly
    assert comfortable_room(at) == tokens
    assert choose_selection(spec, labeler.examples, prompt, labeler.counter, at).selection.strategy == "all"
    below = Budget(context_window=2 * tokens + 256 - 2, answer_tokens=256)  # one token less of room
    assert choose_selection(spec, labeler.examples, prompt, labeler.counter, below).selection.strategy == "nearest-k"
    # PROMPT_MAX_TOKENS caps the budget, and so where auto switches.
    capped = Labeler(spec, examples, llm_settings(fake_llm, prompt_limit=2 * tokens - 2), None)
    assert capped.choice.selection.strategy == "nearest-k"


def test_explicit_selections_are_kept_and_a_project_can_ask_for_auto(fake_llm):
    spec = parse_spec(TOPICS)
    settings = llm_settings(fake_llm, selection="balanced-k", selection_k=2)
    labeler = Labeler(spec, news(400), settings, None)
    assert labeler.choice.setting == "balanced-k" and labeler.choice.selection.describe() == "balanced-k:2"
    auto = Labeler(spec, news(400), settings, None, prompt_for(settings, {"selection": "auto", "k": 3}))
    assert auto.choice.selection.describe() == "nearest-k:3"


def test_status_shows_the_selection_in_effect_and_why(redis_conn, fake_llm):
    settings = Settings.from_env(
        {"SEEDS_PATH": str(SEEDS / "support"), "OPENAI_BASE_URL": fake_llm.url, "LLM_MODEL": "fake-llm"}
    )
    service = Service(settings, redis_conn)
    register(redis_conn, 1, (SEEDS / "support" / "config.xml").read_text())
    register(redis_conn, 2, TOPICS)
    for task_id, example in enumerate(news(400), start=1):
        store.put_live_demonstration(
            redis_conn,
            2,
            task_id,
            {"text": example.text, "labels": list(example.labels), "annotation": task_id, "updated_at": "2026-01-01"},
        )
    for project in (1, 2):
        apply_version_policy(redis_conn, settings, project)
    shown = {p["project_id"]: p for p in service.status()["projects"]}
    assert shown[1]["selection"]["setting"] == "auto" and shown[1]["selection"]["strategy"] == "all"
    assert "all 20 demonstrations fit comfortably" in shown[1]["selection"]["reason"]
    assert shown[2]["selection"] == {
        "setting": "auto",
        "strategy": "nearest-k",
        "k": 8,
        "similarity": model_id(),
        "reason": shown[2]["selection"]["reason"],
    }
    assert "400 demonstrations take more than" in shown[2]["selection"]["reason"]
