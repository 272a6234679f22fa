"""Per-control comparisons and their sums: spans checked against an independent scorer (nervaluate), free text,
taxonomy paths and numbers against figures worked out by hand."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nervaluate import Evaluator

from backend.evaluation.compare import compare, compare_paths, compare_spans, compare_texts, span_counts, token_f1
from backend.evaluation.control_metrics import span_scores, summarize
from backend.evaluation.structured import StructuredItem, compare_task, evaluate_structured
from backend.labeling.parser import parse_spec

LABELS = ["PER", "LOC", "ORG"]


def ent(start, end, label):
    return {"text": "x" * (end - start), "label": label, "start": start, "end": end}


def reference(golds, preds, mode):
    """nervaluate's figures (its spans end inclusive) for lists of span lists (it needs gold spans in the first
    task to recognise its input format; the order of tasks changes nothing)."""
    pairs = sorted(zip(golds, preds), key=lambda pair: not pair[0])

    def convert(spans):
        return [[{"label": s["label"], "start": s["start"], "end": s["end"] - 1} for s in task] for task in spans]

    return Evaluator(
        convert([g for g, _ in pairs]), convert([p for _, p in pairs]), tags=LABELS, loader="default"
    ).evaluate()


SPAN = st.tuples(st.integers(0, 30), st.integers(1, 6), st.sampled_from(LABELS)).map(
    lambda t: ent(t[0], t[0] + t[1], t[2])
)


def _flat(spans):
    """Spans that do not overlap one another (flat NER, the data nervaluate scores; nested and multi-label spans
    are sets of (start, end, label) here and are checked by hand below)."""
    kept = []
    for span in spans:
        if all(min(span["end"], k["end"]) <= max(span["start"], k["start"]) for k in kept):
            kept.append(span)
    return kept


TASK = st.lists(SPAN, max_size=5).map(_flat)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TASK, TASK), min_size=1, max_size=6).filter(lambda tasks: any(g for g, _ in tasks)))
def test_exact_span_scores_equal_nervaluates_strict_scores(tasks):
    golds, preds = [g for g, _ in tasks], [p for _, p in tasks]
    ours = span_scores([compare_spans(g, p) for g, p in tasks], "exact", LABELS)
    ref = reference(golds, preds, "strict")
    assert ours["precision"] == pytest.approx(ref["overall"]["strict"].precision)
    assert ours["recall"] == pytest.approx(ref["overall"]["strict"].recall)
    assert ours["f1"] == pytest.approx(ref["overall"]["strict"].f1)
    for label in LABELS:
        if ours["per_label"][label]["support"] or ours["per_label"][label]["predicted"]:
            assert ours["per_label"][label]["f1"] == pytest.approx(ref["entities"][label]["strict"].f1)


def _one_to_one(gold, pred):
    """No span overlaps two spans on the other side (then which pairs match is unambiguous; nervaluate pairs
    first come, first served, across labels too)."""

    def overlapping(a, b):
        return min(a["end"], b["end"]) > max(a["start"], b["start"])

    return all(sum(overlapping(g, p) for p in pred) <= 1 for g in gold) and all(
        sum(overlapping(g, p) for g in gold) <= 1 for p in pred
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TASK, TASK), min_size=1, max_size=6))
def test_overlap_span_scores_equal_nervaluates_type_scores_where_pairs_are_unambiguous(tasks):
    tasks = [(g, p) for g, p in tasks if _one_to_one(g, p)]
    if not any(g for g, _ in tasks):
        return
    ours = span_scores([compare_spans(g, p) for g, p in tasks], "overlap", LABELS)
    ref = reference([g for g, _ in tasks], [p for _, p in tasks], "ent_type")["overall"]["ent_type"]
    assert (ours["precision"], ours["recall"]) == (pytest.approx(ref.precision), pytest.approx(ref.recall))


def test_nested_and_multi_label_spans_count_as_sets():
    gold = [ent(0, 1, "PER")]
    result = compare_spans(gold, [ent(0, 1, "LOC"), ent(0, 1, "PER")])  # one span with two labels
    assert result["exact"] == {"LOC": {"tp": 0, "fp": 1, "fn": 0}, "PER": {"tp": 1, "fp": 0, "fn": 0}}
    nested = compare_spans([ent(0, 10, "ORG"), ent(4, 10, "LOC")], [ent(0, 10, "ORG"), ent(4, 10, "LOC")])
    assert nested["correct"] and nested["overlap"]["LOC"]["tp"] == nested["overlap"]["ORG"]["tp"] == 1


def test_overlap_matches_each_gold_span_once_largest_overlap_first():
    gold = {(0, 10, "PER")}
    # two predictions overlap the one gold span: one is right, the other a false positive
    assert span_counts(gold, {(0, 4, "PER"), (3, 10, "PER")}, overlap=True) == {"PER": {"tp": 1, "fp": 1, "fn": 0}}
    assert span_counts(gold, {(10, 12, "PER")}, overlap=True) == {"PER": {"tp": 0, "fp": 1, "fn": 1}}  # touching
    assert span_counts(gold, {(2, 5, "LOC")}, overlap=True) == {
        "LOC": {"tp": 0, "fp": 1, "fn": 0},
        "PER": {"tp": 0, "fp": 0, "fn": 1},
    }
    result = compare_spans([ent(0, 10, "PER")], [ent(0, 9, "PER")])
    assert not result["correct"] and result["exact"]["PER"]["tp"] == 0 and result["overlap"]["PER"]["tp"] == 1


def test_no_spans_predicted_for_a_text_without_any_is_right():
    assert compare_spans([], [])["correct"]
    assert not compare_spans([], None)["correct"]  # a failed answer is never right


@pytest.mark.parametrize(
    "gold, predicted, exact, f1",
    [
        (["The cat sat"], ["the  cat sat"], False, 1.0),
        (["The cat  sat "], ["The cat sat"], True, 1.0),
        (["a b c d"], ["a b x y"], False, 0.5),
        (["a b"], None, False, 0.0),
        (["one", "two"], ["two", "one"], True, 1.0),
    ],
)
def test_free_text_exact_and_token_f1(gold, predicted, exact, f1):
    result = compare_texts(gold, predicted)
    assert result["correct"] is exact and result["token_f1"] == pytest.approx(f1)


def test_token_f1_is_squad_style():
    # gold 4 tokens, predicted 3, 2 shared: P 2/3, R 2/4
    assert token_f1(["Bob flew to Paris"], ["Bob went Paris"]) == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_taxonomy_counts_paths_and_their_nodes():
    result = compare_paths([["Online", "Paywall", "NYT"]], [["Online", "Paywall", "WSJ"]])
    assert not result["correct"]
    assert result["path"] == {"tp": 0, "fp": 1, "fn": 1}
    assert result["node"] == {"tp": 2, "fp": 1, "fn": 1}  # Online and Online/Paywall are right


def test_numbers_exact_and_error():
    assert compare("Rating", 4, 3) == {"correct": False, "error": 1}
    assert compare("Number", 2.5, 2.5) == {"correct": True, "error": 0}
    summary = summarize("Rating", [], [4, 5, 1], [3, 5, None])
    assert summary["exact_match"] == pytest.approx(1 / 3) and summary["mae"] == pytest.approx(0.5)
    assert summary["failed"] == 1 and summary["answered"] == 2


MIXED = parse_spec("""<View><Text name="text" value="$text"/>
  <Labels name="ner" toName="text"><Label value="PER"/></Labels>
  <Choices name="mood" toName="text"><Choice value="happy"/><Choice value="sad"/></Choices>
  <Rating name="stars" toName="text"/></View>""")


def test_a_task_is_right_when_every_control_with_gold_is():
    gold = {"ner": [ent(0, 3, "PER")], "mood": ["happy"]}
    assert compare_task(MIXED.controls, gold, {"ner": [ent(0, 3, "PER")], "mood": ["happy"], "stars": 2})["correct"]
    assert not compare_task(MIXED.controls, gold, {"ner": [ent(0, 3, "PER")], "mood": ["sad"]})["correct"]
    # the model left the span field out: no spans, which is wrong here and right for a text without any
    assert not compare_task(MIXED.controls, gold, {"mood": ["happy"]})["correct"]
    assert compare_task(MIXED.controls, {"ner": [], "mood": ["sad"]}, {"mood": ["sad"]})["correct"]


def test_the_structured_evaluation_has_each_controls_figures_and_the_baselines():
    items = [
        StructuredItem(
            {"ner": [ent(0, 3, "PER")], "mood": ["happy"], "stars": 4},
            {"ner": [ent(0, 3, "PER")], "mood": ["happy"], "stars": 5},
            0.9,
            {"ner": [], "mood": ["sad"], "stars": 4},
        ),
        StructuredItem(
            {"ner": [], "mood": ["sad"]},
            {"ner": [ent(4, 6, "PER")], "mood": ["sad"]},
            0.4,
            {"ner": [], "mood": ["sad"]},
        ),
        StructuredItem({"mood": ["happy"]}, None, None, {"mood": ["happy"]}),
    ]
    result = evaluate_structured(MIXED.controls, items)
    assert (result["n"], result["answered"], result["failed"]) == (3, 2, 1)
    assert result["exact_match"] == {"all": 0.0, "answered": 0.0}
    ner, mood, stars = (result["controls"][name] for name in ("ner", "mood", "stars"))
    assert ner["n"] == 2 and ner["exact"]["precision"] == 0.5 and ner["exact"]["recall"] == 1.0
    assert mood["n"] == 3 and mood["accuracy"]["all"] == pytest.approx(2 / 3) and mood["failed"] == 1
    assert stars["n"] == 1 and stars["mae"] == 1
    assert result["baseline"]["exact_match"] == pytest.approx(2 / 3)
    assert mood["baseline"]["accuracy"]["all"] == pytest.approx(2 / 3) and ner["baseline"]["exact"]["recall"] == 0
    assert result["calibration"]["count"] == 2
