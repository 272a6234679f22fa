"""Embedding-based demonstration selection: LLMClient.embed over HTTP, the Redis vector cache, the batching
embedder, cosine top-k and maximal marginal relevance, and the selector built on them."""

import numpy as np
import pytest

from backend.devtools.fake_llm import answers
from backend.labeling.examples import Example
from backend.labeling.similarity import cosine_top_k, mmr
from backend.model import local_embeddings
from backend.model.client import LLMClient
from backend.model.embeddings import (
    VECTOR_TTL,
    Embedder,
    EmbeddingSelector,
    MemoryVectorCache,
    MissingEmbeddings,
    VectorCache,
    embedder_for,
    similarity_model,
    text_key,
)
from backend.model.errors import LLMError
from tests.conftest import llm_settings

MODEL = "fake-embed"

TOPICS = [
    "the weather report says rain tomorrow",
    "stock prices fell sharply on monday",
    "a new phone was released today",
    "the football match ended in a draw",
    "cook the pasta for ten minutes",
    "the train to boston is delayed",
    "our team shipped the quarterly release",
    "please reset my account password",
    "the museum opens at nine",
    "a quiet walk along the river",
    "zebra herds cross the grassland",
    "the printer on floor two is jammed",
    "electricity bills went up again",
    "the concert was sold out",
    "new tax rules start in april",
    "my package arrived damaged",
    "quokka photos from rottnest island",
    "the library extended its hours",
    "the bridge will close for repairs",
    "a recipe for lemon cake",
]
DUPLICATES = [
    "zebra quokka migration across the savanna",
    "the zebra quokka migration across the savanna",
    "zebra quokka migration across the wide savanna",
]
DIVERSE = [
    "zebra stripes help them hide",
    "quokka families on rottnest island",
    "seasonal migration of wild animals",
    "the savanna at dusk",
    "stock prices fell sharply",
    "reset my password please",
    "the train is delayed",
]


def client_for(fake, sleeps=None, **overrides) -> LLMClient:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return LLMClient(llm_settings(fake, **overrides), sleep=sleep)


def examples(texts) -> list[Example]:
    return [Example(text=t, labels=("x",), ref=str(i)) for i, t in enumerate(texts)]


def embedding_requests(fake) -> list[dict]:
    return [r for r in fake.requests() if r["path"] == "/v1/embeddings"]


# ---- LLMClient.embed ----------------------------------------------------------------------------


def test_embed_returns_one_vector_per_text_in_order_and_records_usage(fake_llm):
    client = client_for(fake_llm)
    texts = ["a cat sat on the mat", "stock prices fell", "a cat sat on the mat!", "zebra"]
    vectors, tokens = client.embed(texts, MODEL)
    assert len(vectors) == 4
    for text, vector in zip(texts, vectors):
        assert vector == pytest.approx(answers.embed(text), abs=1e-6)
    assert tokens == sum(answers.count_tokens(t) for t in texts) == fake_llm.stats()["prompt_tokens"]
    assert client.usage.as_dict() == {"requests": 1, "prompt_tokens": tokens, "completion_tokens": 0}
    body = embedding_requests(fake_llm)[0]["body"]
    assert body == {"model": MODEL, "input": texts, "encoding_format": "float"}


def test_embed_retries_like_chat_and_honours_retry_after(fake_llm):
    fake_llm.configure(rate_429=0.5, retry_after=0.01, seed=3)
    sleeps: list[float] = []
    client = client_for(fake_llm, sleeps)
    for i in range(10):
        vectors, _ = client.embed([f"text number {i}"], MODEL)
        assert vectors[0] == pytest.approx(answers.embed(f"text number {i}"), abs=1e-6)
    stats = fake_llm.stats()
    assert stats["faults"].get("429", 0) > 0
    assert client.usage.requests == stats["requests"] == 10 + stats["faults"]["429"]  # one per HTTP call
    assert sleeps and all(s == pytest.approx(0.01) for s in sleeps)  # Retry-After, not blind backoff


def test_embed_raises_llm_error_when_every_retry_fails(fake_llm):
    fake_llm.configure(rate_500=1.0)
    client = client_for(fake_llm, max_retries=2)
    with pytest.raises(LLMError) as caught:
        client.embed(["anything"], MODEL)
    assert caught.value.kind == "server_error"
    assert client.usage.requests == fake_llm.stats()["requests"] == 3


def test_embedding_no_texts_costs_no_request(fake_llm):
    assert client_for(fake_llm).embed([], MODEL) == ([], 0)
    assert fake_llm.stats()["requests"] == 0


# ---- VectorCache ---------------------------------------------------------------------------------


def test_vector_cache_round_trips_float32_vectors_with_a_ttl(redis_conn):
    cache = VectorCache(redis_conn)
    vectors = [[0.1, -0.2, 0.3], [1.0, 2.5, -3.25]]
    cache.put_many(MODEL, ["first", "second"], vectors)
    got = cache.get_many(MODEL, ["second", "missing", "first"])
    assert got[1] is None
    assert got[0].dtype == np.float32 and got[2].dtype == np.float32
    np.testing.assert_array_equal(got[0], np.array(vectors[1], dtype=np.float32))
    np.testing.assert_array_equal(got[2], np.array(vectors[0], dtype=np.float32))
    assert len(redis_conn.get(text_key(MODEL, "first"))) == 3 * 4  # float32 bytes, not JSON
    ttl = redis_conn.ttl(text_key(MODEL, "first"))
    assert VECTOR_TTL - 60 < ttl <= VECTOR_TTL
    assert cache.get_many("another-model", ["first"]) == [None]  # keyed per embedding model
    assert cache.get_many(MODEL, []) == []


def test_the_vector_cache_keeps_at_most_its_bound_and_drops_the_oldest(redis_conn):
    cache = VectorCache(redis_conn, max_entries=3)
    for n in range(5):
        cache.put_many(MODEL, [f"text {n}"], [[float(n), 1.0]])
    assert cache.size() == 3
    found = cache.get_many(MODEL, [f"text {n}" for n in range(5)])
    assert [v is not None for v in found] == [False, False, True, True, True]
    assert len(list(redis_conn.scan_iter(f"{text_key(MODEL, '')[:-64]}*"))) == 3  # the keys went too


def test_the_in_process_cache_uses_the_same_keys_and_drops_the_least_recently_used():
    cache = MemoryVectorCache(max_entries=2)
    cache.put_many(MODEL, ["a", "b"], [[1.0], [2.0]])
    cache.get_many(MODEL, ["a"])  # "a" is used again: "b" is now the oldest
    cache.put_many(MODEL, ["c"], [[3.0]])
    assert [v is not None for v in cache.get_many(MODEL, ["a", "b", "c"])] == [True, False, True]
    assert cache.get_many("other", ["a"]) == [None] and cache.size() == 2


def test_embedding_model_names_pick_the_local_model_tfidf_or_the_server(fake_llm):
    client = client_for(fake_llm)
    local = similarity_model("")
    assert local == similarity_model("local") == local_embeddings.model_id()
    assert (
        similarity_model("tfidf") == "tfidf" and similarity_model("text-embedding-3-small") == "text-embedding-3-small"
    )
    assert embedder_for("tfidf", client, MemoryVectorCache()) is None
    assert embedder_for(local, client, MemoryVectorCache()).source is local_embeddings.shared()
    assert embedder_for(MODEL, client, MemoryVectorCache()).source is client
    web = embedder_for(local, None, MemoryVectorCache())  # the web process never embeds, not even locally
    assert not web.embeds
    with pytest.raises(MissingEmbeddings):
        web.vectors(["not cached"])


# ---- Embedder ------------------------------------------------------------------------------------


def test_embedder_embeds_each_text_once(fake_llm, redis_conn):
    cache = VectorCache(redis_conn)
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    first = Embedder(client_for(fake_llm), cache, MODEL).vectors(texts)
    requests = embedding_requests(fake_llm)
    assert len(requests) == 1 and requests[0]["body"]["input"] == ["alpha beta", "gamma delta", "epsilon"]
    np.testing.assert_array_equal(first[0], first[2])
    for text, vector in zip(texts, first):
        np.testing.assert_allclose(vector, answers.embed(text), atol=1e-6)

    again = Embedder(client_for(fake_llm), cache, MODEL).vectors(texts + ["zeta"])  # another process, same Redis
    assert [r["body"]["input"] for r in embedding_requests(fake_llm)[1:]] == [["zeta"]]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    Embedder(client_for(fake_llm), cache, MODEL).vectors(texts + ["zeta"])
    assert fake_llm.stats()["requests"] == 2


def test_embedder_batches(fake_llm, redis_conn):
    texts = [f"document {i} about topic {i % 7}" for i in range(250)]
    vectors = Embedder(client_for(fake_llm), VectorCache(redis_conn), MODEL, batch_size=100).vectors(texts)
    assert len(vectors) == 250
    assert fake_llm.stats()["requests"] == 3
    assert [len(r["body"]["input"]) for r in embedding_requests(fake_llm)] == [100, 100, 50]
    np.testing.assert_allclose(vectors[123], answers.embed(texts[123]), atol=1e-6)


def test_cached_never_calls_the_network(fake_llm, redis_conn):
    cache = VectorCache(redis_conn)
    embedder = Embedder(client_for(fake_llm), cache, MODEL)
    assert embedder.cached(["not embedded yet"]) == [None]
    assert fake_llm.stats()["requests"] == 0
    embedder.vectors(["embedded"])
    got = embedder.cached(["embedded", "not embedded yet"])
    assert got[1] is None and got[0] is not None
    assert fake_llm.stats()["requests"] == 1


def test_an_embedder_without_client_serves_cached_vectors_and_refuses_missing_ones(fake_llm, redis_conn):
    cache = VectorCache(redis_conn)
    Embedder(client_for(fake_llm), cache, MODEL).vectors(["known"])
    web = Embedder(None, cache, MODEL)
    assert len(web.vectors(["known"])) == 1
    with pytest.raises(MissingEmbeddings) as caught:
        web.vectors(["known", "unknown", "unknown"])
    assert caught.value.missing == 1
    assert fake_llm.stats()["requests"] == 1


# ---- similarity ----------------------------------------------------------------------------------


def test_cosine_top_k_ranks_by_cosine_not_dot_product():
    vectors = [[10.0, 0.0], [0.6, 0.8], [0.0, -1.0], [1.0, 1.0]]
    assert cosine_top_k([0.0, 1.0], vectors, 2) == [1, 3]  # row 0 has the biggest norm, not the best angle
    assert cosine_top_k([0.0, 1.0], vectors, 10) == [1, 3, 0, 2]
    assert cosine_top_k([0.0, 1.0], [], 3) == []


def test_ties_go_to_the_lower_index_every_time():
    vectors = [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0]]
    for _ in range(3):
        assert cosine_top_k([1.0, 0.0], vectors, 3) == [0, 2, 4]
        assert cosine_top_k([1.0, 1.0], vectors, 5) == [0, 1, 2, 3, 4]
        assert mmr([1.0, 1.0], vectors, 2, lambda_=1.0) == [0, 1]
        assert mmr([1.0, 0.0], vectors, 2) == [0, 1]  # the duplicates at 2 and 4 lose to diversity
    many = [[1.0, 0.0], [0.0, 1.0]] * 100  # enough equal scores for an unstable sort to shuffle them
    assert cosine_top_k([1.0, 0.0], many, 10) == list(range(0, 20, 2))
    assert mmr([1.0, 0.0], many, 3, lambda_=1.0) == [0, 2, 4]


def test_mmr_by_hand():
    vectors = [[1.0, 0.0], [0.99, 0.141], [0.6, 0.8]]
    q = [0.95, 0.312]
    assert cosine_top_k(q, vectors, 2) == [1, 0]
    assert mmr(q, vectors, 2, lambda_=1.0) == [1, 0]  # pure relevance
    assert mmr(q, vectors, 2, lambda_=0.5) == [1, 2]  # 0 is nearly 1 again
    assert mmr(q, vectors, 3, lambda_=0.5) == [1, 2, 0]
    with pytest.raises(ValueError):
        mmr(q, vectors, 2, lambda_=1.5)


# ---- EmbeddingSelector ---------------------------------------------------------------------------


def test_the_direction_every_demonstration_shares_does_not_decide_which_is_nearest():
    # Every vector leans the same way (what averaged sentence vectors do); the generic last one is closest
    # to the query by raw cosine, the first shares the query's own part.
    pool = [Example(t, (t,), "seed", str(i)) for i, t in enumerate(["shares", "other", "third", "generic"])]
    vectors = np.array([[5, 3, 0, 0], [5, 0, 3, 0], [5, 0, 0, 3], [5, 0, 0, 0]], dtype=np.float32)
    query = np.array([5, 1.2, 0, 0], dtype=np.float32)
    assert cosine_top_k(query, vectors, 1) == [3]
    assert EmbeddingSelector(pool, 1, vectors).select("q", query)[0].text == "shares"


@pytest.fixture
def embedder(fake_llm, redis_conn):
    return Embedder(client_for(fake_llm), VectorCache(redis_conn), MODEL)


def test_nearest_k_puts_the_demonstrations_sharing_rare_words_last(embedder):
    pool = examples(TOPICS)
    selector = EmbeddingSelector(pool, 4, embedder.vectors(TOPICS))
    query = "zebra herds and quokka photos"
    chosen = selector.select(query, embedder.vectors([query])[0])
    assert len(chosen) == 4 and selector.fixed is False
    assert [e.text for e in chosen[-2:]] == ["quokka photos from rottnest island", "zebra herds cross the grassland"]
    other = "quokka photos of zebra herds at rottnest"  # closer to the quokka one: it moves to the end
    assert [e.text for e in selector.select(other, embedder.vectors([other])[0])[-2:]] == [
        "zebra herds cross the grassland",
        "quokka photos from rottnest island",
    ]


def test_mmr_avoids_near_duplicates_that_nearest_k_takes(embedder):
    texts = DUPLICATES + DIVERSE
    pool, vectors = examples(texts), embedder.vectors(texts)
    query = "zebra quokka migration on the savanna"
    qv = embedder.vectors([query])[0]
    nearest = EmbeddingSelector(pool, 3, vectors).select(query, qv)
    assert {e.text for e in nearest} == set(DUPLICATES)
    diverse = EmbeddingSelector(pool, 3, vectors, strategy="mmr-k").select(query, qv)
    assert len(diverse) == 3 and sum(e.text in DUPLICATES for e in diverse) == 1
    assert diverse[-1].text == DUPLICATES[0]  # the most relevant still sits next to the query
    all_relevance = EmbeddingSelector(pool, 3, vectors, strategy="mmr-k", lambda_=1.0).select(query, qv)
    assert all_relevance == nearest


def test_selector_ties_are_deterministic_and_the_pool_order_breaks_them(embedder):
    texts = ["same words here"] * 5 + ["something else entirely"]
    pool = examples(texts)
    vectors = embedder.vectors(texts)
    for strategy in ("nearest-k", "mmr-k"):
        selector = EmbeddingSelector(pool, 3, vectors, strategy=strategy, lambda_=1.0)
        picks = [[e.ref for e in selector.select("same words here", vectors[0])] for _ in range(3)]
        assert picks == [["2", "1", "0"]] * 3


def test_selector_checks_its_inputs():
    pool = examples(["a", "b"])
    with pytest.raises(ValueError):
        EmbeddingSelector(pool, 2, [[1.0, 0.0]])  # one vector short
    with pytest.raises(ValueError):
        EmbeddingSelector(pool, 2, [[1.0, 0.0], None])  # not embedded yet
    with pytest.raises(ValueError):
        EmbeddingSelector(pool, 2, [[1.0, 0.0], [0.0, 1.0]], strategy="tf-idf")
    selector = EmbeddingSelector(pool, 5, np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        selector.select("a")  # the query's vector is required
    assert [e.text for e in selector.select("b", [0.1, 0.9])] == ["a", "b"]  # k larger than the pool: all of it
    assert EmbeddingSelector([], 3, []).select("x", [1.0]) == []
