"""Pure answer logic of the fake LLM stand-in: prompt parsing, nearest-demonstration choice, logprobs, embeddings."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

OUT_OF_SET_LABEL = "NOT_A_LABEL"
# Deliberately not a label and not JSON: what a confused model might ramble.
GARBAGE_TEXT = "~~ stand-in garbage: l@bel?? maybe ###"
# Softmax temperature over similarities in [0, 1]: sharp enough that the
# nearest label dominates, soft enough that runners-up keep some mass.
TEMPERATURE = 0.1
EMBED_DIMS = 256
# Character 3-grams make "cats"/"cat" close, but words should dominate.
TRIGRAM_WEIGHT = 0.3
# Keys whose value is "the label" when the label set must be guessed from demos.
PRIMARY_KEYS = ("label", "labels", "answer", "class", "category", "choice", "choices")

WORD_RE = re.compile(r"\w+")
USAGE_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
ALLOWED_RE = re.compile(r"^[ \t]*Allowed labels:[ \t]*(.*)$", re.MULTILINE)
HINT_RE = re.compile(r"^[ \t]*[-*][ \t]*([^:\n]+?)[ \t]*:[ \t]*(.*\S)[ \t]*$", re.MULTILINE)
ITEM_RE = re.compile(r"^[ \t]*\[item (\d+)\][ \t]*", re.MULTILINE)
COMPLETION_SEGMENT_RE = re.compile(r"(.*?)The label of the above text is([^\n]*)", re.DOTALL)

LogDist = dict  # label -> log probability


@dataclass
class ChatPrompt:
    """The prompt contract: system text, (user, assistant) demonstrations, final user query."""

    system: str
    demos: list[tuple[str, str]]
    query: str


@dataclass
class Answer:
    """An answer content plus, for each label token in it (in order), the label and its distribution."""

    content: str
    slots: list[tuple[str, LogDist]] = field(default_factory=list)
    kind: str = "nearest"
    demo_index: int | None = None


# ---------------------------------------------------------------- text basics


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


def count_tokens(text: str) -> int:
    """Crude token count used for `usage`: words and single punctuation marks."""
    return len(USAGE_TOKEN_RE.findall(text or ""))


def message_text(content) -> str:
    """Text of a chat message content: a string or a list of {"type": "text"} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content]
        return "\n".join(p for p in parts if isinstance(p, str))
    return str(content)


def parse_json_answer(content: str):
    """The parsed JSON of an answer if it is a JSON object/array, else None (plain label)."""
    text = content.strip()
    if not text or text[0] not in "{[":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def dumps(value) -> str:
    # ", " and ": " separators match the demos' usual `{"label": "x"}` look.
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ similarity


def _cosine(a: dict, b: dict) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def similarities(docs: list[str], query: str) -> list[float]:
    """Cosine of the stand-in's own embedding (the one /v1/embeddings serves) of the query to each doc.

    Words that every message shares (the template's) are left out first, so they cannot decide anything.
    The measure does not otherwise depend on which demonstrations are in the prompt: like a real model's
    sense of similarity, it is the same whether the prompt holds 8 demonstrations or 800.
    """
    texts = list(docs) + [query]
    bags = [_bag(text) for text in texts]
    shared = set.intersection(*(set(bag) for bag in bags)) if bags else set()
    vectors = [_without(text, bag, shared) for text, bag in zip(texts, bags)]
    return [sum(a * b for a, b in zip(v, vectors[-1])) for v in vectors[:-1]]


@lru_cache(maxsize=100_000)
def _bag(text: str) -> Counter:
    return Counter(words(text))


@lru_cache(maxsize=100_000)
def _raw_vector(text: str) -> tuple[float, ...]:
    # Unnormalized: the shared words' features are subtracted before normalizing (cached per text, since
    # the same demonstrations come back in request after request).
    vector = [0.0] * EMBED_DIMS
    for word in words(text):
        for index, weight in _word_features(word, EMBED_DIMS):
            vector[index] += weight
    return tuple(vector)


def _without(text: str, bag: Counter, shared: set) -> list[float]:
    vector = list(_raw_vector(text))
    for word in shared:
        for index, weight in _word_features(word, EMBED_DIMS):
            vector[index] -= weight * bag[word]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def nearest_index(similarities: list[float]) -> int:
    """Index of the highest similarity; ties go to the LATER one (deterministic)."""
    return max(range(len(similarities)), key=lambda i: (similarities[i], i))


# ------------------------------------------------------------------ label sets


def allowed_labels(system: str) -> list[str]:
    """Labels from a line `Allowed labels: a; b; c` in the system text."""
    match = ALLOWED_RE.search(system or "")
    if not match:
        return []
    return [label.strip() for label in match.group(1).split(";") if label.strip()]


def label_hints(system: str, labels: list[str]) -> dict[str, str]:
    """Hint texts from lines `- label: hint` for labels of the set."""
    wanted = set(labels)
    return {m.group(1): m.group(2) for m in HINT_RE.finditer(system or "") if m.group(1) in wanted}


def response_schema(response_format) -> dict | None:
    """The JSON schema of a `json_schema` response_format, else None."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def wants_json(response_format) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object")


def schema_enum(schema) -> list[str]:
    """The first enum of strings found depth-first in a JSON schema."""
    if isinstance(schema, dict):
        enum = schema.get("enum")
        if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
            return list(enum)
        children = list(schema.values())
    elif isinstance(schema, list):
        children = schema
    else:
        return []
    for child in children:
        found = schema_enum(child)
        if found:
            return found
    return []


def _string_values(value):
    """All string values of a parsed JSON answer, depth-first, keys excluded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _string_values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _string_values(v)


def answer_labels(content: str, labels: list[str] | None = None) -> list[str]:
    """The labels an assistant answer expresses, in order of appearance.

    With a known label set only its members count (so a "reason" field is
    ignored); without one, a primary key like "label" decides.
    """
    parsed = parse_json_answer(content)
    if parsed is None:
        text = content.strip()
        return [text] if text and (not labels or text in labels) else []
    if labels:
        members = set(labels)
        return [v for v in _string_values(parsed) if v in members]
    if isinstance(parsed, dict):
        for key in PRIMARY_KEYS:
            value = parsed.get(key)
            if isinstance(value, str):
                return [value]
            if isinstance(value, list):
                return [v for v in value if isinstance(v, str)]
    return list(_string_values(parsed))[:1]


def label_set(prompt: ChatPrompt, response_format=None) -> list[str]:
    """Allowed labels line, else the schema enum, else the distinct demonstration labels."""
    labels = allowed_labels(prompt.system)
    if labels:
        return labels
    labels = schema_enum(response_schema(response_format))
    if labels:
        return labels
    seen: dict[str, None] = {}
    for _, answer in prompt.demos:
        for label in answer_labels(answer):
            seen.setdefault(label, None)
    return list(seen)


# ------------------------------------------------------------- distributions


def log_softmax(scores: dict[str, float], temperature: float = TEMPERATURE) -> LogDist:
    if not scores:
        return {}
    logits = {k: v / temperature for k, v in scores.items()}
    top = max(logits.values())
    lse = top + math.log(sum(math.exp(v - top) for v in logits.values()))
    return {k: v - lse for k, v in logits.items()}


def with_extra_label(dist: LogDist, label: str) -> LogDist:
    """Add a label (e.g. an out-of-set one) as likely as the current favourite, renormalized."""
    if label in dist:
        return dist
    logits = dict(dist)
    logits[label] = max(dist.values(), default=0.0)
    top = max(logits.values())
    lse = top + math.log(sum(math.exp(v - top) for v in logits.values()))
    return {k: v - lse for k, v in logits.items()}


def label_scores(demos, similarities, labels) -> dict[str, float]:
    """s_label = max similarity of the query to any demonstration with that label (0 if none)."""
    scores = {label: 0.0 for label in labels}
    for (_, answer), sim in zip(demos, similarities):
        for label in answer_labels(answer, labels):
            if label in scores:
                scores[label] = max(scores[label], sim)
    return scores


# ------------------------------------------------------------- choosing answers


def zero_shot_scores(labels: list[str], hints: dict[str, str], query: str) -> dict[str, float]:
    """Word overlap between each label name (plus its hint) and the query."""
    query_words = set(words(query))
    return {label: float(len(set(words(label + " " + hints.get(label, ""))) & query_words)) for label in labels}


def value_from_schema(schema, label: str):
    """A minimal instance of a JSON schema with `label` in its label-like slots."""
    if not isinstance(schema, dict):
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return label if label in enum else enum[0]
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return value_from_schema(options[0], label)
    kind = schema.get("type")
    if isinstance(kind, list):  # e.g. ["string", "null"]
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {k: value_from_schema(v, label) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        items = schema.get("items")
        return [value_from_schema(items, label)] if isinstance(items, dict) and schema_enum(items) else []
    if kind == "string":
        return ""
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def shape_zero_shot(label: str, response_format) -> str:
    schema = response_schema(response_format)
    if schema is not None:
        return dumps(value_from_schema(schema, label))
    if wants_json(response_format):  # json_object without a schema
        return dumps({"label": label})
    return label


def _choose(
    prompt: ChatPrompt, labels, query: str, response_format, bias_last: bool, prior_last: float = 0.0
) -> Answer:
    """Nearest demonstration's answer verbatim, the last one if biased, or a zero-shot guess.

    prior_last models a recency bias the way contextual calibration assumes one: a constant bonus to the
    last demonstration's label in every answer's label scores, content-free inputs included.
    """
    if prompt.demos:
        sims = similarities([user for user, _ in prompt.demos], query)
        scores = label_scores(prompt.demos, sims, labels)
        last = answer_labels(prompt.demos[-1][1], labels)
        if prior_last and last:
            scores[last[0]] = scores.get(last[0], 0.0) + prior_last
        index = len(sims) - 1 if bias_last else nearest_index(sims)
        if prior_last and last and max(scores, key=lambda label: scores[label]) == last[0]:
            index = len(sims) - 1  # the bonus wins: answer as the last demonstration did
        dist = log_softmax(scores)
        content = with_spans_from_demos(prompt.demos[index][1], prompt.demos, query)
        slots = [(label, dist) for label in answer_labels(content, labels)]
        return Answer(content, slots, "bias_last" if bias_last else "nearest", index)
    if not labels:
        return Answer("", [], "empty")
    scores = zero_shot_scores(labels, label_hints(prompt.system, labels), query)
    # max over (score, -position): the first label wins ties, including "no overlap at all".
    label = max(labels, key=lambda lb: (scores[lb], -labels.index(lb)))
    return Answer(shape_zero_shot(label, response_format), [(label, log_softmax(scores))], "zero_shot")


def _is_span_list(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and isinstance(v.get("text"), str) and "label" in v for v in value)
    )


def with_spans_from_demos(content: str, demos, query: str) -> str:
    """For span fields (lists of {"text", "label"}), answer every entity any demonstration marked whose
    text occurs in the query: the nearest demonstration's own entities are rarely in a new sentence."""
    answer = parse_json_answer(content)
    if not isinstance(answer, dict):
        return content
    fields = {key for key, value in answer.items() if isinstance(value, list)}
    for _, demo_answer in demos:
        parsed = parse_json_answer(demo_answer)
        if isinstance(parsed, dict):
            fields |= {key for key, value in parsed.items() if _is_span_list(value)}
    changed = False
    for key in fields:
        known: dict[str, dict] = {}  # casefolded text -> the first entity with it
        for _, demo_answer in demos:
            parsed = parse_json_answer(demo_answer)
            for entity in (parsed or {}).get(key, []) if isinstance(parsed, dict) else []:
                if isinstance(entity, dict) and isinstance(entity.get("text"), str):
                    known.setdefault(entity["text"].casefold(), {"text": entity["text"], "label": entity.get("label")})
        if not known and not _is_span_list(answer.get(key)):
            continue
        found = [
            entity
            for folded, entity in known.items()
            if re.search(rf"(?<!\w){re.escape(entity['text'])}(?!\w)", query, flags=re.IGNORECASE)
        ]
        answer[key] = sorted(found, key=lambda e: query.casefold().find(e["text"].casefold()))
        changed = True
    return dumps(answer) if changed else content


def batch_items(query: str) -> list[tuple[str, str]]:
    """(number, text) of `[item N]` blocks in the query; empty when it is not a batch."""
    marks = list(ITEM_RE.finditer(query))
    items = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(query)
        items.append((mark.group(1), query[mark.end() : end].strip()))
    return items


def _batch_answer(prompt, labels, items, bias_last) -> Answer:
    values, slots = {}, []
    for number, text in items:
        one = _choose(prompt, labels, text, None, bias_last)
        parsed = parse_json_answer(one.content)
        values[number] = parsed if parsed is not None else one.content.strip()
        slots.extend(one.slots)
    return Answer(dumps({"items": values}), slots, "batch")


def drop_batch_items(answer: Answer, count: int) -> Answer:
    """The batch answer without its last `count` items (a model that skipped some)."""
    items = json.loads(answer.content)["items"]
    kept = dict(list(items.items())[: max(0, len(items) - count)])
    return Answer(dumps({"items": kept}), answer.slots[: len(kept)], "batch")


def answer_chat(
    prompt: ChatPrompt, response_format=None, *, bias_last: bool = False, prior_last: float = 0.0
) -> Answer:
    """The stand-in's answer to a chat prompt that follows the prompt contract."""
    labels = label_set(prompt, response_format)
    items = batch_items(prompt.query)
    if items:
        return _batch_answer(prompt, labels, items, bias_last)
    return _choose(prompt, labels, prompt.query, response_format, bias_last, prior_last)


def parse_chat(messages: list[dict]) -> ChatPrompt:
    """Split messages into system text, (user, assistant) demonstration pairs and the final user query."""
    system = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(rest) if m.get("role") == "user"), default=None)
    query = message_text(rest[last_user].get("content")) if last_user is not None else ""
    before = rest[:last_user] if last_user is not None else rest
    demos, i = [], 0
    while i + 1 < len(before):
        if before[i].get("role") == "user" and before[i + 1].get("role") == "assistant":
            demos.append((message_text(before[i].get("content")), message_text(before[i + 1].get("content"))))
            i += 2
        else:  # an unpaired message is not a demonstration; skip it
            i += 1
    return ChatPrompt(system, demos, query)


# ----------------------------------------------------------------- fault shapes


def _replace_labels(value, labels: set):
    """Copy of a parsed answer with every label value replaced by the out-of-set label; and a count."""
    if isinstance(value, str):
        return (OUT_OF_SET_LABEL, 1) if value in labels else (value, 0)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            out[k], n = _replace_labels(v, labels)
            total += n
        return out, total
    if isinstance(value, list):
        pairs = [_replace_labels(v, labels) for v in value]
        total = sum(n for _, n in pairs)
        items = [v for v, _ in pairs]
        if total and all(isinstance(v, str) for v in items):
            items = list(dict.fromkeys(items))  # ["a", "b"] -> ["NOT_A_LABEL"], not twice
        return items, total
    return value, 0


def to_out_of_set(answer: Answer, labels: list[str]) -> Answer:
    """The same answer shape with the label(s) replaced by NOT_A_LABEL."""
    dist = with_extra_label(answer.slots[0][1] if answer.slots else {}, OUT_OF_SET_LABEL)
    parsed = parse_json_answer(answer.content)
    if parsed is None:
        return Answer(OUT_OF_SET_LABEL, [(OUT_OF_SET_LABEL, dist)], "out_of_set")
    replaced, count = _replace_labels(parsed, set(labels) | {label for label, _ in answer.slots})
    if not count and isinstance(replaced, dict):
        replaced["label"] = OUT_OF_SET_LABEL
    content = dumps(replaced)
    slots = [(OUT_OF_SET_LABEL, dist)] * content.count(dumps(OUT_OF_SET_LABEL))
    return Answer(content, slots, "out_of_set")


def to_malformed(answer: Answer, json_wanted: bool) -> Answer:
    """Broken JSON (cut inside the label) when JSON was expected, else garbage text."""
    content = answer.content.strip()
    label = answer.slots[0][0] if answer.slots else ""
    if parse_json_answer(content) is not None:
        start = content.find(dumps(label)) if label else -1
        # Any proper prefix of a JSON object/array is invalid JSON.
        cut = start + 1 + min(3, len(label)) if start >= 0 else max(1, len(content) // 2)
        return Answer(content[:cut], [], "malformed")
    if json_wanted:
        return Answer('{"label": "' + (label or "x")[:3], [], "malformed")
    return Answer(GARBAGE_TEXT, [], "malformed")


# --------------------------------------------------------------------- logprobs


def _label_needles(label: str) -> list[str]:
    # Demos may carry raw or \u-escaped non-ASCII; try both spellings.
    return list(dict.fromkeys([json.dumps(label, ensure_ascii=False)[1:-1], json.dumps(label)[1:-1]]))


def split_answer_tokens(content: str, slots) -> list[tuple[str, tuple | None]]:
    """Tokens of an answer; each label value is ONE token (quotes go to the neighbours).

    e.g. '{"label": "positive"}' -> '{"label": "', 'positive', '"}'.
    Plain text is a single token. Returns (token, slot-or-None) pairs.
    """
    if not content:
        return []
    if not slots or parse_json_answer(content) is None:
        return [(content, slots[0] if slots else None)]
    tokens: list[tuple[str, tuple | None]] = []
    pos = 0
    for slot in slots:
        found = [(content.find('"' + n + '"', pos), n) for n in _label_needles(slot[0])]
        found = [(i, n) for i, n in found if i >= 0]
        if not found:
            continue
        start, needle = min(found)
        if content[pos : start + 1]:
            tokens.append((content[pos : start + 1], None))
        tokens.append((needle, slot))
        pos = start + 1 + len(needle)
    if content[pos:]:
        tokens.append((content[pos:], None))
    return tokens


def _token_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def ranked_labels(label: str, dist: LogDist) -> list[tuple[str, float]]:
    """The chosen label first, then the others most probable first."""
    dist = with_extra_label(dist, label)
    # Stable sort: equally likely labels keep the label-set order.
    others = sorted(((lb, lp) for lb, lp in dist.items() if lb != label), key=lambda pair: -pair[1])
    return [(label, dist[label])] + others


def chat_logprobs(answer: Answer, top_k: int) -> list[dict]:
    """OpenAI chat `logprobs.content` for the answer: label tokens carry the label distribution."""
    entries = []
    for token, slot in split_answer_tokens(answer.content, answer.slots):
        if slot is None:  # structural tokens are certain
            entry = _token_entry(token, 0.0)
            entry["top_logprobs"] = [_token_entry(token, 0.0)][:top_k]
        else:
            ranked = ranked_labels(slot[0], slot[1])
            entry = _token_entry(token, ranked[0][1])
            top = [_token_entry(token, ranked[0][1])] + [_token_entry(lb, lp) for lb, lp in ranked[1:]]
            entry["top_logprobs"] = top[:top_k]
        entries.append(entry)
    return entries


def completion_logprobs(answer: Answer, top_k: int, offset: int) -> dict:
    """Legacy completions logprobs for a one-token ' LABEL' answer."""
    if not answer.content:
        return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    if answer.slots:
        ranked = ranked_labels(answer.slots[0][0], answer.slots[0][1])
        top = {answer.content: ranked[0][1]}
        top.update({" " + lb: lp for lb, lp in ranked[1:]})
        logprob = ranked[0][1]
    else:
        top, logprob = {answer.content: 0.0}, 0.0
    return {
        "tokens": [answer.content],
        "token_logprobs": [logprob],
        "top_logprobs": [dict(list(top.items())[:top_k])],
        "text_offset": [offset],
    }


# --------------------------------------------------------- legacy completions


def parse_completion_prompt(prompt: str) -> ChatPrompt:
    """Parse `TEXT [SEP] The label of the above text is LABEL` blocks; the unlabeled last one is the query."""
    demos, query, header, end = [], "", "", 0
    for n, match in enumerate(COMPLETION_SEGMENT_RE.finditer(prompt)):
        text, label = match.group(1).strip(), match.group(2).strip()
        end = match.end()
        if n == 0 and "\n\n" in text:  # leading paragraphs are instructions, not the first demo
            header, text = text.rsplit("\n\n", 1)
            text = text.strip()
        text = re.sub(r"\s*\[SEP\]\s*$", "", text)
        if label:
            demos.append((text, label))
        else:
            query = text
    if not demos and not query:
        query = prompt[end:].strip()
    return ChatPrompt(header, demos, query)


def answer_completion(prompt: str, *, bias_last: bool = False) -> Answer:
    """' LABEL' for a classic completion prompt, by the same nearest-demonstration rule."""
    parsed = parse_completion_prompt(prompt)
    labels = allowed_labels(prompt) or label_set(parsed)
    chosen = _choose(parsed, labels, parsed.query, None, bias_last)
    label = chosen.content.strip()
    return Answer(" " + label if label else "", chosen.slots[:1], chosen.kind, chosen.demo_index)


# ------------------------------------------------------------------ embeddings


def _bucket(feature: str, dims: int) -> tuple[int, float]:
    # hashlib, not hash(): Python's str hash is salted per process.
    digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")
    return digest % dims, (1.0 if (digest >> 32) & 1 else -1.0)


def embed(text: str, dims: int = EMBED_DIMS) -> list[float]:
    """Deterministic L2-normalized hashed bag of words (+ lighter char 3-grams)."""
    return embed_words(words(text), dims)


def embed_words(tokens: list[str], dims: int = EMBED_DIMS) -> list[float]:
    vector = [0.0] * dims
    for word in tokens:
        for index, weight in _word_features(word, dims):
            vector[index] += weight
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


@lru_cache(maxsize=200_000)
def _word_features(word: str, dims: int) -> tuple[tuple[int, float], ...]:
    # Cached per word: the same demonstrations come back in every request of a benchmark.
    index, sign = _bucket("w:" + word, dims)
    features = [(index, sign)]
    padded = f"#{word}#"
    for i in range(len(padded) - 2):
        index, sign = _bucket("c:" + padded[i : i + 3], dims)
        features.append((index, sign * TRIGRAM_WEIGHT))
    return tuple(features)


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
