"""Shared fixtures: an isolated environment per test, configs, and the fake LLM server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
EVAL_DATA = REPO.parent / "shared" / "eval-data"

SENTIMENT_CONFIG = (SEEDS / "sentiment" / "config.xml").read_text()
MULTI_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="sports"/><Choice value="politics"/><Choice value="science"/><Choice value="food"/>
  </Choices>
</View>"""

_PREFIXES = ("OPENAI_", "LLM_", "PROMPT_", "SEEDS_", "LABEL_", "REDIS_", "BASIC_AUTH_", "WEBHOOK_", "FEWSHOT_")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch):
    """Each test starts with none of the backend's variables set, whatever the shell has."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def fake_llm():
    from backend.fake_llm import FakeLLM

    with FakeLLM() as server:
        yield server


def llm_settings(fake, **overrides) -> Settings:
    """Settings that point the real openai client at a fake server."""
    env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test-fake", "LLM_MODEL": "fake-llm",
           "LLM_TIMEOUT": "5"}
    return Settings.from_env(env, **overrides)
