"""Shared fixtures: an isolated environment per test, configs, and the fake LLM server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
# The human-labeled data sets, read in place: ../shared/eval-data beside the clone, or FEWSHOT_EVAL_DATA.
EVAL_DATA = Path(os.environ.get("FEWSHOT_EVAL_DATA") or REPO.parent / "shared" / "eval-data")

SENTIMENT_CONFIG = (SEEDS / "sentiment" / "config.xml").read_text()
MULTI_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="sports"/><Choice value="politics"/><Choice value="science"/><Choice value="food"/>
  </Choices>
</View>"""

_PREFIXES = (
    "OPENAI_",
    "LLM_",
    "PROMPT_",
    "SEEDS_",
    "LABEL_",
    "REDIS_",
    "BASIC_AUTH_",
    "WEBHOOK_",
    "FEWSHOT_",
    "DEMO_",
    "EMBEDDING_",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch):
    """Each test starts with none of the backend's variables set, whatever the shell has."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
def fake_llm():
    from backend.devtools.fake_llm import FakeLLM

    with FakeLLM() as server:
        yield server


@pytest.fixture
def env(fake_llm, monkeypatch):
    """The commands' environment pointed at the fake server (the CLI reads settings from it)."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake")
    monkeypatch.setenv("LLM_MODEL", "fake-llm")
    return fake_llm


def llm_settings(fake, **overrides) -> Settings:
    """Settings that point the real openai client at a fake server."""
    env = {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test-fake", "LLM_MODEL": "fake-llm", "LLM_TIMEOUT": "5"}
    return Settings.from_env(env, **overrides)


# ---- real Redis, real rq workers -------------------------------------------------------------------


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url(logs_dir):
    """A private redis-server on a free port for the whole run."""
    from backend.processes import start_redis

    proc, url = start_redis(logs_dir)
    yield url
    proc.stop()


def clean_redis(url: str) -> None:
    """Remove the backend's keys and queued jobs, leaving live workers' registrations alone."""
    import redis as redis_lib

    connection = redis_lib.Redis.from_url(url)
    keys = list(connection.scan_iter("fsp:*")) + list(connection.scan_iter("rq:job:*"))
    keys += [
        k
        for k in connection.scan_iter("rq:*")
        if b":wip:" in k
        or b"rq:queue:" in k
        or b":failed:" in k
        or b":finished:" in k
        or b":scheduled:" in k
        or b":deferred:" in k
        or b":results:" in k
    ]
    if keys:
        connection.delete(*keys)


@pytest.fixture
def redis_conn(redis_url):
    from backend.state.store import connect

    clean_redis(redis_url)
    connection = connect(redis_url)
    yield connection
    connection.close()


def stack_env(redis_url: str, fake_url: str, **extra) -> dict:
    """Environment of backend and worker processes pointed at test Redis and the fake LLM."""
    from backend.processes import backend_env

    base = {key: value for key, value in backend_env().items() if not key.startswith(_PREFIXES)}
    base.update(
        {
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": "sk-test-fake",
            "LLM_MODEL": "fake-llm",
            "LLM_TIMEOUT": "10",
            "WORKER_MAINTENANCE": "2",
            "PYTHONPATH": str(REPO),
            "QUEUE_NAME": "fewshot-test",
        }
    )
    base.update({k: str(v) for k, v in extra.items()})
    return base


def wait_for_workers(redis_url: str, count: int, queue: str = "fewshot-test", timeout: float = 30) -> None:
    import time

    import redis as redis_lib
    from rq import Queue, Worker

    connection = redis_lib.Redis.from_url(redis_url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if Worker.count(queue=Queue(queue, connection=connection)) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} rq workers did not register within {timeout} s")


def pytest_report_header(config):
    """Say where the eval data is read from, and how to point there when it is missing (tests that read it fail)."""
    if EVAL_DATA.is_dir():
        return f"eval data: {EVAL_DATA}"
    return (
        f"eval data: NOT FOUND at {EVAL_DATA}: clone the repo beside ../shared, or set FEWSHOT_EVAL_DATA to the "
        "eval-data folder; the tests that read it fail until then"
    )
