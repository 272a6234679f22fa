"""nearest-k without an embedding API: the bundled local model chooses the demonstrations, offline, and better.

An ML engineer labels a file with nearest-k and no EMBEDDING_MODEL: no embeddings request reaches the LLM
server, nothing leaves the machine, and the demonstrations each prompt gets carry the task's true label
more often than TF-IDF's (measured against the gold labels of public test sets).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend.labeling.parser import parse_spec
from backend.model.client import LLMClient
from backend.model.labeler import Labeler
from backend.model.local_embeddings import model_id
from benchmarks.bench_selection import measure
from benchmarks.common import as_examples, choices_config, read_jsonl, split_seeds
from tests.conftest import EVAL_DATA, REPO, SEEDS, llm_settings
from tests.no_network import read_attempts
from tests.test_local_embeddings import offline_env

LABEL = """
import sys
from tests import no_network
no_network.install([int(sys.argv[1])])
from backend.commands.cli import main
sys.exit(main(sys.argv[2:]))
"""


def label_offline(tmp_path, fake_llm, rows: list[dict], **env) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`fewshot-prelabel label` in a fresh process whose only allowed connection is the fake LLM's port."""
    source, out = tmp_path / "tasks.jsonl", tmp_path / f"out-{len(list(tmp_path.iterdir()))}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    child_env = {
        **_env(tmp_path, out.stem),
        "OPENAI_BASE_URL": fake_llm.url,
        "OPENAI_API_KEY": "sk-test-fake",
        "LLM_MODEL": "fake-llm",
        **env,
    }
    args = [
        "label",
        "--config",
        str(SEEDS / "support" / "config.xml"),
        "--seeds",
        str(SEEDS / "support"),
        "--input",
        str(source),
        "--output",
        str(out),
        "--no-progress",
        "--concurrency",
        "4",
    ]
    result = subprocess.run(
        [sys.executable, "-c", LABEL, str(fake_llm.port), *args],
        env=child_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows_out = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, rows_out


def _env(tmp_path, name: str) -> dict:
    folder = tmp_path / f"env-{name}"
    folder.mkdir()
    return offline_env(folder)


def test_label_with_nearest_k_makes_no_embeddings_request_and_no_other_network_request(tmp_path, fake_llm):
    tasks = [json.loads(line) for line in (SEEDS / "support" / "tasks.jsonl").read_text().splitlines()]
    result, out = label_offline(tmp_path, fake_llm, tasks, DEMO_SELECTION="nearest-k", DEMO_K="4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(out) == 20 and all(r["label"] and "error" not in r for r in out)
    stats = fake_llm.stats()
    assert "/v1/embeddings" not in stats["by_endpoint"]
    assert stats["by_endpoint"] == {"/v1/chat/completions": 20}
    attempts = read_attempts(result.stderr)
    assert attempts and all(a["allowed"] and a["port"] == fake_llm.port for a in attempts)
    # Each prompt got the 4 demonstrations the local model found nearest, and the run says by what.
    assert all(len(r["body"]["messages"]) == 1 + 2 * 4 + 1 for r in fake_llm.requests())
    assert f"nearest-k:4 by {model_id()}" in result.stderr
    # TF-IDF is still there by name, and it is another selection, so another model_version.
    tfidf, tfidf_out = label_offline(
        tmp_path, fake_llm, tasks[:3], DEMO_SELECTION="nearest-k", DEMO_K="4", EMBEDDING_MODEL="tfidf"
    )
    assert tfidf.returncode == 0 and "nearest-k:4 by TF-IDF" in tfidf.stderr
    assert tfidf_out[0]["model_version"] != out[0]["model_version"]


@pytest.mark.parametrize("file, per_label, tasks", [("ag_news_test.jsonl", 16, 300), ("trec_test.jsonl", 16, 300)])
def test_the_local_model_chooses_demonstrations_with_the_true_label_more_often_than_tfidf(file, per_label, tasks):
    if not (EVAL_DATA / file).exists():
        pytest.fail(f"eval data missing: {EVAL_DATA / file}")
    seeds, rows = split_seeds(read_jsonl(file), per_label, tasks)
    spec = parse_spec(choices_config(sorted({r["label"] for r in seeds})))
    shares = {}
    for similarity in ("tfidf", ""):
        settings = llm_settings(_no_server(), selection="nearest-k", selection_k=8, embedding_model=similarity)
        labeler = Labeler(spec, as_examples(seeds), settings, LLMClient(settings))
        quality, _ = measure(labeler, rows)
        shares[similarity or "local"] = quality.share
    # "Clearly more often": at least a tenth more of the chosen demonstrations carry the task's label.
    assert shares["local"] > 1.1 * shares["tfidf"], shares


class _no_server:
    """Settings need a base URL; choosing demonstrations calls no LLM, so nothing listens there."""

    url = "http://127.0.0.1:9/v1"
