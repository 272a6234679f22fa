"""Contextual calibration (Zhao et al., 2021): divide the label distribution by what the same prompt gives a
content-free input."""

from __future__ import annotations

CONTENT_FREE = ("N/A", "[MASK]", "")  # averaged, as in the paper


def average(distributions: list[dict[str, float]]) -> dict[str, float] | None:
    """Mean of the content-free distributions that exist, renormalized; None if there are none."""
    usable = [d for d in distributions if d]
    if not usable:
        return None
    labels = set().union(*usable)
    mean = {label: sum(d.get(label, 0.0) for d in usable) / len(usable) for label in labels}
    total = sum(mean.values())
    return {label: value / total for label, value in mean.items()} if total > 0 else None


def calibrate(
    distribution: dict[str, float], content_free: dict[str, float] | None, floor: float = 1e-6
) -> dict[str, float]:
    """p(y) / p_cf(y), renormalized: the prompt's bias towards a label (its own prior) is divided out."""
    if not content_free:
        return distribution
    corrected = {label: p / max(content_free.get(label, 0.0), floor) for label, p in distribution.items()}
    total = sum(corrected.values())
    return {label: value / total for label, value in corrected.items()} if total > 0 else distribution


def agreement(chosen: tuple[str, ...], samples: list[tuple[str, ...] | None]) -> float | None:
    """Share of sampled answers that agree with the chosen labels (the chosen answer counts as one)."""
    if not samples:
        return None
    agreeing = 1 + sum(1 for s in samples if s == chosen)
    return agreeing / (len(samples) + 1)
