"""`evaluate`: cross-validation that never shows a task its own label, reports on the shared eval data."""

import json

import pytest

from backend.cli import main
from tests.conftest import EVAL_DATA

SST2_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
               '<Choice value="negative"/><Choice value="positive"/></Choices></View>')
TREC_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="qtype" toName="text">' +
               "".join(f'<Choice value="{c}"/>' for c in ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")) +
               "</Choices></View>")


@pytest.mark.parametrize("name, config, mode", [("sst2_test.jsonl", SST2_CONFIG, "logprobs"),
                                                ("trec_test.jsonl", TREC_CONFIG, "json")])
def test_evaluate_on_the_shared_data_writes_the_reports(env, tmp_path, capsys, name, config, mode):
    (tmp_path / "config.xml").write_text(config)
    out = tmp_path / "report"
    code = main(["evaluate", "--input", str(EVAL_DATA / name), "--config", str(tmp_path / "config.xml"),
                 "--limit", "150", "--selection", "nearest-k", "--k", "8", "--mode", mode,
                 "--output-dir", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "evaluation.json").read_text())
    result, meta = report["result"], report["meta"]
    assert result["n"] == 150 and 0 <= result["accuracy"]["all"] <= 1 and result["baseline"]["accuracy"]["all"]
    assert meta["requests"] == env.stats()["requests"] and meta["prompt_tokens"] == env.stats()["prompt_tokens"]
    assert meta["folds"] == 5 and meta["selection"] == "nearest-k:8" and meta["mode"] == mode
    assert "accuracy" in (out / "report.md").read_text() and (out / "report.html").read_text().count("<svg") >= 2
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "baseline" in printed and "estimated cost" in printed
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 150 and len({r["task"] for r in rows}) == 150
    assert sum(r["correct"] for r in rows) == round(result["accuracy"]["all"] * 150)
    assert sum(r["tokens"]["prompt"] for r in rows) == meta["prompt_tokens"]
    assert all(r["task"] not in r["demonstrations"] and len(r["demonstrations"]) == 8 for r in rows)
    wrong = sorted((r for r in rows if not r["correct"]), key=lambda r: -r["score"])
    html = (out / "report.html").read_text()
    assert "most confident wrong answers" in html
    assert wrong[0]["task"].replace("_", "\\_") in (out / "report.md").read_text()


def test_no_task_ever_sees_its_own_label_in_its_prompt(env, tmp_path):
    (tmp_path / "config.xml").write_text(SST2_CONFIG)
    main(["evaluate", "--input", str(EVAL_DATA / "sst2_test.jsonl"), "--config", str(tmp_path / "config.xml"),
          "--limit", "60", "--selection", "all", "--folds", "3", "--output-dir", str(tmp_path / "r"),
          "--no-progress"])
    requests = env.requests()
    assert len(requests) == 60
    for request in requests:
        messages = request["body"]["messages"]
        demonstrations = {m["content"] for m in messages[1:-1] if m["role"] == "user"}
        assert messages[-1]["content"] not in demonstrations
        assert len(demonstrations) >= 35  # the other folds: about two thirds of 60


def test_evaluate_explains_bad_input(env, tmp_path, capsys):
    assert main(["evaluate", "--input", str(EVAL_DATA / "sst2_test.jsonl")]) == 2
    assert "--config" in capsys.readouterr().err
