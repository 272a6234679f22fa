"""The benchmark's model-free measure of selection quality, on cases worked out by hand."""

import pytest

from benchmarks.selection_quality import Quality, chance


def test_share_and_coverage_average_over_tasks():
    quality = Quality()
    quality.add([("a",), ("b",), ("a",), ("c",)], ["a"])  # 2 of 4 carry the label, covered
    quality.add([("b",), ("c",)], ["a"])  # none: not covered
    quality.add([("b", "c"), ("d",)], ["c", "x"])  # multi-label: a shared label counts
    assert quality.share == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert quality.coverage == pytest.approx(2 / 3)


def test_chance_is_the_random_draw_expectation():
    pool = [("a",), ("a",), ("b",), ("c",)]
    share, covered = chance(pool, ["a"], 2)
    assert share == pytest.approx(0.5)
    assert covered == pytest.approx(1 - 1 / 6)  # only {b, c} of the 6 pairs misses "a"
    assert chance(pool, ["z"], 3) == (0.0, 0.0)
    assert chance(pool, ["a"], 10)[1] == 1.0  # k larger than the pool takes everything
