"""`fewshot-prelabel label`: a file in, a labeled file out, resumable, with a summary."""

import json

import pytest

from backend.commands.cli import main
from tests.conftest import SEEDS


def run_label(tmp_path, rows, *extra):
    source = tmp_path / "tasks.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    code = main(
        [
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
            *extra,
        ]
    )
    return code, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def support_tasks():
    return [json.loads(line) for line in (SEEDS / "support" / "tasks.jsonl").read_text().splitlines()]


def test_rows_keep_their_fields_and_gain_label_score_version(env, tmp_path, capsys):
    tasks = [dict(t, id=i) for i, t in enumerate(support_tasks())]
    code, out = run_label(tmp_path, tasks, "--concurrency", "4")
    assert code == 0
    assert [r["id"] for r in out] == list(range(len(tasks)))  # input order
    assert all(r["ticket"] == t["ticket"] for r, t in zip(out, tasks))
    allowed = {"Billing", "technical", "Account", "Shipping", "Feedback"}
    assert all(r["label"] in allowed and r["model_version"].startswith("fsp-") for r in out)
    assert all(0 < r["score"] <= 1 for r in out)
    labels = {r["ticket"]: r["label"] for r in out}
    assert labels["I want to close my account."] == "Account"
    assert "labeled 20" in capsys.readouterr().out


def test_a_rerun_skips_rows_already_labeled(env, tmp_path, capsys):
    run_label(tmp_path, support_tasks())
    before = env.stats()["requests"]
    code, out = run_label(tmp_path, support_tasks())
    assert code == 0 and len(out) == 20
    assert env.stats()["requests"] == before
    assert "resumed 20" in capsys.readouterr().out


def test_failed_rows_are_reported_and_retried_by_the_next_run(env, tmp_path):
    env.configure(rate_out_of_set=1.0)
    code, out = run_label(tmp_path, support_tasks()[:5])
    assert code == 1
    assert all(r["label"] is None and r["error"].startswith("out_of_set") for r in out)
    env.configure(rate_out_of_set=0.0)
    code, out = run_label(tmp_path, support_tasks()[:5])
    assert code == 0 and all(r["label"] and "error" not in r for r in out)


def test_thirty_percent_rate_limits_still_label_every_row(env, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_MAX_RETRIES", "30")
    env.configure(rate_429=0.3, retry_after=0.01, seed=5)
    rows = [{"ticket": f"{t['ticket']} (case {i})"} for i in range(3) for t in support_tasks()]
    code, out = run_label(tmp_path, rows, "--concurrency", "8", "--summary-json", str(tmp_path / "s.json"))
    assert code == 0 and len(out) == 60 and all(r["label"] for r in out)
    assert env.stats()["faults"]["429"] > 5
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["labeled"] == 60 and summary["requests"] > 60 and summary["prompt_tokens"] > 0


def test_input_with_gold_labels_keeps_them_beside_the_prediction(env, tmp_path):
    rows = [{"ticket": "I want to close my account.", "label": "Account"}]
    code, out = run_label(tmp_path, rows)
    assert out[0]["input_label"] == "Account" and out[0]["label"] == "Account"
    code, _ = run_label(tmp_path, rows)
    assert env.stats()["requests"] == 1  # resumed despite the renamed field


def test_bad_inputs_are_explained_not_tracebacks(env, tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"ticket": "ok"}\nnot json\n')
    code = main(
        [
            "label",
            "--config",
            str(SEEDS / "support" / "config.xml"),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--no-progress",
        ]
    )
    assert code == 2 and "bad.jsonl:2" in capsys.readouterr().err
    code = main(
        [
            "label",
            "--config",
            str(tmp_path / "missing.xml"),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "o.jsonl"),
        ]
    )
    assert code == 2 and "cannot read" in capsys.readouterr().err


def test_rows_without_text_fail_alone(env, tmp_path):
    code, out = run_label(tmp_path, [{"ticket": "I want to close my account."}, {"other": "x"}])
    assert code == 1
    assert out[0]["label"] == "Account"
    assert out[1]["label"] is None and out[1]["error"].startswith("no_text")


def test_the_summary_reports_cache_hits_tokens_and_an_estimated_cost(env, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLM_PRICES", '{"fake-llm": [1000, 2000]}')
    run_label(tmp_path, support_tasks()[:3], "--summary-json", str(tmp_path / "s.json"))
    summary = json.loads((tmp_path / "s.json").read_text())
    stats = env.stats()
    assert summary["prompt_tokens"] == stats["prompt_tokens"] and summary["requests"] == stats["requests"]
    expected = (stats["prompt_tokens"] * 1000 + stats["completion_tokens"] * 2000) / 1e6
    assert summary["cost_usd"] == pytest.approx(expected) and summary["cache_hits"] == 0
    assert "estimated cost $" in capsys.readouterr().out


def test_echo_scoring_with_a_server_that_cannot_is_refused_after_one_request(env, tmp_path, capsys):
    # The stand-in answers /v1/completions without echoing the prompt's log-probabilities.
    code, out = run_label(tmp_path, support_tasks(), "--scoring", "echo", "--concurrency", "8")
    assert code == 1 and all(r["label"] is None and r["error"].startswith("echo_unsupported") for r in out)
    assert "LLM_SCORING=answer" in out[0]["error"] and env.stats()["requests"] == 1
    assert "failures: echo_unsupported 20" in capsys.readouterr().out
