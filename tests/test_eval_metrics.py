"""Evaluation metrics against small examples computed by hand (the arithmetic is in the comments)."""

import json

import pytest

from backend.evaluation.metrics import (
    FAILED,
    EvalItem,
    coverage_curve,
    evaluate,
    expected_calibration_error,
    precision_recall_f1,
    recommended_threshold,
)

approx = pytest.approx

# Ten single-choice tasks over [a, b, c]; the last one failed (no answer, no score).
# The baseline always answers "a" (the majority label).
#      gold  predicted  score  correct
SINGLE = [
    ("a", "a", 0.95),  # 1 yes
    ("a", "a", 0.85),  # 2 yes
    ("a", "b", 0.65),  # 3 no
    ("b", "b", 0.90),  # 4 yes
    ("b", "b", 0.75),  # 5 yes
    ("b", "c", 0.55),  # 6 no
    ("c", "c", 0.80),  # 7 yes
    ("c", "a", 0.45),  # 8 no
    ("a", "a", 0.35),  # 9 yes
    ("c", None, None),  # 10 failed: wrong
]


def single_items(baseline="a"):
    return [
        EvalItem(
            gold=(gold,),
            predicted=None if pred is None else (pred,),
            score=score,
            baseline=None if baseline is None else (baseline,),
        )
        for gold, pred, score in SINGLE
    ]


@pytest.fixture(scope="module")
def single():
    return evaluate(single_items(), ["a", "b", "c"], multiple=False, bins=5, target_accuracy=0.9)


def test_counts_and_accuracy_over_all_and_answered_tasks(single):
    assert (single["n"], single["answered"], single["failed"]) == (10, 9, 1)
    # correct: tasks 1, 2, 4, 5, 7, 9 = 6; all tasks: 6/10; answered tasks: 6/9
    assert single["accuracy"] == {"all": approx(0.6), "answered": approx(6 / 9)}
    assert single["labels"] == ["a", "b", "c"] and single["multiple"] is False


def test_per_label_precision_recall_f1(single):
    # a: predicted a on 1, 2, 8, 9 -> TP 3 (1, 2, 9), FP 1 (8); gold a on 1, 2, 3, 9 -> FN 1 (3)
    #    P = 3/4, R = 3/4, F1 = 3/4, support 4
    # b: predicted b on 3, 4, 5 -> TP 2, FP 1 (3); gold b on 4, 5, 6 -> FN 1 (6)
    #    P = 2/3, R = 2/3, F1 = 2/3, support 3
    # c: predicted c on 6, 7 -> TP 1 (7), FP 1 (6); gold c on 7, 8, 10 -> FN 2 (8, failed 10)
    #    P = 1/2, R = 1/3, F1 = 2 * 1/2 * 1/3 / (1/2 + 1/3) = (1/3) / (5/6) = 2/5, support 3
    expected = {
        "a": (0.75, 0.75, 0.75, 4, 4),
        "b": (2 / 3, 2 / 3, 2 / 3, 3, 3),
        "c": (0.5, 1 / 3, 0.4, 3, 2),
    }
    for label, (p, r, f1, support, predicted) in expected.items():
        row = single["per_label"][label]
        assert (row["precision"], row["recall"], row["f1"]) == (approx(p), approx(r), approx(f1)), label
        assert (row["support"], row["predicted"]) == (support, predicted), label


def test_macro_and_micro_f1(single):
    # macro: (3/4 + 2/3 + 2/5) / 3 = (45 + 40 + 24) / 60 / 3 = 109/180 = 0.60556
    assert single["macro_f1"] == approx(109 / 180)
    # micro: TP 3+2+1 = 6, FP 1+1+1 = 3, FN 1+1+2 = 4 -> P = 6/9, R = 6/10,
    #        F1 = 2 * 6 / (2 * 6 + 3 + 4) = 12/19 = 0.63158
    assert single["micro_precision"] == approx(2 / 3)
    assert single["micro_recall"] == approx(0.6)
    assert single["micro_f1"] == approx(12 / 19)


def test_confusion_matrix_has_a_failed_column(single):
    assert single["confusion"] == {
        "a": {"a": 3, "b": 1, "c": 0, FAILED: 0},  # 1, 2, 9 -> a; 3 -> b
        "b": {"a": 0, "b": 2, "c": 1, FAILED: 0},  # 4, 5 -> b; 6 -> c
        "c": {"a": 1, "b": 0, "c": 1, FAILED: 1},  # 8 -> a; 7 -> c; 10 failed
    }


def test_calibration_with_five_bins(single):
    # 9 scored tasks. Bins [0,.2) [.2,.4) [.4,.6) [.6,.8) [.8,1]:
    #   [.2,.4): 0.35 yes              count 1, mean .35, acc 1,   |1 - .35| = .65
    #   [.4,.6): 0.55 no, 0.45 no      count 2, mean .50, acc 0,   |0 - .5|  = .5
    #   [.6,.8): 0.65 no, 0.75 yes     count 2, mean .70, acc .5,  |.5 - .7| = .2
    #   [.8,1]: .95 .85 .90 .80 yes    count 4, mean 3.5/4 = .875, acc 1, |1 - .875| = .125
    # ECE = (1 * .65 + 2 * .5 + 2 * .2 + 4 * .125) / 9 = 2.55 / 9 = 0.28333
    cal = single["calibration"]
    assert cal["ece"] == approx(2.55 / 9) and cal["count"] == 9
    assert [(b["low"], b["high"], b["count"]) for b in cal["bins"]] == [
        (approx(0.0), approx(0.2), 0),
        (approx(0.2), approx(0.4), 1),
        (approx(0.4), approx(0.6), 2),
        (approx(0.6), approx(0.8), 2),
        (approx(0.8), approx(1.0), 4),
    ]
    assert [b["mean_score"] for b in cal["bins"]] == [None, approx(0.35), approx(0.5), approx(0.7), approx(0.875)]
    assert [b["accuracy"] for b in cal["bins"]] == [None, 1.0, 0.0, 0.5, 1.0]


def test_coverage_curve_and_recommended_threshold(single):
    # Scores high to low with correctness: .95 y, .90 y, .85 y, .80 y, .75 y, .65 n, .55 n, .45 n, .35 y
    # score >= t keeps k tasks of all 10: coverage k/10, accuracy = correct among them / k
    expected = [
        (0.35, 0.9, 6 / 9),
        (0.45, 0.8, 5 / 8),
        (0.55, 0.7, 5 / 7),
        (0.65, 0.6, 5 / 6),
        (0.75, 0.5, 1.0),
        (0.80, 0.4, 1.0),
        (0.85, 0.3, 1.0),
        (0.90, 0.2, 1.0),
        (0.95, 0.1, 1.0),
    ]
    assert [(p["threshold"], p["coverage"], p["accuracy"]) for p in single["coverage"]] == [
        (t, approx(c), approx(a)) for t, c, a in expected
    ]
    # target .9: the lowest threshold with accuracy >= .9 is .75 (1.0 on half the tasks); .65 has 5/6 = .833
    assert single["recommended_threshold"] == 0.75 and single["target_accuracy"] == 0.9
    # target .8 -> .65 (5/6); target .65 -> .35 (6/9 = .667), the LOWEST one, although .45 (5/8 = .625) misses it
    assert recommended_threshold(single["coverage"], 0.8) == 0.65
    assert recommended_threshold(single["coverage"], 0.65) == 0.35
    assert recommended_threshold(single["coverage"], 1.01) is None


def test_baseline_and_gain(single):
    # baseline "a" everywhere: correct on gold a (1, 2, 3, 9) = 4/10, nothing failed
    # a: TP 4, FP 6, FN 0 -> P .4, R 1, F1 = 2 * .4 / 1.4 = 4/7
    # b, c: never predicted -> P 0 (convention), R 0, F1 0
    # macro over a, b, c (all in gold): (4/7) / 3 = 4/21
    base = single["baseline"]
    assert base["accuracy"] == {"all": approx(0.4), "answered": approx(0.4)} and base["failed"] == 0
    assert base["per_label"]["a"]["f1"] == approx(4 / 7)
    assert base["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3, "predicted": 0}
    assert base["macro_f1"] == approx(4 / 21)
    # gain: accuracy .6 - .4 = .2; macro 109/180 - 4/21 = (763 - 240) / 1260 = 523/1260
    assert single["gain"] == {"accuracy": approx(0.2), "macro_f1": approx(523 / 1260)}


def test_result_is_json_ready(single):
    assert json.loads(json.dumps(single, allow_nan=False)) == single


def test_no_baseline_means_none():
    result = evaluate(single_items(baseline=None), ["a", "b", "c"], multiple=False)
    assert result["baseline"] is None and result["gain"] is None


# Five multi-choice tasks over [x, y, z]; task 4 failed.
MULTI = [
    EvalItem(gold=("x", "y"), predicted=("y", "x"), score=0.9),  # exact match (order does not matter)
    EvalItem(gold=("x",), predicted=("x", "z"), score=0.8),  # z is FP
    EvalItem(gold=("y", "z"), predicted=("z",), score=0.6),  # y is FN
    EvalItem(gold=("z",), predicted=None, score=None),  # failed: z is FN
    EvalItem(gold=("y",), predicted=("y",), score=0.7),  # exact match
]


def test_multi_choice_exact_match_and_per_label():
    result = evaluate(MULTI, ["x", "y", "z"], multiple=True)
    # exact match: tasks 1 and 5 -> 2/5 over all, 2/4 over answered
    assert result["accuracy"] == {"all": approx(0.4), "answered": approx(0.5)}
    assert result["failed"] == 1
    # x: gold 1, 2; predicted 1, 2 -> TP 2, FP 0, FN 0, TN 3 -> P 1, R 1, F1 1
    # y: gold 1, 3, 5; predicted 1, 5 -> TP 2, FP 0, FN 1, TN 2 -> P 1, R 2/3, F1 = (4/3) / (5/3) = .8
    # z: gold 3, 4; predicted 2, 3 -> TP 1, FP 1, FN 1, TN 2 -> P .5, R .5, F1 .5
    assert result["confusion"] == {
        "x": {"tp": 2, "fp": 0, "fn": 0, "tn": 3},
        "y": {"tp": 2, "fp": 0, "fn": 1, "tn": 2},
        "z": {"tp": 1, "fp": 1, "fn": 1, "tn": 2},
    }
    rows = result["per_label"]
    assert [(rows[k]["precision"], rows[k]["recall"], rows[k]["f1"]) for k in "xyz"] == [
        (1.0, 1.0, 1.0),
        (1.0, approx(2 / 3), approx(0.8)),
        (0.5, 0.5, 0.5),
    ]
    assert [rows[k]["support"] for k in "xyz"] == [2, 3, 2]
    # macro (1 + .8 + .5) / 3 = 2.3/3; micro TP 5, FP 1, FN 2 -> F1 = 10 / (10 + 1 + 2) = 10/13
    assert result["macro_f1"] == approx(2.3 / 3)
    assert result["micro_f1"] == approx(10 / 13)


def test_without_scores_there_is_no_calibration_and_no_threshold():
    items = [EvalItem(gold=("a",), predicted=("a",), score=None), EvalItem(gold=("b",), predicted=("a",))]
    result = evaluate(items, ["a", "b"], multiple=False)
    assert result["calibration"] is None
    assert result["coverage"] == []
    assert result["recommended_threshold"] is None
    assert result["accuracy"] == {"all": 0.5, "answered": 0.5}


def test_all_failed():
    items = [EvalItem(gold=(g,), predicted=None) for g in ("a", "b", "a")]
    result = evaluate(items, ["a", "b"], multiple=False)
    assert (result["failed"], result["answered"]) == (3, 0)
    assert result["accuracy"] == {"all": 0.0, "answered": None}
    # every gold label is an FN, nothing predicted: P = R = F1 = 0 for a and b, both present in gold
    assert result["macro_f1"] == 0.0 and result["micro_f1"] == 0.0
    assert result["confusion"] == {"a": {"a": 0, "b": 0, FAILED: 2}, "b": {"a": 0, "b": 0, FAILED: 1}}


def test_no_items():
    result = evaluate([], ["a"], multiple=False)
    assert result["n"] == 0 and result["accuracy"] == {"all": None, "answered": None}
    assert result["macro_f1"] is None and result["calibration"] is None and result["coverage"] == []


def test_a_label_never_predicted_has_precision_zero_and_an_absent_label_is_left_out_of_macro_f1():
    items = [
        EvalItem(gold=("a",), predicted=("a",)),
        EvalItem(gold=("b",), predicted=("a",)),
    ]
    result = evaluate(items, ["a", "b", "unused"], multiple=False)
    # b: in gold, never predicted: TP 0, FP 0, FN 1 -> P 0 (nothing predicted), R 0, F1 0
    assert result["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    # a: TP 1, FP 1, FN 0 -> P .5, R 1, F1 2/3; "unused" occurs nowhere -> not averaged:
    # macro = (2/3 + 0) / 2 = 1/3 (not (2/3 + 0 + 0) / 3)
    assert result["macro_f1"] == approx(1 / 3)
    assert "unused" in result["per_label"] and result["per_label"]["unused"]["support"] == 0


def test_a_gold_label_outside_the_config_is_counted_not_dropped():
    items = [EvalItem(gold=("old name",), predicted=("a",)), EvalItem(gold=("a",), predicted=("a",))]
    result = evaluate(items, ["a"], multiple=False)
    assert result["labels"] == ["a", "old name"]
    assert result["confusion"]["old name"] == {"a": 1, "old name": 0, FAILED: 0}
    assert result["per_label"]["old name"]["recall"] == 0.0


def test_labels_with_odd_characters():
    labels = ['<b>&"x"', "a|b", "c'd", "(failed?)"]
    items = [
        EvalItem(gold=(labels[0],), predicted=(labels[0],), score=1.0),
        EvalItem(gold=(labels[1],), predicted=(labels[2],), score=0.0),
        EvalItem(gold=(labels[3],), predicted=None),
    ]
    result = evaluate(items, labels, multiple=False, bins=2)
    assert result["confusion"][labels[1]][labels[2]] == 1
    assert result["confusion"][labels[3]][FAILED] == 1
    assert result["per_label"][labels[0]]["f1"] == 1.0
    # score 1.0 falls in the last (closed) bin, 0.0 in the first: ECE = (1 * |0 - 0| + 1 * |1 - 1|) / 2 = 0
    assert [b["count"] for b in result["calibration"]["bins"]] == [1, 1]
    assert result["calibration"]["ece"] == 0.0


def test_single_choice_rows_need_one_label():
    with pytest.raises(ValueError, match="exactly one gold label"):
        evaluate([EvalItem(gold=("a", "b"), predicted=("a",))], ["a", "b"], multiple=False)


def test_precision_recall_f1_conventions():
    assert precision_recall_f1(0, 0, 3) == (0.0, 0.0, 0.0)  # nothing predicted: precision 0
    assert precision_recall_f1(0, 2, 0) == (0.0, 0.0, 0.0)  # no gold instance: recall 0
    assert precision_recall_f1(0, 0, 0) == (0.0, 0.0, 0.0)
    # TP 3, FP 1, FN 2: P = 3/4, R = 3/5, F1 = 2 * .75 * .6 / 1.35 = 2/3
    assert precision_recall_f1(3, 1, 2) == (approx(0.75), approx(0.6), approx(2 / 3))


def test_expected_calibration_error_with_two_bins():
    # [0, .5): .2 no, .4 yes -> mean .3, acc .5, gap .2; [.5, 1]: .5 yes, .9 yes, 1.0 no -> mean 2.4/3 = .8,
    # acc 2/3, gap .8 - .6667 = .1333; ECE = (2 * .2 + 3 * (.8 - 2/3)) / 5 = (.4 + .4) / 5 = .16
    ece, bins = expected_calibration_error([0.2, 0.4, 0.5, 0.9, 1.0], [False, True, True, True, False], bins=2)
    assert ece == approx(0.16)
    assert [(b["count"], b["mean_score"], b["accuracy"]) for b in bins] == [
        (2, approx(0.3), 0.5),
        (3, approx(0.8), approx(2 / 3)),
    ]
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [True], bins=0)


def test_tied_scores_make_one_coverage_point():
    # .9 yes, .9 no, .5 yes over 4 tasks: t=.5 keeps 3 (2 right), t=.9 keeps 2 (1 right)
    curve = coverage_curve([0.9, 0.5, 0.9], [True, True, False], total=4)
    assert curve == [
        {"threshold": 0.5, "coverage": 0.75, "accuracy": approx(2 / 3)},
        {"threshold": 0.9, "coverage": 0.5, "accuracy": 0.5},
    ]
