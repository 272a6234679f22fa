"""Demonstration selection: deterministic, per-label balance, nearest by TF-IDF with the most similar last."""

import pytest

from backend.labeling.examples import Example
from backend.labeling.selection import Selection, Selector, TfidfIndex

POOL = [
    Example("the match ended in a draw", ("sports",), ref="1"),
    Example("parliament passed the budget", ("politics",), ref="2"),
    Example("the striker scored twice in the match", ("sports",), ref="3"),
    Example("a new vaccine was approved", ("science",), ref="4"),
    Example("the goalkeeper saved a penalty", ("sports",), ref="5"),
]


def test_all_and_first_k_keep_pool_order():
    assert Selector(POOL, Selection("all")).select("x") == POOL
    assert Selector(POOL, Selection("first-k", 2)).select("x") == POOL[:2]


def test_balanced_k_caps_each_label_and_keeps_rare_ones():
    chosen = Selector(POOL, Selection("balanced-k", 1)).select("anything")
    assert [e.labels[0] for e in chosen] == ["sports", "politics", "science"]


def test_nearest_k_puts_the_most_similar_last():
    chosen = Selector(POOL, Selection("nearest-k", 2)).select("who scored in the match")
    assert [e.ref for e in chosen] == ["1", "3"]
    assert not Selector(POOL, Selection("nearest-k", 2)).fixed


def test_tfidf_prefers_rare_shared_words():
    index = TfidfIndex([e.text for e in POOL])
    assert index.nearest("vaccine trial", 1) == [3]
    assert index.nearest("zzz unknown", 2) == [0, 1]  # no overlap: pool order


@pytest.mark.parametrize("strategy, k", [("random", 3), ("nearest-k", 0)])
def test_bad_selections_are_refused(strategy, k):
    with pytest.raises(ValueError):
        Selection(strategy, k)
