"""`evaluate` for spans and multi-control configs: per-label span F1 on WNUT-17 (checked against nervaluate on
the per-task rows), per-control figures, and predictions.jsonl with one row per task."""

import json

from nervaluate import Evaluator

from backend.commands.cli import main
from tests.conftest import EVAL_DATA

TYPES = ("person", "group", "location", "creative-work", "product", "corporation")
NER_CONFIG = (
    '<View><Text name="text" value="$text"/><Labels name="entities" toName="text">'
    + "".join(f'<Label value="{t}"/>' for t in TYPES)
    + "</Labels></View>"
)
MULTI_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Labels name="entities" toName="text">' + "".join(f'<Label value="{t}"/>' for t in TYPES) + "</Labels>"
    '<Choices name="types" toName="text" choice="multiple">'
    + "".join(f'<Choice value="{t}"/>' for t in (*TYPES, "none"))
    + "</Choices>"
    '<Number name="count" toName="text" min="0" step="1"/>'
    '<TextArea name="first" toName="text" placeholder="the first entity, as written"/>'
    '<Taxonomy name="kind" toName="text"><Choice value="named"><Choice value="people"/>'
    '<Choice value="places"/><Choice value="things"/></Choice><Choice value="nothing"/></Taxonomy>'
    '<Rating name="busy" toName="text" maxRating="3"/></View>'
)
KIND = {
    "person": "people",
    "group": "people",
    "location": "places",
    "creative-work": "things",
    "product": "things",
    "corporation": "people",
}


def wnut_rows(limit: int) -> list[dict]:
    return [json.loads(line) for line in (EVAL_DATA / "wnut17_test.jsonl").read_text().splitlines()[:limit]]


def multi_label(row: dict) -> dict:
    """Every control's gold value, derived from the row's human-annotated entities."""
    entities = row["label"]
    label = {
        "entities": entities,
        "types": sorted({e["type"] for e in entities}) or ["none"],
        "count": len(entities),
        "busy": min(3, 1 + len(entities)),
        "kind": [["named", KIND[e["type"]]] for e in entities][:1] or [["nothing"]],
    }
    if entities:
        label["first"] = entities[0]["text"]
    return {"text": row["text"], "tokens": row["tokens"], "label": label}


def run(tmp_path, config: str, source, *extra: str):
    (tmp_path / "config.xml").write_text(config)
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--input",
            str(source),
            "--config",
            str(tmp_path / "config.xml"),
            "--selection",
            "nearest-k",
            "--k",
            "8",
            "--output-dir",
            str(out),
            "--no-progress",
            *extra,
        ]
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return code, json.loads((out / "evaluation.json").read_text()), rows, out


def test_spans_on_wnut17_per_label_f1_agrees_with_an_independent_scorer(env, tmp_path, capsys):
    code, report, rows, out = run(tmp_path, NER_CONFIG, EVAL_DATA / "wnut17_test.jsonl", "--limit", "150")
    assert code == 0
    printed = capsys.readouterr().out
    result = report["result"]["controls"]["entities"]
    assert len(rows) == report["result"]["n"] == result["n"] == 150
    assert env.stats()["requests"] == 150 and report["meta"]["requests"] == 150
    for label in TYPES:
        assert f"  {label}: P " in printed

    # Recompute the span figures from predictions.jsonl with nervaluate (spans end inclusive there).
    def spans(value):
        return [{"label": s["labels"][0], "start": s["start"], "end": s["end"] - 1} for s in value["entities"]]

    ordered = sorted(rows, key=lambda r: not r["gold"]["entities"])  # nervaluate reads its format off the first
    reference = Evaluator(
        [spans(r["gold"]) for r in ordered],
        [spans(r["predicted"] or {"entities": []}) for r in ordered],
        tags=list(TYPES),
        loader="default",
    ).evaluate()
    strict = reference["overall"]["strict"]
    assert (result["exact"]["precision"], result["exact"]["recall"]) == (strict.precision, strict.recall)
    for label in TYPES:
        assert abs(result["exact"]["per_label"][label]["f1"] - reference["entities"][label]["strict"].f1) < 1e-9
    assert result["exact"]["tp"] > 0  # the stand-in finds entities it saw in other folds
    # gold spans are the file's entities, at the right characters
    source = {r["text"]: r for r in wnut_rows(1287)}
    for row in rows:
        gold = source[row["text"]]["label"]
        assert sorted(s["text"] for s in row["gold"]["entities"]) == sorted(e["text"] for e in gold)
        for value in (row["gold"], row["predicted"]):
            assert all(s["text"] == row["text"][s["start"] : s["end"]] for s in value["entities"])
    assert "Per label" not in (out / "report.md").read_text() and "exact F1" in (out / "report.md").read_text()


def test_a_multi_control_config_prints_every_controls_figures(env, tmp_path, capsys):
    source = tmp_path / "gold.jsonl"
    source.write_text("".join(json.dumps(multi_label(r)) + "\n" for r in wnut_rows(90)))
    code, report, rows, out = run(tmp_path, MULTI_CONFIG, source, "--folds", "3")
    assert code == 0
    printed = capsys.readouterr().out
    controls = report["result"]["controls"]
    assert set(controls) == {"entities", "types", "count", "first", "kind", "busy"}
    for line in (
        "entities (Labels, 90 tasks)",
        "types (Choices, 90 tasks)",
        "count (Number, 90 tasks)",
        "kind (Taxonomy, 90 tasks)",
        "busy (Rating, 90 tasks)",
        "token F1",
        "MAE",
        "path F1",
    ):
        assert line in printed
    assert controls["first"]["n"] == sum(bool(r["label"]) for r in wnut_rows(90))  # only rows that have one
    assert len(rows) == 90 and all(set(r["controls"]) <= set(controls) for r in rows)
    for row in rows:
        assert row["correct"] == all(c["correct"] for c in row["controls"].values())
        assert row["tokens"]["prompt"] > 0 and row["demonstrations"]
    assert report["result"]["exact_match"]["all"] == sum(r["correct"] for r in rows) / 90
    html = (out / "report.html").read_text()
    for name in ("entities (Labels)", "types (Choices)", "first (TextArea)", "kind (Taxonomy)", "busy (Rating)"):
        assert f"<h2>{name}</h2>" in html


def test_no_task_is_shown_its_own_answer(env, tmp_path):
    rows = [r for r in wnut_rows(200) if r["label"]][:40]
    source = tmp_path / "gold.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _report, predictions, _out = run(tmp_path, NER_CONFIG, source, "--folds", "4")
    assert code == 0
    for row in predictions:
        assert row["task"] not in row["demonstrations"]
        assert len(row["demonstrations"]) == 8
    for request in env.requests():
        messages = request["body"]["messages"]
        shown = {m["content"] for m in messages[1:-1] if m["role"] == "user"}
        assert messages[-1]["content"] not in shown
