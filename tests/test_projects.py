"""Project contexts and the model_version policy, on a real Redis."""

import json
import logging

import pytest

from backend.pipeline.projects import Contexts, apply_version_policy, parse_project_id, register
from backend.settings import Settings
from backend.state import store
from tests.conftest import MULTI_CONFIG, SEEDS, SENTIMENT_CONFIG


def demo(text, label, annotation):
    return {"text": text, "labels": [label], "annotation": annotation, "updated_at": "2026-01-01"}


@pytest.mark.parametrize(
    "value, expected",
    [("12.1700000000", 12), (12, 12), ("7", 7), ("x.1", None), (None, None), (True, None), (-3, None), ("", None)],
)
def test_project_ids_from_what_label_studio_sends(value, expected):
    assert parse_project_id(value) == expected


@pytest.mark.parametrize("policy, moves_after", [("change", 1), ("every:3", 3), ("training", None)])
def test_the_version_policy_decides_when_demonstrations_become_active(redis_conn, policy, moves_after):
    settings = Settings.from_env({"MODEL_VERSION_POLICY": policy})
    register(redis_conn, 1, SENTIMENT_CONFIG)
    assert apply_version_policy(redis_conn, settings, 1)  # the first set always becomes active
    contexts = Contexts(settings, redis_conn)
    first = contexts.get(1).model_version
    moved_at = None
    for n in range(1, 5):
        store.put_live_demonstration(redis_conn, 1, n, demo(f"text {n}", "positive", n))
        if apply_version_policy(redis_conn, settings, 1) and moved_at is None:
            moved_at = n
    assert moved_at == moves_after
    if policy == "training":
        assert contexts.get(1).model_version == first
        assert apply_version_policy(redis_conn, settings, 1, training=True)
    assert contexts.get(1).model_version != first
    assert contexts.get(1).demonstrations == (4 if policy != "every:3" else 3)


def test_the_version_is_the_same_in_every_process(redis_conn):
    settings = Settings.from_env({})
    register(redis_conn, 1, SENTIMENT_CONFIG)
    store.put_live_demonstration(redis_conn, 1, 3, demo("b", "negative", 3))
    store.put_live_demonstration(redis_conn, 1, 2, demo("a", "positive", 2))
    apply_version_policy(redis_conn, settings, 1)
    assert Contexts(settings, redis_conn).get(1).model_version == Contexts(settings, redis_conn).get(1).model_version


def test_seed_files_join_the_demonstrations_of_projects_they_fit(redis_conn, caplog):
    caplog.set_level(logging.INFO)
    settings = Settings.from_env({"SEEDS_PATH": str(SEEDS / "sentiment")})
    register(redis_conn, 1, SENTIMENT_CONFIG)
    register(redis_conn, 2, MULTI_CONFIG)
    contexts = Contexts(settings, redis_conn)
    assert contexts.get(1).demonstrations == 4
    assert contexts.get(2).demonstrations == 0  # the sentiment seeds do not fit the topics labels
    assert "does not fit project 2" in caplog.text
    assert "zero-shot" in caplog.text


def test_options_change_the_prompt_and_the_version(redis_conn):
    settings = Settings.from_env({})
    register(redis_conn, 1, SENTIMENT_CONFIG)
    before = Contexts(settings, redis_conn).get(1)
    register(redis_conn, 1, options={"mode": "text", "instruction": "Rate the mood."})
    after = Contexts(settings, redis_conn).get(1)
    assert after.model_version != before.model_version
    request = after.labeler.chat_request("x")
    assert "response_format" not in request and "Rate the mood." in json.dumps(request["messages"])


@pytest.mark.parametrize("action", ["skip", "flag"])
def test_predictions_below_the_threshold_are_withheld_or_flagged(redis_conn, action):
    settings = Settings.from_env({})
    register(redis_conn, 1, SENTIMENT_CONFIG, options={"threshold": 0.6, "low_score": action})
    context = Contexts(settings, redis_conn).get(1)
    confident = context.prediction({"labels": ["positive"], "score": 0.9})
    assert confident["result"][0]["value"]["choices"] == ["positive"] and "meta" not in confident["result"][0]
    doubtful = context.prediction({"labels": ["negative"], "score": 0.41})
    if action == "skip":
        assert doubtful["result"] is None and doubtful["error"] == "low_score"
    else:
        assert doubtful["result"][0]["meta"] == {"text": ["low confidence: 0.41 < 0.6"]}
        from backend.labeling.results import prediction_errors

        assert prediction_errors(context.spec, doubtful["result"]) == []
    unscored = context.prediction({"labels": ["negative"], "score": None})
    assert unscored["result"]  # no score: nothing to compare, the prediction stays


def test_threshold_options_are_validated():
    from backend.model.options import BadOptions, parse_options

    settings = Settings.from_env({})
    assert parse_options({"threshold": 1}, settings) == {"threshold": 1}
    for bad in ({"threshold": 1.5}, {"low_score": "hide"}, {"calibration": "platt"}):
        with pytest.raises(BadOptions):
            parse_options(bad, settings)


def test_options_are_checked_against_the_backends_own_environment():
    """mmr-k needs embeddings: refused where EMBEDDING_MODEL is tfidf, accepted where it names a model."""
    from backend.model.options import BadOptions, parse_options

    with pytest.raises(BadOptions, match="EMBEDDING_MODEL"):
        parse_options({"selection": "mmr-k"}, Settings.from_env({"EMBEDDING_MODEL": "tfidf"}))
    embedded = Settings.from_env({"EMBEDDING_MODEL": "text-embedding-3-small"})
    assert parse_options({"selection": "mmr-k", "k": 4}, embedded) == {"selection": "mmr-k", "k": 4}


def test_setup_accepts_mmr_k_from_extra_params_when_the_backend_has_embeddings(redis_conn, redis_url):
    from backend.web.ml_adapter import create_app

    body = {"project": "7.1700000000", "schema": SENTIMENT_CONFIG, "extra_params": '{"selection": "mmr-k"}'}
    with_embeddings = create_app(Settings.from_env({"REDIS_URL": redis_url, "EMBEDDING_MODEL": "fake-embed"}))
    answer = with_embeddings.test_client().post("/setup", json=body)
    assert answer.status_code == 200, answer.get_json()
    without = create_app(Settings.from_env({"REDIS_URL": redis_url, "EMBEDDING_MODEL": "tfidf"}))
    without = without.test_client().post("/setup", json=body)
    assert without.status_code == 400 and "EMBEDDING_MODEL" in without.get_json()["error"]
