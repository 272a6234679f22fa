"""model_version and the prediction-cache key come from one fingerprint: whatever moves one moves the other.

The behaviour tests run the workers' own labeling code (jobs.label_chunk) on a real Redis against the fake
LLM over HTTP: an answer cached under one set of inputs must never be served under another.
"""

from __future__ import annotations

import pytest

from backend.model.client import LLMClient
from backend.pipeline import jobs
from backend.pipeline.projects import Contexts, register
from tests.conftest import SENTIMENT_CONFIG, llm_settings

STRUCTURED = """<View>
  <Text name="{obj}" value="$text"/>
  <Choices name="sentiment" toName="{obj}"><Choice value="positive"/><Choice value="negative"/></Choices>
  <TextArea name="summary" toName="{obj}"/>
</View>"""


def worker_state(fake, connection, **overrides) -> jobs.WorkerState:
    settings = llm_settings(fake, **overrides)
    return jobs.WorkerState(settings, connection, Contexts(settings, connection, LLMClient(settings)))


def label(state: jobs.WorkerState, project_id: int, text: str = "What a lovely, happy day.") -> dict:
    context = state.contexts.get(project_id)
    [message] = jobs.label_chunk(state, context, {1: {"text": text}}, "test-request")
    return message


@pytest.mark.parametrize(
    "before, after",
    [
        ({"answer_mode": "logprobs"}, {"answer_mode": "logprobs", "calibration": "contextual"}),
        (
            {"answer_mode": "json", "request_logprobs": False},
            {"answer_mode": "json", "request_logprobs": False, "confidence_samples": 2},
        ),
        ({"answer_mode": "json"}, {"answer_mode": "json", "batch_size": 4}),
    ],
)
def test_an_answer_cached_under_other_settings_is_not_served_under_the_new_version(fake_llm, redis_conn, before, after):
    register(redis_conn, 1, SENTIMENT_CONFIG)
    first = label(worker_state(fake_llm, redis_conn, **before), 1)
    calls = fake_llm.stats()["requests"]
    second = label(worker_state(fake_llm, redis_conn, **after), 1)
    assert second["model_version"] != first["model_version"]
    assert not second.get("cached") and fake_llm.stats()["requests"] > calls  # asked again, not the old answer


def test_confidence_samples_give_a_score_the_cached_unscored_answer_lacked(fake_llm, redis_conn):
    register(redis_conn, 1, SENTIMENT_CONFIG)
    plain = {"answer_mode": "json", "request_logprobs": False}
    assert label(worker_state(fake_llm, redis_conn, **plain), 1)["score"] is None
    assert label(worker_state(fake_llm, redis_conn, **plain, confidence_samples=2), 1)["score"] is not None


def test_a_project_never_receives_regions_for_another_projects_object(fake_llm, redis_conn):
    """Same texts, labels and prompt, but the object is named differently: each gets its own to_name."""
    register(redis_conn, 1, STRUCTURED.format(obj="text"))
    register(redis_conn, 2, STRUCTURED.format(obj="review"))
    state = worker_state(fake_llm, redis_conn)
    one, two = label(state, 1), label(state, 2)
    assert one["result"] and two["result"]
    assert {r["to_name"] for r in one["result"]} == {"text"}
    assert {r["to_name"] for r in two["result"]} == {"review"}


# ---- the fingerprint itself: every input moves both ---------------------------------------------------

from dataclasses import fields, replace  # noqa: E402

from backend.labeling.examples import Example  # noqa: E402
from backend.labeling.fingerprint import fingerprint  # noqa: E402
from backend.labeling.parser import parse_spec  # noqa: E402
from backend.labeling.prompt import PromptSettings  # noqa: E402
from backend.labeling.selection import Selection  # noqa: E402
from backend.model.labeler import Labeler  # noqa: E402
from backend.settings import Settings  # noqa: E402

SPEC = parse_spec(SENTIMENT_CONFIG)
DEMOS = [Example("John is happy.", ("positive",), "seed", "s:1"), Example("Mary is sad.", ("negative",), "seed", "s:2")]
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Lisa is sad."}]}

# field -> (changed value, the settings under which that field takes effect)
CHANGES = {
    "model": ("other-model", {}),
    "mode": ("text", {}),
    "template": ("{text} => {label}", {}),
    "instruction": ("Label customer reviews.", {}),
    "selection": (Selection("nearest-k", 4), {}),
    "batch": (4, {"mode": "json"}),
    "embedding_model": ("text-embedding-3-small", {"selection": Selection("nearest-k", 4)}),
    "calibration": ("contextual", {"mode": "logprobs"}),
    "scoring": ("echo", {}),
    "confidence_samples": (3, {}),
    "max_tokens": (64, {}),
    "top_logprobs": (5, {"mode": "logprobs"}),
    "request_logprobs": (False, {"mode": "json"}),
    "context_window": (4096, {}),
    "prompt_limit": (1000, {}),
}


def test_every_prompt_setting_has_a_case_here():
    """A field added to PromptSettings must show here that it moves model_version and the cache key."""
    assert sorted(f.name for f in fields(PromptSettings)) == sorted(CHANGES)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_setting_moves_both_the_version_and_the_cache_key(name):
    value, where = CHANGES[name]
    base = PromptSettings(model="m", **where)
    before, after = fingerprint(SPEC, DEMOS, base), fingerprint(SPEC, DEMOS, replace(base, **{name: value}))
    assert after.model_version != before.model_version
    assert after.cache_key(REQUEST) != before.cache_key(REQUEST)  # the same request, under other settings


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.replace('value="negative"', 'value="neutral"'),  # a label
        lambda c: c.replace('<Choice value="negative"', '<Choice hint="sad, angry" value="negative"'),  # a hint
        lambda c: c.replace('name="sentiment"', 'name="mood"'),  # the control's name (from_name)
        lambda c: c.replace('name="text"', 'name="review"').replace('toName="text"', 'toName="review"'),  # object
        lambda c: c.replace('choice="single"', 'choice="multiple"'),
        lambda c: c.replace("</View>", '<TextArea name="why" toName="text"/></View>'),  # another control
    ],
)
def test_each_part_of_the_labeling_config_moves_both(edit):
    prompt = PromptSettings(model="m")
    before, after = fingerprint(SPEC, DEMOS, prompt), fingerprint(parse_spec(edit(SENTIMENT_CONFIG)), DEMOS, prompt)
    assert after.model_version != before.model_version
    assert after.cache_key(REQUEST) != before.cache_key(REQUEST)


def test_demonstrations_move_the_version_and_the_key_of_every_prompt_that_shows_them():
    settings = Settings.from_env({})
    base = Labeler(SPEC, DEMOS, settings, None, PromptSettings(model="m"))
    more = Labeler(
        SPEC,
        DEMOS + [Example("Ann is glad.", ("positive",), "annotation", "7")],
        settings,
        None,
        PromptSettings(model="m"),
    )
    assert more.model_version != base.model_version
    assert more.cache_key("Lisa is sad.") != base.cache_key("Lisa is sad.")


def test_a_demonstration_a_task_is_not_shown_keeps_its_cached_answer():
    """nearest-1: a new, unrelated annotation moves model_version, but not the key of a task whose prompt
    is unchanged, so re-predicting after each annotation costs calls only where prompts changed."""
    settings, prompt = Settings.from_env({}), PromptSettings(model="m", selection=Selection("nearest-k", 1))
    base = Labeler(SPEC, DEMOS, settings, None, prompt)
    more = Labeler(
        SPEC, DEMOS + [Example("Quarterly revenue grew.", ("positive",), "annotation", "7")], settings, None, prompt
    )
    assert more.model_version != base.model_version
    assert more.cache_key("Mary is sad again.") == base.cache_key("Mary is sad again.")


@pytest.mark.parametrize(
    "name, value, where",
    [
        ("calibration", "contextual", {"mode": "json"}),
        ("batch", 4, {"mode": "text"}),
        ("top_logprobs", 3, {"mode": "text", "request_logprobs": False}),
        ("embedding_model", "text-embedding-3-small", {}),
    ],
)
def test_a_setting_that_cannot_take_effect_moves_nothing(name, value, where):
    base = PromptSettings(model="m", **where)
    assert fingerprint(SPEC, DEMOS, base) == fingerprint(SPEC, DEMOS, replace(base, **{name: value}))
