"""Finding a quoted entity in the text: where a model's quote stands, as Label Studio's Text offsets.

Label Studio's Text tag stores `start`/`end` in Unicode code points (the editor converts the browser's UTF-16
positions with `[...text]`, see `charsToCodePoints` in its selection tools), which are Python's `str` indexes:
`text[start:end]` is the region's text, emoji and all.
"""

from __future__ import annotations

import re

_QUOTE_VARIANTS = {
    "'": "'’‘`´",
    "’": "'’‘`´",
    "‘": "'’‘`´",
    "`": "'’‘`´",
    '"': '"“”„',
    "“": '"“”„',
    "”": '"“”„',
    "„": '"“”„',
    "-": "-‐‑–—",
    "–": "-‐‑–—",
    "—": "-‐‑–—",
}


def find_spans(text: str, quote: str, occurrence: int | None = None) -> list[tuple[int, int]]:
    """Where a quoted entity is in the text, as (start, end) str indexes (= Label Studio's Text offsets).

    Exact matches first, else matches that ignore case and differences in whitespace (and in the kind of
    apostrophe, quote mark or dash). Whole-word matches are preferred at both stages: "cat" is not found
    inside "category" when it also stands alone. All non-overlapping matches in text order, or only the
    `occurrence`-th (1-based) when given ([] when there are fewer).
    """
    if not isinstance(quote, str) or not quote.strip() or not text or len("".join(quote.split())) > len(text):
        return []
    exact = [(m.start(), m.end()) for m in re.finditer(re.escape(quote), text)]
    tolerant = [
        (m.start(), m.end())
        for m in re.finditer(_tolerant_pattern(quote), text, flags=re.IGNORECASE)
        if m.end() > m.start()
    ]
    spans: list[tuple[int, int]] = []
    for tier in (_whole_words(text, exact), _whole_words(text, tolerant), exact, tolerant):
        if tier:
            spans = tier
            break
    if occurrence is None:
        return spans
    return [spans[occurrence - 1]] if 1 <= occurrence <= len(spans) else []


def _tolerant_pattern(quote: str) -> str:
    words = quote.split()
    parts = []
    for index, word in enumerate(words):
        if index:
            # Words are apart by some whitespace; punctuation may stand with or without it ("Paris , France").
            glued = words[index - 1][-1].isalnum() and word[0].isalnum()
            parts.append(r"\s+" if glued else r"\s*")
        parts.append(
            "".join(f"[{re.escape(_QUOTE_VARIANTS[ch])}]" if ch in _QUOTE_VARIANTS else re.escape(ch) for ch in word)
        )
    return "".join(parts)


def _whole_words(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [
        (start, end)
        for start, end in spans
        if not (start > 0 and text[start].isalnum() and text[start - 1].isalnum())
        and not (end < len(text) and text[end - 1].isalnum() and text[end].isalnum())
    ]
