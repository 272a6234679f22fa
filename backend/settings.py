"""Every environment variable the backend reads, in one typed object with defaults.

Settings.from_env() is the only reader of the backend's variables; the FEWSHOT_* variables belong to the
tooling (the Label Studio harness, the demo's start time, the audit) and are read where that tooling lives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from backend.labeling.prompt import DEFAULT_TEMPLATE, MODES, SCORINGS
from backend.labeling.selection import STRATEGIES, TFIDF

CALIBRATIONS = ("none", "contextual")
LOW_SCORE_ACTIONS = ("skip", "flag")


class SettingsError(ValueError):
    """An environment variable holds a value the backend cannot use."""


def redacted(url: str) -> str:
    """A URL without its user:password part, for messages and logs (Redis URLs carry passwords)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


class Secret(str):
    """A string that never shows itself in repr, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "***" if self else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _env(name: str, default: str = "", *, help: str, secret: bool = False):
    return field(default=default, metadata={"env": name, "help": help, "secret": secret, "kind": str})


def _num(name: str, default, kind, *, help: str):
    return field(default=default, metadata={"env": name, "help": help, "kind": kind})


@dataclass(frozen=True)
class Settings:
    """Typed settings; `Settings.from_env()` is the only place that reads the environment."""

    openai_api_key: Secret = _env("OPENAI_API_KEY", help="API key of the OpenAI-compatible server", secret=True)
    openai_base_url: str = _env(
        "OPENAI_BASE_URL",
        help="base URL of an OpenAI-compatible server (vLLM, Ollama, LiteLLM, Azure); empty means api.openai.com",
    )
    model: str = _env("LLM_MODEL", "gpt-4o-mini", help="model name sent with every request")
    answer_mode: str = _env("LLM_ANSWER_MODE", "json", help="json | logprobs | text: how the model states its label")
    timeout: float = _num("LLM_TIMEOUT", 30.0, float, help="seconds before one LLM request is abandoned")
    max_retries: int = _num("LLM_MAX_RETRIES", 5, int, help="retries of a request after 429, 5xx, timeouts")
    answer_retries: int = _num(
        "LLM_ANSWER_RETRIES", 1, int, help="extra requests after an answer that is malformed or outside the label set"
    )
    max_tokens: int = _num("LLM_MAX_TOKENS", 256, int, help="cap on tokens in one answer")
    top_logprobs: int = _num(
        "LLM_TOP_LOGPROBS",
        20,
        int,
        help="alternatives per answer token asked for with logprobs; the score reads them (1-20, the OpenAI limit; 0 "
        "only in json/text mode, where scores are then null)",
    )
    request_logprobs: bool = _num(
        "LLM_REQUEST_LOGPROBS",
        True,
        bool,
        help="ask for logprobs in json/text mode too, for a confidence score; turn off for servers that reject it",
    )
    scoring: str = _env(
        "LLM_SCORING",
        "answer",
        help="answer (the score from the answer's top_logprobs) or echo (every label scored exactly through "
        "/v1/completions with echo and logprobs: vLLM; single-choice configs)",
    )
    prices: str = _env(
        "LLM_PRICES",
        help='price table override, JSON {"model": [input, output]} in USD per 1M tokens, for cost estimates',
    )
    calibration: str = _env(
        "CALIBRATION",
        "none",
        help="none or contextual: in logprobs mode and with echo scoring, divide out the prompt's own bias measured "
        "with content-free inputs (3 extra calls per demonstration set)",
    )
    confidence_samples: int = _num(
        "CONFIDENCE_SAMPLES",
        0,
        int,
        help="when the server gives no logprobs: sample this many extra answers and use their agreement as the score "
        "(0: no score)",
    )
    score_threshold: float = _num(
        "SCORE_THRESHOLD",
        0.0,
        float,
        help="predictions scoring below this are not written, or are flagged (LOW_SCORE_ACTION); 0: off",
    )
    quality_target: float = _num(
        "QUALITY_TARGET",
        0.95,
        float,
        help="accepted-as-is share the live quality figures recommend a score threshold for (GET /quality, threshold "
        "auto, export --min-score auto)",
    )
    auto_threshold_min_reviews: int = _num(
        "AUTO_THRESHOLD_MIN_REVIEWS",
        100,
        int,
        help="scored reviews (annotations compared with the prediction their annotator saw) needed before threshold "
        "auto and --min-score auto use the live recommendation",
    )
    low_score_action: str = _env(
        "LOW_SCORE_ACTION",
        "skip",
        help="skip (no pre-annotation) or flag (written, with a low-confidence note on the region)",
    )
    template: str = _env(
        "PROMPT_TEMPLATE", DEFAULT_TEMPLATE, help="demonstration template; needs {text} and ends with {label}"
    )
    instruction: str = _env("PROMPT_INSTRUCTION", help="extra task instruction placed first in the system message")
    selection: str = _env(
        "DEMO_SELECTION",
        "auto",
        help="which demonstrations a prompt gets: auto (all while they fit comfortably in the token budget, else "
        "nearest-k), all, first-k, balanced-k (k per label), nearest-k or mmr-k",
    )
    selection_k: int = _num(
        "DEMO_K", 8, int, help="k of first-k, balanced-k, nearest-k and mmr-k (and of auto when it picks nearest-k)"
    )
    embedding_model: str = _env(
        "EMBEDDING_MODEL",
        help="what nearest-k and mmr-k compare texts with: empty or local: the bundled local embedding model (no "
        "network, no cost); tfidf: TF-IDF in-process; else an embedding model of the LLM server (/v1/embeddings)",
    )
    vector_cache_max_entries: int = _num(
        "EMBEDDING_CACHE_MAX_ENTRIES",
        200000,
        int,
        help="embedding vectors kept in Redis at most (oldest dropped first; each also expires after 30 days)",
    )
    context_window: int = _num(
        "LLM_CONTEXT_WINDOW",
        0,
        int,
        help="the model's context window in tokens (0: from a table of known models, else 16384)",
    )
    prompt_limit: int = _num(
        "PROMPT_MAX_TOKENS",
        0,
        int,
        help="cap on prompt tokens below the context window (0: context window minus LLM_MAX_TOKENS)",
    )
    batch_size: int = _num(
        "BATCH_SIZE",
        1,
        int,
        help="tasks answered by one LLM request (json mode; items missing or invalid in the answer are asked again "
        "alone)",
    )
    seeds_path: str = _env(
        "SEEDS_PATH", help="seed files or directories (os.pathsep-separated) added to every project's demonstrations"
    )
    concurrency: int = _num("LABEL_CONCURRENCY", 8, int, help="LLM requests in flight at once in one process")
    log_level: str = _env("LOG_LEVEL", "INFO", help="DEBUG, INFO, WARNING or ERROR")
    redis_url: str = _env(
        "REDIS_URL", "redis://127.0.0.1:6379/0", help="Redis for queues, demonstrations and the prediction cache"
    )
    queue_name: str = _env("QUEUE_NAME", "fewshot", help="RQ queue the backend enqueues on and the workers listen to")
    studio_url: str = _env(
        "LABEL_STUDIO_URL",
        help="Label Studio base URL for reading annotations and writing predictions; else the hostname /setup sends",
    )
    studio_api_key: Secret = _env(
        "LABEL_STUDIO_API_KEY",
        help="Label Studio API token (legacy token); else the access_token /setup sends",
        secret=True,
    )
    studio_timeout: float = _num(
        "LABEL_STUDIO_TIMEOUT",
        30.0,
        float,
        help="seconds one Label Studio API call may take; a write-back claim lasts 4 times this",
    )
    write_back_timeout: int = _num(
        "WRITE_BACK_TIMEOUT",
        900,
        int,
        help="seconds the write-back keeps retrying predictions Label Studio does not take (errors, timeouts, refused "
        "token) before it lists them as failed",
    )
    version_policy: str = _env(
        "MODEL_VERSION_POLICY",
        "change",
        help="when model_version moves: change (every demonstration change), every:N (every N changes) or training "
        "(only on Start training)",
    )
    predict_deadline: float = _num(
        "PREDICT_DEADLINE",
        80.0,
        float,
        help="seconds /predict waits for workers; keep below Label Studio's ML_TIMEOUT_PREDICT (100); later tasks are "
        "written back",
    )
    setup_wait: float = _num(
        "SETUP_WAIT",
        2.0,
        float,
        help="seconds /setup waits for a first read of the project's annotations (Label Studio allows 3)",
    )
    worker_maintenance: int = _num(
        "WORKER_MAINTENANCE", 30, int, help="seconds between a worker's checks for jobs abandoned by a killed worker"
    )
    job_timeout: int = _num(
        "JOB_TIMEOUT",
        300,
        int,
        help="seconds one labeling job (a chunk of tasks) may run; a killed worker's job is re-run JOB_TIMEOUT + 15 s "
        "after it started, at the next maintenance pass",
    )
    worker_wait: int = _num(
        "WORKER_WAIT",
        60,
        int,
        help="seconds prelabel and label --redis-url wait while no worker listens on the queue before they stop and "
        "say so",
    )
    rate_limit_rpm: int = _num(
        "RATE_LIMIT_RPM", 0, int, help="LLM requests per minute for all workers together (0: no limit)"
    )
    rate_limit_tpm: int = _num(
        "RATE_LIMIT_TPM",
        0,
        int,
        help="LLM tokens per minute for all workers together, estimated before sending (0: no limit)",
    )
    chunk_size: int = _num(
        "JOB_CHUNK_SIZE",
        8,
        int,
        help="tasks per RQ job; a worker takes the next job while its last calls run, so small jobs cost little and "
        "spread a run's tail over every worker",
    )
    cache_ttl: int = _num("CACHE_TTL", 2592000, int, help="seconds a cached prediction is kept")
    cache_max_entries: int = _num(
        "CACHE_MAX_ENTRIES", 1000000, int, help="cached predictions kept at most (oldest dropped first)"
    )
    basic_auth_user: str = _env("BASIC_AUTH_USER", help="user name of optional HTTP basic auth on every endpoint")
    basic_auth_pass: Secret = _env("BASIC_AUTH_PASS", help="password of optional HTTP basic auth", secret=True)
    webhook_secret: Secret = _env(
        "WEBHOOK_SECRET",
        help="shared secret Label Studio's webhook must send in the X-Webhook-Secret header (basic auth also accepted)",
        secret=True,
    )
    max_body_mb: float = _num("MAX_BODY_MB", 64.0, float, help="largest request body accepted, in MB (larger: 413)")
    budget_tokens_per_day: int = _num(
        "BUDGET_TOKENS_PER_DAY",
        0,
        int,
        help="per project: LLM tokens (prompt + completion) allowed per UTC day; then no new calls (0: no limit)",
    )
    budget_usd_per_day: float = _num(
        "BUDGET_USD_PER_DAY",
        0.0,
        float,
        help="per project: estimated USD allowed per UTC day (LLM_PRICES); then no new calls (0: no limit)",
    )
    host: str = _env("BACKEND_HOST", "127.0.0.1", help="address the backend binds to")
    port: int = _num("BACKEND_PORT", 9090, int, help="port the backend listens on")
    web_workers: int = _num("WEB_WORKERS", 2, int, help="gunicorn worker processes")
    web_threads: int = _num("WEB_THREADS", 16, int, help="threads per gunicorn worker (a waiting /predict holds one)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in env and env[name] != "":
                values[f.name] = _convert(name, env[name], f.metadata["kind"], f.metadata.get("secret", False))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.metadata.get("secret") and not isinstance(getattr(self, f.name), Secret):
                object.__setattr__(self, f.name, Secret(getattr(self, f.name) or ""))

    def check(self) -> None:
        if self.answer_mode not in MODES:
            raise SettingsError(f"LLM_ANSWER_MODE must be one of {list(MODES)}, got {self.answer_mode!r}")
        for name in (
            "timeout",
            "concurrency",
            "predict_deadline",
            "chunk_size",
            "web_workers",
            "web_threads",
            "job_timeout",
            "studio_timeout",
            "write_back_timeout",
            "worker_wait",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{self.env_name(name)} must be positive, got {getattr(self, name)!r}")
        if not (self.version_policy in ("change", "training") or _every_n(self.version_policy)):
            raise SettingsError(
                f"MODEL_VERSION_POLICY must be change, training or every:N (N >= 1), got {self.version_policy!r}"
            )
        if self.max_body_mb <= 0 or self.budget_tokens_per_day < 0 or self.budget_usd_per_day < 0:
            raise SettingsError("MAX_BODY_MB must be positive; BUDGET_TOKENS_PER_DAY and BUDGET_USD_PER_DAY 0 or more")
        if self.rate_limit_rpm < 0 or self.rate_limit_tpm < 0:
            raise SettingsError("RATE_LIMIT_RPM and RATE_LIMIT_TPM must be 0 (off) or positive")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            # Either alone would leave every endpoint open while the admin believes it is protected.
            given, missing = (
                ("BASIC_AUTH_USER", "BASIC_AUTH_PASS")
                if self.basic_auth_user
                else ("BASIC_AUTH_PASS", "BASIC_AUTH_USER")
            )
            raise SettingsError(f"{given} is set but {missing} is empty: set both or neither")
        from backend.costs import BadPrices, parse_prices

        try:
            parse_prices(self.prices)
        except BadPrices as exc:
            raise SettingsError(str(exc)) from None
        if self.selection not in STRATEGIES:
            raise SettingsError(f"DEMO_SELECTION must be one of {list(STRATEGIES)}, got {self.selection!r}")
        if self.calibration not in CALIBRATIONS:
            raise SettingsError(f"CALIBRATION must be one of {list(CALIBRATIONS)}, got {self.calibration!r}")
        if self.low_score_action not in LOW_SCORE_ACTIONS:
            raise SettingsError(
                f"LOW_SCORE_ACTION must be one of {list(LOW_SCORE_ACTIONS)}, got {self.low_score_action!r}"
            )
        if not 0.0 <= self.score_threshold <= 1.0 or self.confidence_samples < 0:
            raise SettingsError("SCORE_THRESHOLD must be between 0 and 1 and CONFIDENCE_SAMPLES at least 0")
        if not 0.0 < self.quality_target <= 1.0 or self.auto_threshold_min_reviews < 1:
            raise SettingsError(
                "QUALITY_TARGET must be above 0 and at most 1, AUTO_THRESHOLD_MIN_REVIEWS at least 1; "
                f"got {self.quality_target!r} and {self.auto_threshold_min_reviews!r}"
            )
        if self.selection == "mmr-k" and self.embedding_model == TFIDF:
            raise SettingsError(
                "DEMO_SELECTION=mmr-k needs embedding vectors, and EMBEDDING_MODEL is tfidf: leave "
                "it empty (the local model) or name an embedding model"
            )
        if self.vector_cache_max_entries < 1:
            raise SettingsError(
                f"EMBEDDING_CACHE_MAX_ENTRIES must be at least 1, got {self.vector_cache_max_entries!r}"
            )
        if self.context_window < 0 or self.prompt_limit < 0:
            raise SettingsError("LLM_CONTEXT_WINDOW and PROMPT_MAX_TOKENS must be 0 (automatic) or positive")
        if self.selection_k < 1:
            raise SettingsError(f"DEMO_K must be at least 1, got {self.selection_k!r}")
        if self.scoring not in SCORINGS:
            raise SettingsError(f"LLM_SCORING must be one of {list(SCORINGS)}, got {self.scoring!r}")
        if self.answer_mode == "logprobs" and self.scoring == "answer" and not 1 <= self.top_logprobs <= 20:
            raise SettingsError(
                "LLM_ANSWER_MODE=logprobs reads each label's probability from the alternatives: "
                "LLM_TOP_LOGPROBS must be between 1 and 20 (the OpenAI limit), got "
                f"{self.top_logprobs!r}"
            )
        if not 0 <= self.top_logprobs <= 20:
            raise SettingsError(
                f"LLM_TOP_LOGPROBS must be between 0 and 20 (the OpenAI limit), got {self.top_logprobs!r}"
            )

    @property
    def version_every(self) -> int:
        """How many demonstration changes move the version (0: only Start training)."""
        if self.version_policy == "change":
            return 1
        return _every_n(self.version_policy) or 0

    @classmethod
    def env_name(cls, attribute: str) -> str:
        return next(f.metadata["env"] for f in fields(cls) if f.name == attribute)

    @property
    def price_table(self) -> dict:
        from backend.costs import parse_prices

        return parse_prices(self.prices)

    @property
    def seed_paths(self) -> list[str]:
        return [p for p in self.seeds_path.split(os.pathsep) if p]

    def public(self) -> dict:
        """Settings safe to show (health, logs): secrets reduced to whether they are set."""
        shown = {}
        for f in fields(self):
            value = getattr(self, f.name)
            shown[f.metadata["env"]] = bool(value) if f.metadata.get("secret") else value
        return shown


def _every_n(policy: str) -> int | None:
    if policy.startswith("every:") and policy[6:].isdigit() and int(policy[6:]) >= 1:
        return int(policy[6:])
    return None


def _convert(name: str, raw: str, kind, secret: bool):
    if secret:
        return Secret(raw)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a{'n integer' if kind is int else ' number'}, got {raw!r}") from None


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's table is generated from this."""
    rows = []
    for f in fields(Settings):
        default = "" if f.metadata.get("secret") else f.default
        rows.append((f.metadata["env"], str(default), f.metadata["help"]))
    return rows
