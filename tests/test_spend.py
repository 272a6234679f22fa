"""A per-project daily budget stops new LLM calls when it is spent, and says so."""

from backend.devtools.fake_llm import spawn_fake_llm
from backend.processes import start_workers, stop_all
from backend.settings import Settings
from backend.web.ml_adapter import create_app
from tests.conftest import SENTIMENT_CONFIG, clean_redis, stack_env, wait_for_workers


def test_a_spent_daily_budget_stops_new_llm_calls_and_status_says_why(redis_url, logs_dir):
    clean_redis(redis_url)
    fake = spawn_fake_llm()
    env = stack_env(redis_url, fake.url, BUDGET_TOKENS_PER_DAY=300, LABEL_CONCURRENCY=1, JOB_CHUNK_SIZE=20)
    workers = start_workers(1, logs_dir, env, prefix="budget-worker")
    try:
        wait_for_workers(redis_url, 1)
        client = create_app(Settings.from_env(env)).test_client()
        tasks = [{"id": i, "data": {"text": f"Person {i} is happy and it shows"}} for i in range(1, 21)]
        results = client.post(
            "/predict", json={"tasks": tasks, "project": "7.1", "label_config": SENTIMENT_CONFIG}
        ).get_json()["results"]
        labeled = sum(1 for r in results if "result" in r)
        calls = fake.stats()["requests"]
        assert 0 < labeled < 20 and calls == labeled  # calls stopped once the budget was spent
        status = client.get("/status?project=7").get_json()["projects"][0]
        assert status["spend_today"]["reached"] and status["spend_today"]["tokens"] >= 300
        reasons = {f["error"] for f in status["failures"].values()}
        assert reasons == {"budget"} and status["failed_tasks"] == 20 - labeled
        detail = next(iter(status["failures"].values()))["detail"]
        assert "BUDGET_TOKENS_PER_DAY" in detail and "00:00 UTC" in detail
        more = [{"id": 100, "data": {"text": "A brand new task"}}]
        client.post("/predict", json={"tasks": more, "project": "7.1", "label_config": SENTIMENT_CONFIG})
        assert fake.stats()["requests"] == calls
    finally:
        stop_all(workers)
        fake.stop()
