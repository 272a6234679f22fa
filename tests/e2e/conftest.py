"""End-to-end fixtures: one real Label Studio 1.23.2 per test session, and a stub ML backend."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.devtools.local_studio import LocalStudio, ensure_installed, ensure_migrated_db
from backend.processes import spawn, start_redis, start_workers, stop_all
from backend.settings import Settings
from tests.conftest import stack_env, wait_for_workers

E2E_DIR = Path(__file__).parent

SENTIMENT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text">
    <Choice value="Positive"/><Choice value="Negative"/>
  </Choices>
</View>"""


def sentiment_choice(label: str) -> list[dict]:
    """An annotation result choosing `label` in SENTIMENT_CONFIG."""
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def pytest_terminal_summary(terminalreporter):
    """The queue and chaos tests' tallies (completed / failed / lost / duplicated), passed tests included."""
    from tests.e2e.exactly_once import FIGURES

    if FIGURES:
        terminalreporter.section("exactly once: completed / failed / lost / duplicated")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/e2e as e2e (this hook sees the whole session's items)."""
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def studio(tmp_path_factory):
    """A running Label Studio; `.api` is a StudioAdmin logged in with the legacy token."""
    venv = ensure_installed()  # ~80 s the first time on a machine, then cached
    ensure_migrated_db(venv)  # ~20 s the first time, then cached
    # A pytest tmp dir (not LocalStudio's own) keeps the server log after the run.
    with LocalStudio(venv=venv, data_dir=tmp_path_factory.mktemp("label-studio")) as server:
        yield server


class StubBackend:
    """A minimal ML backend on a thread that answers every task with one fixed choice."""

    def __init__(self, from_name: str, to_name: str, choice: str, model_version: str = "stub-v1") -> None:
        self.region = {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [choice]}}
        self.model_version = model_version
        self.calls: list[dict] = []  # {"method", "path", "headers", "body"} in arrival order
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str, body: object) -> dict:
        if path == "/setup":
            return {"model_version": self.model_version}
        if path == "/predict":
            entry = {"result": [self.region], "score": 0.9, "model_version": self.model_version}
            return {"results": [entry for _ in body["tasks"]]}
        return {"status": "UP"}

    def wait_for(self, path: str, timeout: float = 10) -> list[dict]:
        """The calls to path, waiting until there is at least one (webhooks arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if calls := [call for call in self.calls if call["path"] == path]:
                return calls
            time.sleep(0.1)
        return []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._record_and_reply(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._record_and_reply(json.loads(self.rfile.read(length) or b"null"))

            def _record_and_reply(self, body: object) -> None:
                stub.calls.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                payload = json.dumps(stub.answer(self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def __enter__(self) -> StubBackend:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stub_backend():
    with StubBackend(from_name="sentiment", to_name="text", choice="Positive") as backend:
        yield backend


@pytest.fixture
def redis_server(logs_dir):
    """A private redis-server for one test (tests may stop and restart it)."""
    proc, url = start_redis(logs_dir)
    state = {"proc": proc, "url": url}
    yield state
    state["proc"].stop()


@pytest.fixture
def make_stack(studio, redis_server, logs_dir):
    """Workers, a fake LLM and the settings that point at them, Redis and Label Studio (or a proxy of it).

    stack["add_workers"](n, chaos=None) starts more workers; with chaos, `tests.chaos_worker` ones.
    """
    started, fakes = [], []

    def make(
        workers: int = 2,
        fake_knobs: dict | None = None,
        studio_url: str | None = None,
        chaos: str | None = None,
        **env_extra,
    ):
        from backend.devtools.fake_llm import spawn_fake_llm

        fake = spawn_fake_llm(**(fake_knobs or {}))
        fakes.append(fake)
        env = stack_env(
            redis_server["url"],
            fake.url,
            LABEL_STUDIO_URL=studio_url or studio.url,
            LABEL_STUDIO_API_KEY=studio.token,
            LLM_MAX_RETRIES=8,
            **env_extra,
        )
        stack = {"env": env, "fake": fake, "workers": [], "settings": Settings.from_env(env)}

        def add_workers(count: int, chaos: str | None = None) -> list:
            before = len(stack["workers"])
            if chaos:
                procs = [
                    spawn(
                        f"chaos-worker-{len(started) + i}",
                        [sys.executable, "-m", "tests.chaos_worker"],
                        logs_dir,
                        {**env, "FSP_CHAOS": chaos},
                    )
                    for i in range(count)
                ]
            else:
                procs = start_workers(count, logs_dir, env, prefix=f"q-worker-{len(started)}")
            started.extend(procs)
            stack["workers"].extend(procs)
            wait_for_workers(
                redis_server["url"], sum(p.alive() for p in stack["workers"][:before]) + count, queue=env["QUEUE_NAME"]
            )
            return procs

        stack["add_workers"] = add_workers
        if workers:
            add_workers(workers, chaos)
        return stack

    yield make
    stop_all(started)
    for fake in fakes:
        fake.stop()
