"""Tests of the fake OpenAI-compatible LLM stand-in, driven through the real `openai` client over HTTP."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request

import openai
import pytest

from backend.devtools.fake_llm import FakeLLM, KnobError, main, spawn_fake_llm

LABELS = ["sports", "politics", "technology", "cooking"]
SYSTEM = "Classify the text into one topic.\nAllowed labels: " + "; ".join(LABELS)

# Two demonstrations per label; the topic words never include the label name,
# so a zero-shot guess (label-name overlap) has nothing to go on.
DEMOS = [
    ("the striker scored a late goal and the team won the match", "sports"),
    ("the referee stopped the league match after the coach protested", "sports"),
    ("parliament passed the tax bill after a long senate vote", "politics"),
    ("the minister resigned before the election campaign started", "politics"),
    ("the new laptop ships with a faster chip and more memory", "technology"),
    ("engineers released a software update that fixes the browser crash", "technology"),
    ("simmer the garlic sauce and season the pasta with basil", "cooking"),
    ("bake the bread dough in a hot oven until the crust is golden", "cooking"),
]
QUERIES = [
    ("the goal came late in the match", "sports"),
    ("the coach praised the team after the league win", "sports"),
    ("the referee showed the striker a red card", "sports"),
    ("a second goal sealed the match for the team", "sports"),
    ("fans watched the league match with the coach", "sports"),
    ("the senate vote on the bill failed", "politics"),
    ("the minister defended the tax bill in parliament", "politics"),
    ("the election campaign hurt the minister", "politics"),
    ("parliament debated the election rules", "politics"),
    ("a senate vote will decide the tax plan", "politics"),
    ("the laptop chip runs hot", "technology"),
    ("the browser update fixes a memory leak", "technology"),
    ("engineers shipped new software for the chip", "technology"),
    ("the software crash hit the browser again", "technology"),
    ("more memory makes the laptop faster", "technology"),
    ("season the sauce with garlic", "cooking"),
    ("the bread crust came out golden from the oven", "cooking"),
    ("add basil to the pasta sauce", "cooking"),
    ("let the dough rest before you bake it", "cooking"),
    ("simmer the pasta sauce slowly", "cooking"),
]
LABEL_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "topic",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": LABELS}},
            "required": ["label"],
            "additionalProperties": False,
        },
    },
}
BANNER_RE = re.compile(r"^\[FAKE LLM STAND-IN\] listening on http://127\.0\.0\.1:(\d+)/v1$")


def messages(demos, query, system=SYSTEM, json_answers=False):
    """The prompt contract: system + (user, assistant) demonstration pairs + final user query."""
    out = [{"role": "system", "content": system}]
    for text, label in demos:
        answer = json.dumps({"label": label}) if json_answers else label
        out += [{"role": "user", "content": f"Text: {text}\nTopic?"}, {"role": "assistant", "content": answer}]
    return out + [{"role": "user", "content": f"Text: {query}\nTopic?"}]


def client_for(url, **kwargs):
    return openai.OpenAI(base_url=url, api_key="test", max_retries=0, **kwargs)


def ask(client, msgs, **kwargs):
    return client.chat.completions.create(model="any-model", messages=msgs, **kwargs)


def raw_post(url, payload: bytes, headers=None):
    """POST raw bytes; returns (status, headers, parsed body)."""
    request = urllib.request.Request(
        url, data=payload, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def client(fake):
    return client_for(fake.url)


# ------------------------------------------------------------------ answers


def test_text_mode_answers_nearest_demonstration_and_is_marked_stand_in(fake, client):
    raw = client.chat.completions.with_raw_response.create(
        model="any-model", messages=messages(DEMOS, "the minister lost the senate vote")
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "politics"
    assert raw.headers["x-fake-llm"] == "stand-in"
    assert completion.system_fingerprint == "fake-llm-stand-in"
    assert ask(client, messages(DEMOS, "garlic and basil in the sauce")).choices[0].message.content == "cooking"
    # Identical demonstration texts tie: the later demonstration wins.
    tied = [("a plain sentence about things", "sports"), ("a plain sentence about things", "cooking")]
    assert ask(client, messages(tied, "a plain sentence about things")).choices[0].message.content == "cooking"


def test_words_shared_by_all_messages_weigh_nothing(client):
    # Raw word counts would pick the first demo (four shared "the"); words in every message weigh nothing.
    demos = [("the the the the report about cats", "cats"), ("the report about dogs", "dogs")]
    msgs = messages(demos, "the the the the report about dogs", system="Pick one.")
    assert ask(client, msgs).choices[0].message.content == "dogs"


def test_json_schema_mode_returns_nearest_demo_json_verbatim(client):
    def answer(query):
        msgs = messages(DEMOS, query, json_answers=True)
        assert msgs[6]["content"] == '{"label": "politics"}'  # the "parliament passed the tax bill" demo
        msgs[6]["content"] = '{"label":"politics"}'  # odd spacing must survive verbatim
        return ask(client, msgs, response_format=LABEL_SCHEMA).choices[0].message.content

    assert answer("engineers fixed the laptop chip") == '{"label": "technology"}'
    assert answer("the tax bill passed parliament") == '{"label":"politics"}'


def test_zero_shot_uses_hints_and_shapes_answer_from_schema(client):
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "schema": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "enum": LABELS},
                    "tags": {"type": "array", "items": {"type": "string", "enum": LABELS}},
                    "note": {"type": "string"},
                    "score": {"type": "number", "minimum": 1},
                },
            },
        },
    }
    system = "Classify the text.\n- cooking: recipes and ovens\n- sports: matches and goals"
    content = (
        ask(client, messages([], "my ovens broke", system=system), response_format=schema).choices[0].message.content
    )
    assert json.loads(content) == {"label": "cooking", "tags": ["cooking"], "note": "", "score": 1}
    # No overlap at all -> the first allowed label, plain text without a schema.
    assert ask(client, messages([], "zzz qqq")).choices[0].message.content == "sports"


def test_demonstrations_beat_zero_shot(client):
    def accuracy(demos):
        hits = sum(ask(client, messages(demos, q)).choices[0].message.content == gold for q, gold in QUERIES)
        return hits / len(QUERIES)

    few_shot, zero_shot = accuracy(DEMOS), accuracy([])
    assert few_shot >= 0.8
    assert few_shot > zero_shot + 0.3


def test_logprobs_shape_and_chosen_label_is_most_probable(client):
    completion = ask(
        client,
        messages(DEMOS, "the striker missed the goal", json_answers=True),
        response_format=LABEL_SCHEMA,
        logprobs=True,
        top_logprobs=4,
    )
    content = completion.choices[0].message.content
    tokens = completion.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == content
    assert [t.token for t in tokens] == ['{"label": "', "sports", '"}']
    label_token = tokens[1]
    assert label_token.bytes == list(b"sports")
    tops = label_token.top_logprobs
    assert [t.token for t in tops][0] == "sports" and sorted(t.token for t in tops) == sorted(LABELS)
    assert label_token.logprob == tops[0].logprob == max(t.logprob for t in tops)
    assert math.exp(tops[0].logprob) > 0.6  # exp(s / 0.1): a clear match dominates
    # Labels without a similar demonstration get far less (only character 3-grams overlap).
    assert max(t.logprob for t in tops[1:]) < tops[0].logprob - 2
    assert [t.logprob for t in tops[1:]] == sorted((t.logprob for t in tops[1:]), reverse=True)
    assert math.isclose(sum(math.exp(t.logprob) for t in tops), 1.0, rel_tol=1e-6)
    assert tokens[0].logprob == 0.0 and tokens[2].logprob == 0.0
    # Plain text: the whole answer is one token; default k=5 capped by the 4 labels; k limits the list.
    plain = ask(client, messages(DEMOS, "the oven was hot"), logprobs=True).choices[0].logprobs.content
    assert len(plain) == 1 and plain[0].token == "cooking" and len(plain[0].top_logprobs) == 4
    two = ask(client, messages(DEMOS, "the oven was hot"), logprobs=True, top_logprobs=2)
    assert len(two.choices[0].logprobs.content[0].top_logprobs) == 2


def test_batch_items_answer_each_item(client):
    query = (
        "Label every item.\n[item 1] the referee and the coach argued\n"
        "[item 2] the senate vote on the tax bill\n[item 3] bake the dough in the oven\n"
    )
    msgs = messages(DEMOS, "x", json_answers=True)
    msgs[-1]["content"] = query
    content = ask(client, msgs).choices[0].message.content
    assert json.loads(content) == {
        "items": {"1": {"label": "sports"}, "2": {"label": "politics"}, "3": {"label": "cooking"}}
    }
    msgs = messages(DEMOS, "x")
    msgs[-1]["content"] = query
    assert json.loads(ask(client, msgs).choices[0].message.content) == {
        "items": {"1": "sports", "2": "politics", "3": "cooking"}
    }


def test_completions_endpoint_classic_template(client):
    blocks = [f"{text} [SEP] The label of the above text is {label}" for text, label in DEMOS]
    prompt = (
        "Classify each text.\n\n"
        + "\n\n".join(blocks)
        + "\n\nthe browser crash needs a software fix [SEP] The label of the above text is"
    )
    completion = client.completions.create(model="any-model", prompt=prompt, logprobs=3)
    choice = completion.choices[0]
    assert choice.text == " technology"
    assert choice.logprobs.tokens == [" technology"]
    assert list(choice.logprobs.top_logprobs[0])[0] == " technology"
    assert len(choice.logprobs.top_logprobs[0]) == 3
    assert choice.logprobs.token_logprobs[0] == max(choice.logprobs.top_logprobs[0].values())
    assert choice.logprobs.text_offset == [len(prompt)]
    assert completion.usage.completion_tokens == 1 and completion.usage.prompt_tokens > 50


def test_completions_answer_each_prompt_of_a_list_and_ignore_echo(client):
    blocks = "\n\n".join(f"{text} [SEP] The label of the above text is {label}" for text, label in DEMOS)
    prompts = [
        f"{blocks}\n\n{query} [SEP] The label of the above text is"
        for query in ("the browser crash needs a software fix", "the striker scored a goal in the match")
    ]
    completion = client.completions.create(model="any-model", prompt=prompts, echo=True, logprobs=1, max_tokens=1)
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.text for c in completion.choices] == [" technology", " sports"]  # no echo: the stand-in lacks it


def test_embeddings_similarity_and_determinism(fake, client):
    texts = ["the cat sat on the mat", "a cat sat on a mat", "stock markets fell sharply today"]
    data = client.embeddings.create(model="emb", input=texts, encoding_format="float")
    vectors = [d.embedding for d in data.data]
    assert [len(v) for v in vectors] == [256] * 3
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-9) for v in vectors)
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-9)
    assert cosine(vectors[0], vectors[1]) > 0.5 > cosine(vectors[0], vectors[2])
    # The client's default asks for base64 (float32): same vector up to float32 precision.
    again = client.embeddings.create(model="emb", input=texts[0]).data[0].embedding
    assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(again, vectors[0]))
    assert again != vectors[0]  # really went through the float32 base64 path
    assert data.usage.prompt_tokens == data.usage.total_tokens == 6 + 6 + 5


def test_models_lists_default_and_seen_models(client):
    ask(client, messages(DEMOS, "a goal"))
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "fake-llm" and "any-model" in ids


# ------------------------------------------------------------------- faults


def test_429_with_retry_after_visible_to_client():
    with FakeLLM(rate_429=1.0, retry_after=2) as fake:
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client_for(fake.url), messages(DEMOS, "a goal"))
        headers = caught.value.response.headers
        assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
        assert headers["x-fake-llm"] == "stand-in"
        assert fake.stats()["faults"] == {"429": 1} and fake.stats()["by_status"] == {"429": 1}


def test_500_fault():
    with FakeLLM(rate_500=1.0) as fake:
        with pytest.raises(openai.InternalServerError):
            ask(client_for(fake.url), messages(DEMOS, "a goal"))
        assert fake.requests()[-1]["status"] == 500


def test_malformed_answers():
    with FakeLLM(rate_malformed=1.0) as fake:
        client = client_for(fake.url)
        content = (
            ask(client, messages(DEMOS, "a goal", json_answers=True), response_format=LABEL_SCHEMA)
            .choices[0]
            .message.content
        )
        assert content.startswith('{"label": "')
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)
        plain = ask(client, messages(DEMOS, "a goal")).choices[0].message.content
        assert plain not in LABELS and plain.strip() and not plain.startswith("{")


def test_out_of_set_answers_keep_the_shape():
    with FakeLLM(rate_out_of_set=1.0) as fake:
        client = client_for(fake.url)
        completion = ask(client, messages(DEMOS, "a goal", json_answers=True), logprobs=True)
        assert json.loads(completion.choices[0].message.content) == {"label": "NOT_A_LABEL"}
        assert completion.choices[0].logprobs.content[1].token == "NOT_A_LABEL"
        assert ask(client, messages(DEMOS, "a goal")).choices[0].message.content == "NOT_A_LABEL"


def test_hang_makes_the_client_time_out():
    with FakeLLM(rate_hang=1.0, hang_s=5) as fake:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            ask(client_for(fake.url, timeout=0.3), messages(DEMOS, "a goal"))
        assert time.monotonic() - started < 2
        # Per-request override back to no hang: the normal answer comes at once.
        answer = ask(
            client_for(fake.url, timeout=2), messages(DEMOS, "a goal"), extra_headers={"X-Fake-Rate-Hang": "0"}
        )
        assert answer.choices[0].message.content == "sports"


def test_per_request_knobs_from_header_and_query_string(fake, client):
    with pytest.raises(openai.RateLimitError):
        ask(client, messages(DEMOS, "a goal"), extra_headers={"X-Fake-Rate-429": "1"})
    assert ask(client, messages(DEMOS, "a goal")).choices[0].message.content == "sports"
    body = json.dumps({"model": "m", "messages": messages(DEMOS, "a goal")}).encode()
    status, _, _ = raw_post(fake.url + "/chat/completions?rate_500=1", body)
    assert status == 500
    status, _, error = raw_post(fake.url + "/chat/completions", body, {"X-Fake-No-Such-Knob": "1"})
    assert status == 400 and "no_such_knob" in error["error"]["message"]
    assert fake.stats()["config"]["rate_429"] == 0.0  # overrides never leak into the config


def test_latency_knob_delays_answers():
    with FakeLLM(latency_ms=150) as fake:
        started = time.monotonic()
        ask(client_for(fake.url), messages(DEMOS, "a goal"))
        assert time.monotonic() - started >= 0.14
        started = time.monotonic()
        ask(client_for(fake.url), messages(DEMOS, "a goal"), extra_headers={"X-Fake-Latency-Ms": "0"})
        assert time.monotonic() - started < 0.14


def test_bias_last_answers_the_last_demonstration():
    query = "the striker scored a goal"  # nearest: sports; the last demo is cooking
    with FakeLLM(bias="last", bias_strength=1.0) as fake:
        client = client_for(fake.url)
        assert ask(client, messages(DEMOS, query)).choices[0].message.content == "cooking"
        fake.configure(bias_strength=0.0)
        assert ask(client, messages(DEMOS, query)).choices[0].message.content == "sports"
        fake.configure(bias_strength=0.5)
        answers = [ask(client, messages(DEMOS, query)).choices[0].message.content for _ in range(40)]
        assert 8 <= answers.count("cooking") <= 32 and set(answers) == {"sports", "cooking"}


def test_faults_are_reproducible_with_a_seed():
    def statuses(seed):
        with FakeLLM(rate_500=0.5, seed=seed) as fake:
            client = client_for(fake.url)
            out = []
            for _ in range(12):
                try:
                    ask(client, messages(DEMOS, "a goal"))
                    out.append(200)
                except openai.InternalServerError:
                    out.append(500)
            return out

    first = statuses(3)
    assert first == statuses(3) and {200, 500} <= set(first)
    assert any(statuses(seed) != first for seed in (4, 5))


# ------------------------------------------------------------ stats, control


def test_stats_count_requests_and_tokens(fake, client):
    usages = [ask(client, messages(DEMOS, q)).usage for q, _ in QUERIES[:3]]
    small = ask(client, [{"role": "user", "content": "Hello, world!"}]).usage
    assert small.prompt_tokens == 4 + 4  # Hello , world ! + 4 per message
    stats = fake.stats()
    assert stats["requests"] == 4
    assert stats["by_endpoint"] == {"/v1/chat/completions": 4}
    assert stats["by_status"] == {"200": 4}
    assert stats["prompt_tokens"] == sum(u.prompt_tokens for u in usages) + small.prompt_tokens
    assert stats["completion_tokens"] == sum(u.completion_tokens for u in usages) + small.completion_tokens
    logged = fake.requests()
    assert [r["status"] for r in logged] == [200] * 4
    assert logged[0]["path"] == "/v1/chat/completions" and logged[0]["body"]["model"] == "any-model"
    assert logged[0]["body"]["messages"][-1]["content"].startswith("Text: " + QUERIES[0][0])


def test_max_in_window_and_reset(fake, client):
    for q, _ in QUERIES[:5]:
        ask(client, messages(DEMOS, q))
    client.completions.create(
        model="m", prompt="x [SEP] The label of the above text is a\n\ny [SEP] The label of the above text is"
    )
    client.embeddings.create(model="e", input="not counted in the window")
    stats = fake.stats()
    assert stats["max_in_window"]["60"] == 6 and stats["requests"] == 7
    fake.configure(rate_500=0.25)
    fake.reset()
    stats = fake.stats()
    assert stats["requests"] == 0 and stats["max_in_window"]["60"] == 0 and fake.requests() == []
    assert stats["config"]["rate_500"] == 0.25
    status, _, body = raw_post(fake.url.replace("/v1", "/_fake/reset"), b'{"config": true}')
    assert status == 200 and fake.stats()["config"]["rate_500"] == 0.0


def test_config_endpoint_merges_and_rejects_unknown_knobs(fake):
    control = fake.url.replace("/v1", "/_fake/config")
    status, _, body = raw_post(control, json.dumps({"latency_ms": 5, "bias": "last"}).encode())
    assert status == 200 and body["config"]["latency_ms"] == 5.0 and body["config"]["bias"] == "last"
    status, _, body = raw_post(control, json.dumps({"rate_hang": 0.5}).encode())
    assert body["config"]["latency_ms"] == 5.0 and body["config"]["rate_hang"] == 0.5
    status, _, body = raw_post(control, json.dumps({"no_such": 1}).encode())
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = raw_post(control, json.dumps({"rate_500": 2}).encode())
    assert status == 400


def test_400_on_malformed_requests(fake, client):
    status, headers, body = raw_post(fake.url + "/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    assert headers["X-Fake-LLM"] == "stand-in"
    status, _, body = raw_post(fake.url + "/chat/completions", b'{"model": "m"}')
    assert status == 400 and "messages" in body["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
    assert fake.stats()["by_status"] == {"400": 3}


# --------------------------------------------------------------- subprocess


def test_subprocess_prints_banner_and_marks_responses(fake):
    with spawn_fake_llm(latency_ms=1) as proc:
        assert BANNER_RE.match(proc.banner) and proc.url.endswith(f":{proc.port}/v1")
        raw = client_for(proc.url).chat.completions.with_raw_response.create(
            model="m", messages=messages(DEMOS, "the minister and the election")
        )
        assert raw.headers["x-fake-llm"] == "stand-in" and raw.parse().choices[0].message.content == "politics"
        assert proc.stats()["config"]["latency_ms"] == 1.0  # CLI flag reached the child
        # Embeddings use hashlib, not the per-process salted hash(): same vector in both processes.
        text = "deterministic across processes"
        theirs = client_for(proc.url).embeddings.create(model="e", input=text, encoding_format="float")
        ours = client_for(fake.url).embeddings.create(model="e", input=text, encoding_format="float")
        assert theirs.data[0].embedding == ours.data[0].embedding
    assert proc.popen.returncode == 0  # SIGTERM -> clean exit


def test_subprocess_reads_env_knobs_and_runtime_config():
    with spawn_fake_llm(env={"FAKE_LLM_RATE_500": "1"}) as proc:
        with pytest.raises(openai.InternalServerError):
            ask(client_for(proc.url), messages(DEMOS, "a goal"))
        assert proc.configure(rate_500=0)["rate_500"] == 0.0
        assert ask(client_for(proc.url), messages(DEMOS, "a goal")).choices[0].message.content == "sports"
        assert proc.stats()["by_status"] == {"500": 1, "200": 1}


def test_bad_knobs_are_rejected_before_serving(capsys):
    assert main(["--port", "0", "--rate-500", "2"]) == 2
    assert capsys.readouterr().err.startswith("[FAKE LLM STAND-IN] bad knob: rate_500")
    with pytest.raises(KnobError):
        spawn_fake_llm(bias="first")
    with pytest.raises(KnobError):
        FakeLLM(no_such_knob=1)
