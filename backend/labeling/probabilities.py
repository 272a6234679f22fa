"""P(label | prompt) for every allowed label from an answer's tokens and top_logprobs, all surface forms together.

The model answered greedily; at each position of its answer the server shows the top alternatives with their
log-probabilities. Every alternative that leads to a label adds the probability of the path to it (the
generated tokens before it times its own) to that label. The place where the label begins is found in the
answer (after a leading phrase, inside the JSON string of the label field); earlier tokens never stand in for
it. A label that is a prefix of another ("Sci" / "Sci/Tech") is told apart by what follows it: the end, the
closing quote, or a continuation. Mass consistent with several labels (a partial token "Ne" with "Negative"
and "Neutral", an answer that ended after "World" with "World News" allowed, what the list leaves out where
the answer could have ended) is attributed to none of them and kept apart as `unattributed`; it still counts
as label mass, so the labels' shares do not claim it.

Tokens are compared as bytes (a token may hold part of a UTF-8 character); `TokenLogprob.token` carries its
bytes through surrogateescape when the server sent them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from backend.labeling.answers import TokenLogprob, locate_json
from backend.labeling.matching import Label, match_label

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec

END = "\x00"  # the end of the answer, when a position shows it (never part of a label)
TEXT_OPENERS = " \t\r\n\"'*`"  # what may stand before a label in a plain answer: space, quotes, markdown
JSON_OPENERS = " \t\r\n"
_DECODER = json.JSONDecoder()
# After a whole label in a plain answer: the end, space, punctuation that cannot continue a label.
TEXT_TERMINATORS = frozenset(" \t\r\n.,;:!?)]}\"'*`|" + END)
JSON_TERMINATORS = frozenset('"' + END)
# End-of-turn tokens servers may show among the alternatives (vLLM shows them; OpenAI does not).
SPECIAL_TOKEN = re.compile(r"<\|[a-z_]*(?:end|eot|eos)[a-z_]*\|>|</s>|<eos>|<end_of_turn>", re.IGNORECASE)


@dataclass(frozen=True)
class Forms:
    """The casefolded surface forms of each label as they may appear in an answer of one kind (plain or JSON)."""

    by_label: tuple[tuple[str, tuple[str, ...]], ...]
    json: bool

    @property
    def openers(self) -> str:
        return JSON_OPENERS if self.json else TEXT_OPENERS

    @property
    def terminators(self) -> frozenset[str]:
        return JSON_TERMINATORS if self.json else TEXT_TERMINATORS


def surface_forms(label: Label) -> tuple[str, ...]:
    """How an answer may spell a label: its value and display name, as written, lower, upper and capitalized."""
    forms: dict[str, None] = {}
    for base in (label.value, label.name):
        for form in (base, base.lower(), base.upper(), base[:1].upper() + base[1:], base.title()):
            forms.setdefault(form, None)
    return tuple(forms)


@lru_cache(maxsize=256)
def label_forms(spec: LabelingSpec, json_mode: bool) -> Forms:
    """Each label's forms, casefolded; in JSON also as escaped inside a string (both ensure_ascii spellings)."""
    by_label = []
    for label in spec.labels:
        forms: dict[str, None] = {}
        for base in (label.value, label.name):
            spellings = [base]
            if json_mode:
                spellings = [json.dumps(base, ensure_ascii=False)[1:-1], json.dumps(base)[1:-1]]
            for spelling in spellings:
                forms.setdefault(spelling.casefold(), None)
        by_label.append((label.value, tuple(forms)))
    return Forms(tuple(by_label), json_mode)


def consistent_labels(text: str, forms: Forms) -> frozenset[str]:
    """The labels an answer's text (from where the label begins) may still turn out to be.

    A label fits when the text is a prefix of one of its forms, or starts with a whole form followed by a
    terminator. A whole shorter label gives way to a longer one the text goes on to spell ("World News"
    is not "World" followed by " News"); "World" followed by just a space could still be either.
    """
    folded = text.casefold()
    prefix: set[str] = set()
    whole: dict[str, int] = {}
    for label, label_forms_ in forms.by_label:
        for form in label_forms_:
            if form.startswith(folded):
                prefix.add(label)
            elif folded.startswith(form) and folded[len(form)] in forms.terminators:
                whole[label] = max(whole.get(label, 0), len(form))
    reach = {label: len(folded) for label in prefix}
    for label, length in whole.items():
        reach[label] = max(reach.get(label, 0), length)
    kept = {
        label
        for label, length in whole.items()
        if not any(other != label and far > length + 1 for other, far in reach.items())
    }
    return frozenset(prefix | kept)


def settled(text: str, forms: Forms) -> tuple[frozenset[str], bool]:
    """The labels the answer's label text may be, and whether reading further can change that.

    Settled when no label fits any more, or one label alone fits and the text already spells one of its forms
    whole: whatever follows (the end, punctuation, more of a longer form of the same label) keeps it.
    """
    labels = consistent_labels(text, forms)
    if len(labels) != 1:
        return labels, not labels
    return labels, bool(consistent_labels(text + END, forms))


@dataclass
class Reading:
    """What one label position of an answer says: attributed mass per label, and what could not be attributed."""

    masses: dict[str, float] = field(default_factory=dict)
    ambiguous: dict[frozenset[str], float] = field(default_factory=dict)  # mass consistent with several labels
    off: float = 0.0  # mass of alternatives that lead to no label
    shown: bool = False  # the server showed alternatives besides the generated tokens

    def add(self, labels: frozenset[str], mass: float) -> None:
        if len(labels) == 1:
            (label,) = labels
            self.masses[label] = self.masses.get(label, 0.0) + mass
        elif labels:
            self.ambiguous[labels] = self.ambiguous.get(labels, 0.0) + mass
        else:
            self.off += mass

    @property
    def unattributed(self) -> float:
        return sum(self.ambiguous.values(), 0.0)

    def distribution(self, labels: tuple[str, ...]) -> dict[str, float] | None:
        """P(label): each label's attributed mass over all the label mass seen, the unattributed included (it is
        some label's, so no label's share may claim it); None when the answer shows no alternatives."""
        total = sum(self.masses.values()) + self.unattributed
        if not self.shown or not self.masses:
            return None
        return {label: self.masses.get(label, 0.0) / total for label in labels}

    def margin(self) -> float:
        """How far the leader's mass exceeds the most any other label could reach with all the unattributed
        mass that fits it (a tie, or a possible overtaking: <= 0). Whichever label leads, no tie-break."""
        upper = dict(self.masses)
        for labels, mass in self.ambiguous.items():
            for label in labels:
                upper[label] = upper.get(label, 0.0) + mass
        return max(
            (
                mass - max((reach for other, reach in upper.items() if other != label), default=0.0)
                for label, mass in self.masses.items()
            ),
            default=0.0,
        )

    def determined(self) -> bool:
        """No way of splitting the unattributed mass could give another label as much mass as the leader."""
        return self.margin() > 0


def token_bytes(token: str) -> bytes:
    """The bytes of a token as the server spelled them (surrogateescape carries partial UTF-8 characters)."""
    return token.encode("utf-8", "surrogateescape")


def _text(raw: bytes) -> str:
    # A partial character at the end of an alternative is dropped: the check becomes more permissive, never
    # less (more labels fit, so less is attributed).
    return raw.decode("utf-8", "ignore")


def _alternative(token: str) -> bytes | None:
    """An alternative's bytes; None for the end of the answer (an end-of-turn token, or an empty token)."""
    if token == "" or SPECIAL_TOKEN.fullmatch(token):
        return None
    return token_bytes(token)


@dataclass(frozen=True)
class _Layout:
    """An answer as bytes: where each token starts, where the label begins, which token holds that start."""

    data: bytes
    raw: tuple[bytes, ...]  # each token's bytes (b"" for an end-of-turn token the server listed)
    offsets: tuple[int, ...]  # where each token starts, then the end
    begin: int  # where the label begins
    anchor: int  # the token holding that byte
    ended: bool  # the last token is the end of the answer, shown

    @property
    def head(self) -> bytes:
        """What the anchor token holds before the label (a space, a quote)."""
        return self.data[self.offsets[self.anchor] : self.begin]

    def generated(self, j: int) -> bytes | None:
        return None if self.ended and j == len(self.raw) - 1 else self.raw[j]

    def label_text(self, end: int) -> str:
        return _text(self.data[self.begin : end])


def _layout(tokens: list[TokenLogprob], content: str, start: int, forms: Forms) -> _Layout | None:
    if not tokens:
        return None
    data = content.encode("utf-8")
    # An end-of-turn token the server listed as generated: not part of the text, but it shows the label ended.
    last = tokens[-1].token
    ended = _alternative(last) is None and (last == "" or not content.endswith(last))
    raw = tuple(b"" if ended and j == len(tokens) - 1 else token_bytes(t.token) for j, t in enumerate(tokens))
    if b"".join(raw) != data:
        return None
    begin = len(content[:start].encode("utf-8"))
    while begin < len(data) and chr(data[begin]) in forms.openers:  # the label itself starts after them
        begin += 1
    offsets = [0]
    for piece in raw:
        offsets.append(offsets[-1] + len(piece))
    anchor = next((j for j in range(len(raw)) if offsets[j + 1] > begin or (ended and j == len(raw) - 1)), None)
    return None if anchor is None else _Layout(data, raw, tuple(offsets), begin, anchor, ended)


def read_slot(tokens: list[TokenLogprob], content: str, start: int, forms: Forms, lead: bool) -> Reading | None:
    """The label masses at the label that begins at character `start` of `content`.

    `lead`: alternatives before that position that begin a label count too (a plain answer that could have
    named its label at once instead of after a leading phrase). None when the tokens do not spell `content`.
    """
    layout = _layout(tokens, content, start, forms)
    if layout is None:
        return None
    reading, logp = Reading(), 0.0
    for j, token in enumerate(tokens):
        if j >= layout.anchor or lead:
            _read_alternatives(reading, token, j, layout, math.exp(logp), forms)
        logp += token.logprob
        if j < layout.anchor:
            continue
        path = layout.label_text(layout.offsets[j + 1]) + (END if layout.generated(j) is None else "")
        labels, done = settled(path, forms)
        if done:
            reading.add(labels, math.exp(logp))
            return reading
    # The answer ended without showing what would have followed: its mass is every label it could still be.
    reading.add(consistent_labels(path, forms), math.exp(logp))
    return reading


def _read_alternatives(
    reading: Reading, token: TokenLogprob, j: int, layout: _Layout, before: float, forms: Forms
) -> None:
    """Add what position j's alternatives say; `before` is the probability of the generated tokens up to it."""
    shown = 0.0
    for alternative, logprob in token.top:
        alt = _alternative(alternative)
        shown += math.exp(logprob)
        if alt == layout.generated(j):
            continue
        reading.shown = True
        text = _branch_text(alt, j, layout, forms)
        reading.add(consistent_labels(text, forms), before * math.exp(logprob))
    if j > layout.anchor and token.top and not any(_alternative(a) is None for a, _ in token.top):
        # The answer could have ended here (the end is not shown): what the list leaves out is the end, or
        # more of a label; it stays unattributed.
        so_far = layout.label_text(layout.offsets[j])
        if consistent_labels(so_far + END, forms):
            reading.add(consistent_labels(so_far, forms), before * max(0.0, 1.0 - shown))


def _branch_text(alt: bytes | None, j: int, layout: _Layout, forms: Forms) -> str:
    """The label text an alternative at position j would make, from where the label begins."""
    if alt is None:
        return END if j <= layout.anchor else layout.label_text(layout.offsets[j]) + END
    head = layout.head
    text = _text(alt[len(head) :] if j == layout.anchor and head and alt.startswith(head) else alt)
    if j <= layout.anchor:
        return text.lstrip(forms.openers)
    return layout.label_text(layout.offsets[j]) + text


# ---- where the labels are in an answer ----------------------------------------------------------------------


def text_slots(content: str, spec: LabelingSpec, labels: tuple[str, ...]) -> list[tuple[str, int]]:
    """(label, character offset) of each stated label in a plain answer, in the order they appear."""
    slots = []
    by_value = {label.value: label for label in spec.labels}
    for value in labels:
        found = [
            m.start()
            for form in surface_forms(by_value[value])
            for m in re.finditer(rf"(?<!\w){re.escape(form)}(?!\w)", content, flags=re.IGNORECASE)
        ]
        if found:
            slots.append((value, min(found)))
    if not slots:  # an abbreviation ("pos"), or no label at all (a content-free probe): the first word
        stripped = content.lstrip(TEXT_OPENERS)
        slots.append((labels[0] if labels else "", len(content) - len(stripped)))
    return sorted(slots, key=lambda slot: slot[1])


def json_slots(content: str, spec: LabelingSpec, item: str | None = None) -> list[tuple[str, int]]:
    """(label, character offset) of each value of the label field of a JSON answer (of batch item `item`)."""
    found = locate_json(content)
    if found is None:
        return []
    text, offset = found
    position = _skip_space(text, 0)
    if item is not None:
        inside = _field(text, position, ("items",))
        inside = None if inside is None else _field(text, inside, (item,))
        if inside is None:
            return []
        position = inside
    if text.startswith("{", position):
        inside = _field(text, position, ("labels", "label", spec.control_name, "choices", "choice", "answer"))
        if inside is None:
            return []
        position = inside
    values = [position] if text.startswith('"', position) else _array_strings(text, position)
    slots = []
    for at in values:
        try:
            value = _string_at(text, at)[0]
        except ValueError:
            continue
        label = match_label(value, spec)
        if label is not None:
            slots.append((label, offset + at + 1))
    return slots


def _string_at(text: str, position: int) -> tuple[str, int]:
    """The JSON string whose opening quote is at `position`, and the position after its closing quote."""
    value, end = _DECODER.raw_decode(text, position)
    if not isinstance(value, str):
        raise ValueError(f"no JSON string at {position}")
    return value, end


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _field(text: str, position: int, keys: tuple[str, ...]) -> int | None:
    """Position of the value of the first of `keys` present in the object at `position` (its top level)."""
    if not text.startswith("{", position):
        return None
    fields: dict[str, int] = {}
    decoder = json.JSONDecoder()
    position = _skip_space(text, position + 1)
    try:
        while text.startswith('"', position):
            key, position = _string_at(text, position)
            position = _skip_space(text, position)
            if not text.startswith(":", position):
                break
            position = _skip_space(text, position + 1)
            fields.setdefault(key, position)
            position = _skip_space(text, decoder.raw_decode(text, position)[1])
            if not text.startswith(",", position):
                break
            position = _skip_space(text, position + 1)
    except (ValueError, RecursionError):
        pass  # a broken tail: the fields read so far still count
    return next((fields[key] for key in keys if key in fields), None)


def _array_strings(text: str, position: int) -> list[int]:
    """Positions of the string elements of the array at `position`."""
    if not text.startswith("[", position):
        return []
    found, decoder = [], json.JSONDecoder()
    position = _skip_space(text, position + 1)
    try:
        while position < len(text) and text[position] != "]":
            if text[position] == '"':
                found.append(position)
            position = _skip_space(text, decoder.raw_decode(text, position)[1])
            if text.startswith(",", position):
                position = _skip_space(text, position + 1)
            elif not text.startswith("]", position):
                break
    except (ValueError, RecursionError):
        pass
    return found


# ---- an answer's labels and score ---------------------------------------------------------------------------


@dataclass
class Scored:
    """The labels an answer gives, their probability (None when the logprobs cannot tell), the distribution."""

    labels: tuple[str, ...]
    score: float | None = None
    distribution: dict[str, float] | None = None
    unattributed: float = 0.0


def score_answer(
    tokens: list[TokenLogprob] | None,
    content: str,
    spec: LabelingSpec,
    json_mode: bool,
    labels: tuple[str, ...],
    item: str | None = None,
) -> Scored:
    """Labels and score of a parsed answer from its tokens.

    Single choice: the label is the argmax of P(label) at the label's position, the score its probability
    (renormalized over the labels). Multiple choice: the labels stay as stated; the score is the product, over
    the stated labels, of each one's probability at the place it is named. Without usable logprobs, or when
    the unattributed mass could change the argmax, the parsed labels stand and the score is None.
    """
    if not tokens:
        return Scored(labels)
    forms = label_forms(spec, json_mode)
    slots = json_slots(content, spec, item) if json_mode else text_slots(content, spec, labels)
    if not slots:
        return Scored(labels)
    if not spec.multiple:
        _, start = slots[0]
        reading = read_slot(tokens, content, start, forms, lead=not json_mode)
        if reading is None:
            return Scored(labels, unattributed=0.0)
        distribution = reading.distribution(spec.label_values)
        if distribution is None or not reading.determined():
            return Scored(labels, unattributed=reading.unattributed)
        best = max(distribution.items(), key=lambda item: item[1])[0]
        return Scored((best,), distribution[best], distribution, reading.unattributed)
    score, unattributed = 1.0, 0.0
    for label, start in dict(reversed(slots)).items():  # each label once, where it is first named
        reading = read_slot(tokens, content, start, forms, lead=False)
        distribution = reading.distribution(spec.label_values) if reading is not None else None
        if reading is None or distribution is None:
            return Scored(labels)
        score *= distribution[label]
        unattributed += reading.unattributed
    return Scored(labels, score, None, unattributed)
