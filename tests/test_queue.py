"""Label requests through real rq worker processes on a real Redis: file runs, shared rate limits, the cache."""

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.commands.cli import main
from backend.devtools.fake_llm import spawn_fake_llm
from backend.pipeline.runs import record_progress, run_status
from backend.processes import spawn, start_workers, stop_all
from backend.settings import Settings
from backend.state import cache
from tests.conftest import SEEDS, clean_redis, stack_env, wait_for_workers

SUPPORT = SEEDS / "support"


def support_rows():
    return [json.loads(line) for line in (SUPPORT / "tasks.jsonl").read_text().splitlines()]


def run_label(tmp_path, rows, redis_url=None, name="out", extra=()):
    source = tmp_path / f"{name}-in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"{name}.jsonl"
    argv = [
        "label",
        "--config",
        str(SUPPORT / "config.xml"),
        "--seeds",
        str(SUPPORT),
        "--input",
        str(source),
        "--output",
        str(out),
        "--no-progress",
    ]
    code = main(argv + (["--redis-url", redis_url] if redis_url else []) + list(extra))
    return code, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
def fake():
    server = spawn_fake_llm()
    yield server
    server.stop()


@pytest.fixture
def client_env(fake, redis_url, monkeypatch):
    for key, value in stack_env(redis_url, fake.url).items():
        if key in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LLM_MODEL", "QUEUE_NAME"):
            monkeypatch.setenv(key, value)
    clean_redis(redis_url)
    return fake


def test_the_label_command_uses_the_workers_when_given_a_redis_url(client_env, redis_url, logs_dir, tmp_path):
    workers = start_workers(2, logs_dir, stack_env(redis_url, client_env.url), prefix="file-worker")
    try:
        wait_for_workers(redis_url, 2)
        code, local = run_label(tmp_path, support_rows(), name="local")
        local_calls = client_env.stats()["requests"]
        code_remote, remote = run_label(tmp_path, support_rows(), redis_url=redis_url, name="remote")
    finally:
        stop_all(workers)
    assert code == 0 and code_remote == 0
    assert [r["label"] for r in remote] == [r["label"] for r in local]
    assert all(r["model_version"].startswith("fsp-") and 0 < r["score"] <= 1 for r in remote)
    served = {r["body"]["messages"][-1]["content"] for r in client_env.requests()[local_calls:]}
    assert len(served) == len(support_rows())  # the workers asked the model, not this process
    import redis as redis_lib

    assert not [k for k in redis_lib.Redis.from_url(redis_url).scan_iter("fsp:project:2*")]  # cleaned up


def test_a_plain_rq_worker_on_the_same_queue_works_too(client_env, redis_url, logs_dir, tmp_path):
    rq = Path(sys.executable).with_name("rq")
    env = stack_env(redis_url, client_env.url)
    worker = spawn(
        "plain-rq-worker", [str(rq), "worker", env["QUEUE_NAME"], "--url", redis_url, "--with-scheduler"], logs_dir, env
    )
    try:
        wait_for_workers(redis_url, 1)
        code, rows = run_label(tmp_path, support_rows()[:6], redis_url=redis_url)
    finally:
        worker.stop()
    assert code == 0 and all(r["label"] for r in rows)


def test_four_workers_share_one_paced_requests_per_minute_limit(client_env, redis_url, logs_dir, tmp_path):
    limit = 10
    env = stack_env(redis_url, client_env.url, RATE_LIMIT_RPM=limit, LABEL_CONCURRENCY=4, JOB_CHUNK_SIZE=2)
    workers = start_workers(4, logs_dir, env, prefix="limited-worker")
    try:
        wait_for_workers(redis_url, 4)
        rows = [{"ticket": f"{r['ticket']} (#{i})"} for i, r in enumerate(support_rows()[:14])]
        started = time.time()
        code, out = run_label(tmp_path, rows, redis_url=redis_url)
        elapsed = time.time() - started
    finally:
        stop_all(workers)
    stats = client_env.stats()
    assert code == 0 and len(out) == 14 and all(r["label"] for r in out)
    assert stats["requests"] == 14
    assert stats["max_in_window"]["60"] <= limit, stats["max_in_window"]
    # Paced, not a minute's budget at once: 10 per minute is one request every 6 s, for all workers together.
    assert stats["max_in_window"]["10"] <= 2, stats["max_in_window"]
    assert elapsed >= 13 * 6 - 1


def test_the_prediction_cache_keeps_at_most_its_bound(redis_conn):
    for n in range(5):
        cache.put(redis_conn, f"key-{n}", {"labels": ["a"], "score": n / 10}, ttl=60, max_entries=3)
        time.sleep(0.002)
    values = cache.get_many(redis_conn, [f"key-{n}" for n in range(5)])
    assert values[:2] == [None, None] and [v["score"] for v in values[2:]] == [0.2, 0.3, 0.4]
    assert cache.size(redis_conn) == 3
    assert 0 < redis_conn.ttl("fsp:cache:key-4") <= 60


def test_run_status_counts_each_task_once_with_rate_and_eta(redis_conn):
    from backend.pipeline.runs import mark

    redis_conn.hset(
        "fsp:run:r1",
        mapping={
            "run_id": "r1",
            "project_id": 5,
            "model_version": "fsp-x",
            "total": 10,
            "started": time.time() - 4,
            "mode": "missing",
            "cached": 0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
    )
    chunk = [
        {"task": 1, "result": [1], "requests": 1, "prompt_tokens": 50, "completion_tokens": 5},
        {"task": 2, "result": None, "error": "llm_error", "requests": 2},
        {"task": 3, "result": [1], "cached": True},
        {"task": 4, "result": None, "error": "low_score"},
    ]
    record_progress(redis_conn, "r1", chunk)
    record_progress(redis_conn, "r1", chunk)  # the same job run twice (its worker was killed after it)
    status = run_status(redis_conn, "r1")
    assert (status["done"], status["failed"], status["withheld"], status["written_back"]) == (2, 1, 1, 0)
    assert (status["cached"], status["requests"], status["prompt_tokens"]) == (2, 6, 100)  # work: every attempt
    assert status["finished"] == 2 and status["state"] == "running"  # labeled is not finished: not written yet
    mark(redis_conn, "r1", {1: "written", 3: "written"}, "write")
    record_progress(redis_conn, "r1", [{"task": 1, "result": None, "error": "llm_error"}])  # a write is final
    record_progress(redis_conn, "r1", [{"task": 2, "result": [1]}])  # a later success replaces a failure
    mark(redis_conn, "r1", {2: "failed", 5: "failed"}, "lost")  # a job's final failure fills only the unknown
    status = run_status(redis_conn, "r1")
    assert (status["done"], status["written_back"], status["failed"], status["finished"]) == (3, 2, 1, 4)
    assert status["tasks_per_s"] == pytest.approx(1.0, rel=0.2) and status["eta_s"] == pytest.approx(6, rel=0.2)
    record_progress(redis_conn, "gone", [{"task": 1, "result": [1]}])
    assert run_status(redis_conn, "gone") == {}


def test_nearest_k_by_embeddings_through_the_web_process_and_a_worker(fake, redis_url, logs_dir):
    from backend.settings import Settings
    from backend.web.ml_adapter import create_app
    from tests.conftest import SENTIMENT_CONFIG

    clean_redis(redis_url)
    env = stack_env(redis_url, fake.url, EMBEDDING_MODEL="fake-embed", DEMO_SELECTION="nearest-k", DEMO_K=2)
    workers = start_workers(1, logs_dir, env, prefix="embedding-worker")
    try:
        wait_for_workers(redis_url, 1)
        client = create_app(Settings.from_env(env)).test_client()
        client.post("/setup", json={"project": "1.1", "schema": SENTIMENT_CONFIG})
        for task_id, (text, label) in enumerate(
            [
                ("Ann is happy today", "positive"),
                ("Ben is sad today", "negative"),
                ("Cat is excited today", "positive"),
                ("Dan is angry today", "negative"),
            ],
            start=1,
        ):
            client.post(
                "/webhook",
                json={
                    "action": "ANNOTATION_CREATED",
                    "project": {"id": 1},
                    "task": {"id": task_id, "data": {"text": text}},
                    "annotation": {
                        "id": task_id,
                        "task": task_id,
                        "updated_at": "2026-01-01",
                        "result": [
                            {
                                "from_name": "sentiment",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": [label]},
                            }
                        ],
                    },
                },
            )
        tasks = [{"id": 10, "data": {"text": "Eve is angry today"}}, {"id": 11, "data": {"text": "Fay is excited"}}]
        body = {"tasks": tasks, "project": "1.1", "label_config": SENTIMENT_CONFIG}
        first = client.post("/predict", json=body).get_json()["results"]
        assert [r["result"][0]["value"]["choices"] for r in first] == [["negative"], ["positive"]]
        assert fake.stats()["by_endpoint"].get("/v1/embeddings", 0) >= 2  # the pool, then the queries
        calls = fake.stats()["requests"]
        again = client.post("/predict", json=body).get_json()["results"]
        assert again == first and fake.stats()["requests"] == calls  # keys built from cached vectors
    finally:
        stop_all(workers)


def test_the_rate_limit_is_kept_per_model_the_project_asks_for(client_env, redis_url, logs_dir, tmp_path):
    """A project that picks its own model draws from that model's limit, not from LLM_MODEL's."""
    import redis as redis_lib

    env = stack_env(redis_url, client_env.url, RATE_LIMIT_RPM=1000)
    workers = start_workers(1, logs_dir, env, prefix="per-model-worker")
    try:
        wait_for_workers(redis_url, 1)
        code, _ = run_label(tmp_path, support_rows()[:3], redis_url, extra=["--model", "fake-llm-large"])
    finally:
        stop_all(workers)
    assert code == 0
    assert {r["body"]["model"] for r in client_env.requests()} == {"fake-llm-large"}
    names = {k.decode() for k in redis_lib.Redis.from_url(redis_url).scan_iter("fsp:ratelimit:*")}
    assert names == {f"fsp:ratelimit:{client_env.url.rstrip('/')}|fake-llm-large"}, names


def test_label_through_workers_ends_with_the_rows_failed_when_a_job_fails_for_good(
    client_env, redis_url, logs_dir, tmp_path
):
    """Every attempt of the job raises: after RQ's retries each row is reported failed with the reason, and
    the command exits 1 instead of waiting (it used to wait up to 24 h)."""
    import threading

    env = stack_env(redis_url, client_env.url, FSP_CHAOS="raise:label")
    worker = spawn("raising-worker", [sys.executable, "-m", "tests.chaos_worker"], logs_dir, env)
    done: dict = {}
    try:
        wait_for_workers(redis_url, 1)
        runner = threading.Thread(
            target=lambda: done.update(result=run_label(tmp_path, support_rows()[:5], redis_url=redis_url)), daemon=True
        )
        runner.start()
        runner.join(180)  # 4 attempts, retried 2, 10 and 30 s apart
    finally:
        worker.stop()
    assert "result" in done, "label --redis-url still waits for jobs that failed for good"
    code, rows = done["result"]
    assert code == 1 and len(rows) == 5
    assert all(
        r["label"] is None
        and r["error"].startswith("job_failed: the labeling job failed 4 times")
        and "raises every time" in r["error"]
        for r in rows
    )


def test_label_through_workers_says_so_when_no_worker_listens(client_env, redis_url, monkeypatch, tmp_path, capsys):
    import threading

    import redis as redis_lib

    monkeypatch.setenv("WORKER_WAIT", "2")
    done: dict = {}
    runner = threading.Thread(
        target=lambda: done.update(result=run_label(tmp_path, support_rows()[:3], redis_url=redis_url)), daemon=True
    )
    runner.start()
    runner.join(60)
    assert "result" in done, "label --redis-url still waits while no worker listens"
    code, rows = done["result"]
    assert code == 1
    assert all(r["error"].startswith("no_worker: no rq worker listened on queue 'fewshot-test' for 2 s") for r in rows)
    assert "no worker listens on the queue" in capsys.readouterr().err
    assert redis_lib.Redis.from_url(redis_url).llen("rq:queue:fewshot-test") == 0  # its jobs left the queue


def test_a_span_answer_with_no_entity_is_a_prediction_not_a_failure(client_env, redis_url, logs_dir, tmp_path, capsys):
    """The model found nothing to mark (result []): a valid answer, counted and written as a prediction."""
    entities = SEEDS / "entities"
    workers = start_workers(1, logs_dir, stack_env(redis_url, client_env.url), prefix="empty-span-worker")
    try:
        wait_for_workers(redis_url, 1)
        source, out = tmp_path / "spans.jsonl", tmp_path / "spans-out.jsonl"
        rows = [{"text": "nothing of note happened here today."}, {"text": "Maria Lopez flew to Oslo."}]
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        code = main(
            [
                "label",
                "--config",
                str(entities / "config.xml"),
                "--seeds",
                str(entities),
                "--input",
                str(source),
                "--output",
                str(out),
                "--no-progress",
                "--redis-url",
                redis_url,
            ]
        )
    finally:
        stop_all(workers)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0, capsys.readouterr().err[-2000:]
    assert not any(r.get("error") for r in written), written
    assert written[0]["label"] == {"entities": []}  # nothing marked, and said so
    assert {e["text"] for e in written[1]["label"]["entities"]} == {"Maria Lopez", "Oslo"}
    assert "labeled 2  failed 0" in capsys.readouterr().out


def test_an_empty_result_counts_labeled_in_a_run_and_goes_to_the_outbox(redis_conn):
    from backend.pipeline import failures, jobs, outbox

    redis_conn.hset(
        "fsp:run:r-empty",
        mapping={
            "run_id": "r-empty",
            "project_id": 6,
            "model_version": "fsp-e",
            "total": 2,
            "started": time.time(),
            "mode": "missing",
            "cached": 0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
    )
    messages = [
        {"task": 1, "result": [], "score": None, "model_version": "fsp-e"},
        {"task": 2, "result": None, "score": None, "error": "llm_error", "model_version": "fsp-e"},
    ]
    failures.record(redis_conn, 6, messages)
    record_progress(redis_conn, "r-empty", messages)
    state = jobs.WorkerState(Settings.from_env({}), redis_conn, contexts=None)  # type: ignore[arg-type]
    assert jobs.queue_write_back(state, 6, messages, "r-empty") == 1
    status = run_status(redis_conn, "r-empty")
    assert (status["done"], status["failed"]) == (1, 1)
    assert set(failures.read(redis_conn, 6)) == {2}
    assert [int(r["task"]) for batch in outbox.batches(redis_conn, 6) for r in batch] == [1]


def test_predict_answers_an_empty_span_result_as_a_prediction(client_env, redis_url, logs_dir):
    """/predict sends `result: []` (the model found nothing) like any prediction, from a worker and from the cache."""
    from backend.web.ml_adapter import create_app

    config = (SEEDS / "entities" / "config.xml").read_text()
    env = stack_env(redis_url, client_env.url, SEEDS_PATH=str(SEEDS / "entities"))
    workers = start_workers(1, logs_dir, env, prefix="empty-predict-worker")
    try:
        wait_for_workers(redis_url, 1)
        client = create_app(Settings.from_env(env)).test_client()
        tasks = [
            {"id": 1, "data": {"text": "nothing of note happened here today."}},
            {"id": 2, "data": {"text": "Maria Lopez flew to Oslo."}},
        ]
        body = {"tasks": tasks, "project": "7.1", "label_config": config}
        first = client.post("/predict", json=body).get_json()
        calls = client_env.stats()["requests"]
        again = client.post("/predict", json=body).get_json()  # cache hits this time
    finally:
        stop_all(workers)
    for answer in (first, again):
        empty, found = answer["results"]
        assert empty["result"] == [] and empty["model_version"] == answer["model_version"], answer
        assert {r["value"]["text"] for r in found["result"]} == {"Maria Lopez", "Oslo"}
    assert client_env.stats()["requests"] == calls  # the second answer came from the cache, empty result and all


def test_label_through_workers_queues_its_tasks_before_loading_the_llm_stack():
    """The command's start-up overlaps the workers' labeling: what it runs before submitting (the CLI, the
    file project's registration, the file reading) loads neither the labeler nor the openai client."""
    import subprocess

    code = (
        "import sys, backend.commands.cli, backend.commands.remote_label, backend.commands.label, "
        "backend.pipeline.projects, backend.state.store; "
        "print(sorted(m for m in ('openai', 'tiktoken', 'backend.model.labeler', 'backend.model.client', "
        "'backend.model.embeddings') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@given(st.integers(0, 400), st.integers(1, 40), st.booleans())
def test_a_request_is_split_in_order_with_small_last_jobs_when_tapered(count, chunk_size, taper):
    from backend.pipeline.dispatch import TAPER_CHUNKS, split

    ids = list(range(100, 100 + count))
    chunks = split(ids, chunk_size, taper)
    assert [t for chunk in chunks for t in chunk] == ids and all(chunks)
    assert all(len(chunk) <= chunk_size for chunk in chunks)
    small = max(1, chunk_size // 4)
    if taper:  # the last TAPER_CHUNKS chunks' worth of tasks go out in quarter-size jobs
        tail = min(count, TAPER_CHUNKS * chunk_size)
        assert sum(len(c) for c in chunks if len(c) <= small) >= tail
        assert all(len(c) <= small for c in chunks[len(chunks) - -(-tail // small) :])
    else:
        assert all(len(c) == chunk_size for c in chunks[:-1])
