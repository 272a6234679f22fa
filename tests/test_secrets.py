"""Secrets never leave the backend: a realistic session, then a scan of everything it left behind.

The session: the backend under gunicorn (log captured, LOG_LEVEL=DEBUG: the most the processes ever write),
one rq worker, the fake LLM behind a small gate that fails some models with 400/401/500 (echoing the API key
in its error message, the worst a server can do), a Label Studio stand-in that refuses every call (echoing
the token it got), basic auth, a webhook secret, OPENAI_API_KEY and LABEL_STUDIO_API_KEY set to known unique
strings, /setup with an access_token, predictions (some past the deadline, so written back), webhooks,
/health, /status, /metrics. Then every log line, every HTTP response (status, headers, body) and every
value of every Redis key (RQ job data, meta, exc_info and results decompressed) is searched for the secrets.

With LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY set (as here), not even /setup's access_token is kept. Without
them it is kept in the Redis project registry (field `studio_token` of `fsp:project:<id>`) so workers can write
predictions back (SECURITY.md).
"""

from __future__ import annotations

import base64
import hmac
import inspect
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import start_backend, start_workers, stop_all
from backend.settings import Settings
from backend.web import ml_adapter
from backend.web.ml_adapter import create_app
from tests.conftest import SENTIMENT_CONFIG, clean_redis, stack_env, wait_for_workers

RUN = uuid.uuid4().hex
SECRETS = {
    "BASIC_AUTH_PASS": f"basic-pass-{uuid.uuid4().hex}",
    "WEBHOOK_SECRET": f"hook-secret-{uuid.uuid4().hex}",
    "OPENAI_API_KEY": f"sk-openai-{uuid.uuid4().hex}",
    "LABEL_STUDIO_API_KEY": f"ls-api-key-{uuid.uuid4().hex}",
    "access_token": f"ls-access-token-{uuid.uuid4().hex}",
}
USER = "ls-user"
QUEUE = "fewshot-secrets"
HYPERTEXT_CONFIG = (
    '<View><HyperText name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="positive"/><Choice value="negative"/></Choices></View>'
)


def needles() -> dict[str, bytes]:
    """Each secret, its random core and both halves of that core (a masked key still shows a part), and
    the basic-auth header's base64 form."""
    found = {}
    for name, secret in SECRETS.items():
        core = secret.rsplit("-", 1)[-1]
        found[name] = secret.encode()
        found[f"{name} (core)"] = core.encode()
        found[f"{name} (first half)"] = core[:16].encode()
        found[f"{name} (second half)"] = core[16:].encode()
    found["basic auth header"] = base64.b64encode(f"{USER}:{SECRETS['BASIC_AUTH_PASS']}".encode())
    return found


def leaks(blob: bytes) -> list[str]:
    return [name for name, needle in needles().items() if needle in blob]


# ---- stand-ins on loopback: an LLM gate in front of the fake, a Label Studio that refuses, a canary ----------


class Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that records every request and answers with `respond(handler, body)`."""

    daemon_threads = True

    def __init__(self, respond):
        self.requests: list[dict] = []
        self.respond = respond
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                status, headers, payload = recorder.respond(self, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


def llm_gate(fake_url: str) -> Recorder:
    """Forwards to the fake LLM; models named fail-400/401/500 get that status, with the key echoed back."""

    def respond(handler, body):
        try:
            model = json.loads(body or b"{}").get("model", "")
        except ValueError:
            model = ""
        key = handler.headers.get("Authorization", "")
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            message = f"Incorrect API key provided: {key}; request {handler.path} refused (stand-in gate)"
            return (
                status,
                {"Content-Type": "application/json"},
                json.dumps(
                    {"error": {"message": message, "type": "invalid_request_error", "code": str(status)}}
                ).encode(),
            )
        request = urllib.request.Request(
            fake_url.rsplit("/v1", 1)[0] + handler.path,
            data=body or None,
            method=handler.command,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, {"Content-Type": "application/json"}, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, {"Content-Type": "application/json"}, error.read()

    return Recorder(respond)


def refusing_studio() -> Recorder:
    """A Label Studio stand-in that refuses the token, quoting it (worse than the real one)."""

    def respond(handler, body):
        detail = f"Invalid token: {handler.headers.get('Authorization', '')}"
        return 401, {"Content-Type": "application/json"}, json.dumps({"detail": detail}).encode()

    return Recorder(respond)


def canary() -> Recorder:
    return Recorder(lambda handler, body: (200, {"Content-Type": "text/plain"}, b"canary"))


# ---- the session ----------------------------------------------------------------------------------------------


def auth() -> tuple[str, str]:
    return USER, SECRETS["BASIC_AUTH_PASS"]


def session_env(redis_url: str, llm_url: str, studio_url: str) -> dict:
    env = stack_env(
        redis_url,
        llm_url,
        OPENAI_API_KEY=SECRETS["OPENAI_API_KEY"],
        LABEL_STUDIO_API_KEY=SECRETS["LABEL_STUDIO_API_KEY"],
        LABEL_STUDIO_URL=studio_url,
        BASIC_AUTH_USER=USER,
        BASIC_AUTH_PASS=SECRETS["BASIC_AUTH_PASS"],
        WEBHOOK_SECRET=SECRETS["WEBHOOK_SECRET"],
        LOG_LEVEL="DEBUG",
        QUEUE_NAME=QUEUE,
        LLM_MAX_RETRIES=1,
        PREDICT_DEADLINE=1.5,
        SETUP_WAIT=0.5,
    )
    env.pop("BACKEND_HOST", None)  # the default bind address is part of what is checked
    return env


def annotation_event(task_id, text, label, annotation_id, project=1):
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project},
        "task": {"id": task_id, "data": {"text": text}},
        "annotation": {
            "id": annotation_id,
            "task": task_id,
            "was_cancelled": False,
            "updated_at": "2026-01-01T00:00:00Z",
            "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        },
    }


def predict_body(project: int, texts: list[str], first_id: int, config=SENTIMENT_CONFIG) -> dict:
    return {
        "tasks": [{"id": first_id + i, "data": {"text": t}, "project": project} for i, t in enumerate(texts)],
        "project": f"{project}.1700000000",
        "label_config": config,
        "params": {"context": None},
    }


def _decoded(value: bytes) -> bytes:
    """The value, plus what it holds zlib-compressed (RQ's job data and exc_info) or base64-encoded (RQ's
    results: base64 of zlib of the exception text, base64 of the pickled return value)."""
    out = value
    layers = [value]
    try:
        layers.append(base64.b64decode(value, validate=True))
        out += b"\n" + layers[-1]
    except ValueError:
        pass
    for layer in layers:
        try:
            out += b"\n" + zlib.decompress(layer)
        except zlib.error:
            pass
    return out


def redis_dump(url: str) -> dict[tuple[str, str], bytes]:
    """(key, field) -> bytes for every Redis key; zlib-compressed values (RQ's job data) also decompressed."""
    connection = redis_lib.Redis.from_url(url)
    dump: dict[tuple[str, str], bytes] = {}
    for key in connection.scan_iter(count=1000):
        name = key.decode(errors="replace")
        kind = connection.type(key).decode()
        if kind == "string":
            items = [("", connection.get(key))]
        elif kind == "hash":
            items = [(f.decode(errors="replace"), v) for f, v in connection.hgetall(key).items()]
        elif kind == "list":
            items = [(str(i), v) for i, v in enumerate(connection.lrange(key, 0, -1))]
        elif kind == "set":
            items = [(str(i), v) for i, v in enumerate(connection.smembers(key))]
        elif kind == "zset":
            items = [(str(i), m) for i, (m, _) in enumerate(connection.zrange(key, 0, -1, withscores=True))]
        elif kind == "stream":
            items = [
                (eid.decode() + ":" + f.decode(errors="replace"), v)
                for eid, fields in connection.xrange(key)
                for f, v in fields.items()
            ]
        else:
            items = []
        for field, value in items:
            dump[(name, field)] = _decoded(value if isinstance(value, bytes) else str(value).encode())
    connection.close()
    return dump


@pytest.fixture(scope="module")
def session(redis_url, logs_dir):
    clean_redis(redis_url)
    fake = spawn_fake_llm(latency_ms=400)
    gate, studio, ssrf_canary = llm_gate(fake.url), refusing_studio(), canary()
    env = session_env(redis_url, gate.url + "/v1", studio.url)
    session_logs = logs_dir / f"secrets-{RUN[:8]}"
    workers = start_workers(1, session_logs, env, prefix="secrets-worker")
    backend = None
    responses: list[httpx.Response] = []
    try:
        wait_for_workers(redis_url, 1, queue=QUEUE)
        backend, url = start_backend(session_logs, env, workers=2)
        with (
            httpx.Client(base_url=url, timeout=60) as anonymous,
            httpx.Client(base_url=url, timeout=60, auth=auth()) as http,
        ):

            def keep(response):
                responses.append(response)
                return response

            keep(anonymous.get("/health"))
            keep(anonymous.post("/predict", json=predict_body(1, ["x"], 1)))
            keep(http.get("/health", auth=(USER, "wrong-password")))
            assert keep(http.get("/health")).status_code == 200
            for project, options in (
                (1, {}),
                (2, {"model": "fail-401"}),
                (3, {"model": "fail-500"}),
                (4, {"model": "fail-400"}),
            ):
                setup = keep(
                    http.post(
                        "/setup",
                        json={
                            "project": f"{project}.1700000000",
                            "schema": SENTIMENT_CONFIG,
                            "hostname": ssrf_canary.url,
                            "access_token": SECRETS["access_token"],
                            "extra_params": options,
                        },
                    )
                )
                assert setup.status_code == 200, setup.text
            hook = {"X-Webhook-Secret": SECRETS["WEBHOOK_SECRET"]}
            assert (
                keep(
                    anonymous.post("/webhook", json=annotation_event(1, "John is happy.", "positive", 11), headers=hook)
                ).status_code
                == 201
            )
            assert (
                keep(http.post("/webhook", json=annotation_event(2, "Amy is angry.", "negative", 12))).status_code
                == 201
            )
            keep(
                anonymous.post(
                    "/webhook",
                    json=annotation_event(3, "Kim is glad.", "positive", 13),
                    headers={"X-Webhook-Secret": "wrong"},
                )
            )
            texts = [f"Person {i} is {'happy' if i % 2 else 'angry'} about item {i}." for i in range(40)]
            first = keep(http.post("/predict", json=predict_body(1, texts, 100)))  # past the deadline: write-back
            assert first.status_code == 200
            keep(http.post("/predict", json=predict_body(1, texts[:5], 100)))  # cached now
            for project in (2, 3, 4):
                failing = keep(http.post("/predict", json=predict_body(project, ["Lisa is happy."], 900)))
                assert failing.status_code == 200 and "result" not in failing.json()["results"][0]
            for path in (
                "/health",
                "/status",
                "/status?project=2",
                "/status?project=4",
                "/metrics",
                "/versions?project=1",
                "/openapi.json",
                "/is_training",
            ):
                assert keep(http.get(path)).status_code == 200, path
            keep(http.post("/versions", json={"project": "1.1700000000"}))
            keep(http.post("/train", json={"project": 1}))
            keep(http.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"}))
            keep(
                http.post(
                    "/setup", json={"project": "9.1", "schema": "<View/>", "access_token": SECRETS["access_token"]}
                )
            )
            deadline = time.time() + 30  # the write-back flush and the syncs reach the refusing Label Studio
            while time.time() < deadline and not any("prediction" in r["path"] for r in studio.requests):
                time.sleep(0.2)
            time.sleep(2)  # their failures are recorded
            status = keep(http.get("/status"))
        listening = _listening_addresses(int(url.rsplit(":", 1)[1]))
        dump = redis_dump(redis_url)
        backend_pids = [backend.pid]
    finally:
        if backend is not None:
            backend.stop()
        stop_all(workers)
        fake.stop()
        for server in (gate, studio):
            server.close()
    logs = {path.name: path.read_bytes() for path in sorted(session_logs.glob("*.log"))}
    logs.update({path.name: path.read_bytes() for path in logs_dir.glob("redis-*.log")})
    yield {
        "responses": responses,
        "logs": logs,
        "redis": dump,
        "studio": studio,
        "gate": gate,
        "canary": ssrf_canary,
        "status": status.json(),
        "listening": listening,
        "backend_pids": backend_pids,
    }
    ssrf_canary.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


# ---- the scans ------------------------------------------------------------------------------------------------


def test_the_session_reached_every_path_it_meant_to(session):
    statuses = sorted({r.status_code for r in session["responses"]})
    assert {200, 201, 400, 401} <= set(statuses), statuses
    failures = {f["error"] for p in session["status"]["projects"] for f in p["failures"].values()}
    assert "llm_error" in failures, session["status"]
    assert any(r["headers"].get("authorization") for r in session["gate"].requests)  # the key did go out
    paths = [r["path"] for r in session["studio"].requests]
    assert any("prediction" in p for p in paths), f"no write-back was attempted: {paths}"
    assert any(b"StudioAuthError" in log for log in session["logs"].values())  # failures were logged
    assert any(b"StudioAuthError" in value for value in session["redis"].values())  # failed jobs' exc_info


def test_no_secret_in_any_process_log(session):
    assert session["logs"], "no log captured"
    found = {name: leaks(blob) for name, blob in session["logs"].items() if leaks(blob)}
    assert found == {}, found
    print(f"\nsecrets scan: {len(session['logs'])} logs, {sum(map(len, session['logs'].values()))} bytes, 0 hits")


def test_no_secret_in_any_http_response(session):
    found = []
    for response in session["responses"]:
        blob = f"{response.status_code} {response.reason_phrase}\n".encode()
        blob += b"".join(f"{k}: {v}\n".encode() for k, v in response.headers.multi_items())
        blob += response.content
        if leaks(blob):
            found.append((response.request.method, str(response.request.url), leaks(blob)))
    assert found == []
    print(f"\nsecrets scan: {len(session['responses'])} HTTP responses, 0 hits")


def test_no_secret_anywhere_in_redis(session):
    # The session sets LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, so even /setup's access token is not kept
    # (it is kept, in the project registry only, when the environment does not give both).
    found = {item: leaks(value) for item, value in session["redis"].items() if leaks(value)}
    assert found == {}, found
    jobs = sum(1 for key, field in session["redis"] if key.startswith("rq:job:") and field == "data")
    assert jobs >= 1, "no RQ job data was scanned"
    print(f"\nsecrets scan: {len(session['redis'])} Redis values ({jobs} RQ jobs), 0 hits")


def test_the_backend_listens_on_loopback_only_by_default(session):
    assert Settings.from_env({}).host == "127.0.0.1"
    assert session["listening"] == {"0100007F"}, session["listening"]  # 127.0.0.1, nothing else


def test_setup_hostname_is_not_contacted_when_label_studio_url_is_set(session):
    assert session["canary"].requests == []


# ---- constant-time comparisons ---------------------------------------------------------------------------------


def test_basic_auth_and_webhook_secret_are_compared_with_compare_digest(session, redis_url, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ml_adapter.hmac, "compare_digest", spy)
    env = session_env(redis_url, "http://127.0.0.1:9/v1", "http://127.0.0.1:9")
    client = create_app(Settings.from_env(env)).test_client()
    password = SECRETS["BASIC_AUTH_PASS"].encode()

    def basic(user, secret):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}

    assert client.get("/metrics", headers=basic("someone-else", "guess")).status_code == 401
    assert (b"guess", password) in calls and (b"someone-else", USER.encode()) in calls  # both, even on a wrong user
    calls.clear()
    assert client.get("/metrics", headers=basic(USER, SECRETS["BASIC_AUTH_PASS"])).status_code == 200
    assert (password, password) in calls
    calls.clear()
    event = {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    assert client.post("/webhook", json=event, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    assert (b"nope", SECRETS["WEBHOOK_SECRET"].encode()) in calls
    calls.clear()
    assert (
        client.post("/webhook", json=event, headers={"X-Webhook-Secret": SECRETS["WEBHOOK_SECRET"]}).status_code == 201
    )
    assert calls == [(SECRETS["WEBHOOK_SECRET"].encode(),) * 2]
    for function in (ml_adapter._credentials_ok, ml_adapter._webhook_secret_ok):
        source = inspect.getsource(function)
        assert "compare_digest" in source and " == " not in source and "!=" not in source


# ---- nothing fetches URLs from task data ------------------------------------------------------------------------


def test_urls_in_task_data_are_text_and_never_fetched(session, redis_url, logs_dir):
    clean_redis(redis_url)
    watcher = canary()
    fake = spawn_fake_llm()
    env = stack_env(redis_url, fake.url, QUEUE_NAME="fewshot-ssrf", LABEL_STUDIO_URL=watcher.url + "/ls")
    workers = start_workers(1, logs_dir, env, prefix="ssrf-worker")
    try:
        wait_for_workers(redis_url, 1, queue="fewshot-ssrf")
        client = create_app(Settings.from_env(env)).test_client()
        for config in (
            SENTIMENT_CONFIG.replace('value="$text"', 'value="$text" valueType="url"'),
            HYPERTEXT_CONFIG.replace('value="$text"', 'value="$text" valueType="url"'),
        ):
            refused = client.post("/setup", json={"project": "1.1", "schema": config})
            assert refused.status_code == 400 and "valueType" in refused.get_json()["error"]
            refused = client.post("/predict", json=predict_body(1, [watcher.url + "/doc.txt"], 1, config))
            assert refused.status_code == 400
        texts = [
            watcher.url + "/task.txt",
            f"see {watcher.url}/page.html and tell me if it is happy",
            f"file:///etc/passwd {watcher.url}/x",
        ]
        html = [
            f'<p>happy</p><img src="{watcher.url}/img.png"><iframe src="{watcher.url}/frame"></iframe>'
            f'<a href="{watcher.url}/link">link</a><link rel="stylesheet" href="{watcher.url}/style.css">'
            f'<script src="{watcher.url}/script.js"></script>'
        ]
        for config, batch in ((SENTIMENT_CONFIG, texts), (HYPERTEXT_CONFIG, html)):
            assert (
                client.post("/setup", json={"project": "2.1", "schema": config, "hostname": watcher.url}).status_code
                == 200
            )
            response = client.post("/predict", json=predict_body(2, batch, 10, config))
            results = response.get_json()["results"]
            assert response.status_code == 200 and all(r.get("result") for r in results), results
        time.sleep(1)
        prompts = json.dumps([r["body"] for r in fake.requests()])
        assert watcher.url + "/task.txt" in prompts  # the URL went to the model as text
        fetched = [r for r in watcher.requests if not r["path"].startswith("/ls/")]
        assert fetched == [], fetched  # no task URL was fetched (only Label Studio's own API may be called)
    finally:
        stop_all(workers)
        fake.stop()
        watcher.close()


def test_the_label_studio_key_never_goes_to_a_hostname_from_setup(redis_url, logs_dir):
    clean_redis(redis_url)
    elsewhere = canary()
    fake = spawn_fake_llm()
    env = stack_env(
        redis_url, fake.url, QUEUE_NAME="fewshot-exfil", LABEL_STUDIO_API_KEY=SECRETS["LABEL_STUDIO_API_KEY"]
    )
    workers = start_workers(1, logs_dir, env, prefix="exfil-worker")
    try:
        wait_for_workers(redis_url, 1, queue="fewshot-exfil")
        client = create_app(Settings.from_env(env)).test_client()
        assert (
            client.post(
                "/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG, "hostname": elsewhere.url}
            ).status_code
            == 200
        )
        deadline = time.time() + 10
        while time.time() < deadline and not elsewhere.requests:
            time.sleep(0.1)
        sent = [r["headers"].get("authorization", "") for r in elsewhere.requests]
        assert not any(SECRETS["LABEL_STUDIO_API_KEY"] in header for header in sent), sent
    finally:
        stop_all(workers)
        fake.stop()
        elsewhere.close()
