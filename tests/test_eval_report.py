"""Evaluation reports: JSON that round-trips, Markdown with the figures, self-contained well-formed HTML with plots."""

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from backend.evaluation.metrics import EvalItem, evaluate
from backend.evaluation.report import md_escape
from backend.evaluation.report_files import write_reports

ODD = '<b>&"x"'
LABELS = [ODD, "a|b", "c'd"]
META = {
    "model": "gpt-4o-mini",
    "mode": "json",
    "selection": "nearest-k",
    "requests": 12,
    "prompt_tokens": 34567,
    "completion_tokens": 890,
    "estimated_cost_usd": 0.0123,
    "seconds": 4.5,
}
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "embed", "source", "track", "wbr"}


def items():
    rows = [
        (ODD, ODD, 0.95),
        (ODD, ODD, 0.85),
        (ODD, "a|b", 0.65),
        ("a|b", "a|b", 0.9),
        ("a|b", "a|b", 0.75),
        ("a|b", "c'd", 0.55),
        ("c'd", "c'd", 0.8),
        ("c'd", ODD, 0.45),
        (ODD, ODD, 0.35),
        ("c'd", None, None),
    ]
    return [EvalItem(gold=(g,), predicted=None if p is None else (p,), score=s, baseline=(ODD,)) for g, p, s in rows]


@pytest.fixture()
def written(tmp_path):
    result = evaluate(items(), LABELS, multiple=False, bins=5, target_accuracy=0.9)
    paths = write_reports(result, tmp_path / "out", "Eval <support> & co", META)
    return result, paths


class StrictParser(HTMLParser):
    """Collects start tags, resource attributes and tag-balance errors."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.tags, self.resources = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.resources += [value for name, value in attrs if name in ("src", "href", "xlink:href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.resources += [value for name, value in attrs if name in ("src", "href", "xlink:href")]

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_the_three_files_are_written(written):
    _, paths = written
    assert set(paths) == {"json", "markdown", "html"}
    assert [paths[k].name for k in ("json", "markdown", "html")] == ["evaluation.json", "report.md", "report.html"]
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())


def test_the_json_round_trips(written):
    result, paths = written
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["result"] == result
    assert document["meta"] == META and document["title"] == "Eval <support> & co"


def test_the_markdown_has_the_figures(written):
    result, paths = written
    md = paths["markdown"].read_text(encoding="utf-8")
    # accuracy all 6/10, answered 6/9, macro-F1 109/180, ECE 2.55/9, threshold .75 (see test_eval_metrics)
    for figure in ("0.600", "0.667", "0.606", "0.283", "0.750"):
        assert figure in md, figure
    assert "Recommended threshold" in md and "| Failed tasks | 1 | 0 |" in md
    # the baseline (always the odd label: accuracy .4, macro-F1 4/21) and the gain (+.2, +523/1260)
    assert "| 0.400 |" in md and "0.190" in md and "+0.200" in md and "+0.415" in md
    assert "ECE = 0.283" in md
    # label names cannot break the tables or become HTML
    assert md_escape("a|b") in md and "\\<b\\>\\&" in md
    assert "<b>" not in md
    for table in tables(md):  # every row of a table has as many cell separators as its header
        assert len({line.replace("\\|", "").count("|") for line in table}) == 1, table
    assert any(line.startswith("| a\\|b | 0 | 2 | 1 | 0 |") for table in tables(md) for line in table)


def tables(md):
    """The Markdown tables: runs of lines starting with a pipe."""
    found, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found, current = found + [current], []
    return found


def test_the_html_is_well_formed_self_contained_and_escapes_labels(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert parser.tags.count("svg") == 3
    assert parser.resources == []
    assert "http" not in page and "url(" not in page and "<script" not in page
    # strictly balanced: it is well-formed XML too
    root = ET.fromstring(page.split("\n", 1)[1])
    assert root.tag == "html" and len(root.findall(".//svg")) == 3
    assert "&lt;b&gt;&amp;&quot;x&quot;" in page and "c&#x27;d" in page
    assert "<b>" not in page and "Eval &lt;support&gt; &amp; co" in page
    texts = "".join(root.itertext())
    assert ODD in texts and "0.283" in texts and "gpt-4o-mini" in texts


def test_without_scores_or_baseline_the_report_says_so(tmp_path):
    result = evaluate(
        [EvalItem(gold=("x", "y"), predicted=("x",)), EvalItem(gold=("y",), predicted=None)], ["x", "y"], multiple=True
    )
    paths = write_reports(result, tmp_path, "multi", {})
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "No task has a score" in md and "No baseline predictions" in md and "| x | 1 | 0 | 0 | 1 |" in md
    page = paths["html"].read_text(encoding="utf-8")
    root = ET.fromstring(page.split("\n", 1)[1])
    assert len(root.findall(".//svg")) == 1  # the confusion heatmap only
    assert json.loads(paths["json"].read_text())["result"] == result
