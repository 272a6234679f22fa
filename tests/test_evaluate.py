"""`evaluate`: cross-validation that never shows a task its own label, reports on the shared eval data."""

import json

import pytest

from backend.commands.cli import main
from backend.labeling.parser import parse_spec
from tests.conftest import EVAL_DATA

SST2_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="negative"/><Choice value="positive"/></Choices></View>'
)
TREC_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="qtype" toName="text">'
    + "".join(f'<Choice value="{c}"/>' for c in ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"))
    + "</Choices></View>"
)


@pytest.mark.parametrize(
    "name, config, mode", [("sst2_test.jsonl", SST2_CONFIG, "logprobs"), ("trec_test.jsonl", TREC_CONFIG, "json")]
)
def test_evaluate_on_the_shared_data_writes_the_reports(env, tmp_path, capsys, name, config, mode):
    (tmp_path / "config.xml").write_text(config)
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--input",
            str(EVAL_DATA / name),
            "--config",
            str(tmp_path / "config.xml"),
            "--limit",
            "150",
            "--selection",
            "nearest-k",
            "--k",
            "8",
            "--mode",
            mode,
            "--output-dir",
            str(out),
            "--no-progress",
        ]
    )
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
    main(
        [
            "evaluate",
            "--input",
            str(EVAL_DATA / "sst2_test.jsonl"),
            "--config",
            str(tmp_path / "config.xml"),
            "--limit",
            "60",
            "--selection",
            "all",
            "--folds",
            "3",
            "--output-dir",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
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


def _same(text: str) -> str:
    import re
    import unicodedata

    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def test_seeds_that_copy_evaluated_tasks_never_show_a_task_its_own_text(env, tmp_path):
    """--seeds overlapping the evaluated tasks (exact copies and case/space/punctuation variants, with the
    opposite label): a task's prompt and its baseline's training side never hold its own text."""
    from backend.commands.evaluate import cross_validate, fold_of
    from backend.labeling.examples import Example, load_seed_file
    from backend.model.client import LLMClient
    from tests.conftest import llm_settings

    spec = parse_spec(SST2_CONFIG)
    rows = [json.loads(line) for line in (EVAL_DATA / "sst2_test.jsonl").read_text().splitlines()[:40]]
    gold = load_seed_file(EVAL_DATA / "sst2_test.jsonl", spec)[:40]
    flip = {"positive": "negative", "negative": "positive"}
    seeds = [
        Example(text, (flip[row["label"]],), "seed", f"s:{n}")
        for n, row in enumerate(rows)
        for text in (row["text"], row["text"].upper().replace(" ", "  ") + " !!")
    ]
    settings = llm_settings(env)
    items, _ = cross_validate(spec, gold, seeds, settings, LLMClient(settings), folds=4, seed=1, progress=False)
    in_item_order = [g for fold in range(4) for g in gold if fold_of(g, 4, 1) == fold]
    for request in env.requests():
        messages = request["body"]["messages"]
        query = _same(messages[-1]["content"].split(" [SEP]")[0])
        shown = {_same(m["content"].split(" [SEP]")[0]) for m in messages[1:-1] if m["role"] == "user"}
        assert query not in shown
    # With its own flipped copy in the training side the baseline would answer the flipped label every time.
    flipped = sum(1 for item, example in zip(items, in_item_order) if item.baseline == (flip[example.labels[0]],))
    assert flipped < 0.8 * len(gold), f"{flipped} of {len(gold)} baselines took the label of the task's own copy"
