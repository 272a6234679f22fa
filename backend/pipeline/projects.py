"""A project's labeling context (config, options, demonstrations, model_version), built from Redis and cached
per process."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from backend.labeling.errors import BadExamples, LabelingError, UnsupportedConfig
from backend.labeling.examples import Example, load_seed_file
from backend.labeling.parser import parse_spec
from backend.labeling.prompt import stable_hash
from backend.labeling.results import result_regions
from backend.model.spend import SpendGuard
from backend.pipeline import thresholds
from backend.state import store

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec
    from backend.model.client import LLMClient
    from backend.model.labeler import Labeler
    from backend.settings import Settings

# The labeler, the embeddings and the LLM client (openai) are imported where a context is built: `label
# --redis-url` imports this module to register its file as a project and submits its tasks before it loads
# any of them (a second of start-up on a busy machine that the workers spend labeling instead).

log = logging.getLogger(__name__)


class UnknownProject(LookupError):
    """A request names a project the backend has no labeling config for."""


@dataclass
class ProjectContext:
    """Everything needed to build prompts and label tasks of one project at one model_version."""

    project_id: int
    spec: LabelingSpec
    labeler: Labeler
    active_id: str
    demonstrations: int
    threshold: float = 0.0
    low_score_action: str = "skip"

    @property
    def model_version(self) -> str:
        return self.labeler.model_version

    def prediction(self, cached: dict) -> dict:
        """result and score for Label Studio from a cached outcome; the SDK re-checks labels against the config.

        Below the project's score threshold the prediction is withheld, or flagged on its region, as the
        admin chose; the threshold applies when delivering, so changing it needs no new LLM call.
        """
        score = cached.get("score")
        try:
            if self.spec.structured:
                result = [dict(region) for region in cached["result"]]  # built with the task's text when labeled
            else:
                result = result_regions(self.spec, tuple(cached["labels"]))
        except (LabelingError, KeyError, TypeError) as exc:
            return {"result": None, "error": "out_of_set", "detail": str(exc)}
        if score is not None and score < self.threshold:
            if self.low_score_action == "skip":
                return {
                    "result": None,
                    "score": score,
                    "error": "low_score",
                    "detail": f"score {score:.3f} below the threshold {self.threshold:g}",
                }
            for region in result:
                region["meta"] = {"text": [f"low confidence: {score:.2f} < {self.threshold:g}"]}
        return {"result": result, "score": score}


def parse_project_id(value) -> int | None:
    """Label Studio sends "<id>.<created_ts>" at /setup and /predict, a bare id elsewhere."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        # ASCII: "¹".isdigit() is true but int("¹") raises; 18 digits: int() refuses over 4,300
        if head.isascii() and head.isdigit() and len(head) <= 18 and int(head) > 0:
            return int(head)
    return None


def example_from_demonstration(task_id: int, demo: dict) -> Example:
    return Example(demo["text"], tuple(demo["labels"]), "annotation", str(task_id), demo.get("answer", ""))


def demonstration_from_example(example: Example, annotation: dict) -> dict:
    demo = {
        "text": example.text,
        "labels": list(example.labels),
        "annotation": annotation.get("id"),
        "updated_at": str(annotation.get("updated_at") or annotation.get("created_at") or ""),
    }
    if example.answer_json:
        demo["answer"] = example.answer_json  # structured configs: every control's value
    return demo


class Contexts:
    """Per-process cache of ProjectContext, keyed by what makes one: config, options, active demonstrations."""

    def __init__(self, settings: Settings, connection: redis.Redis, client: LLMClient | None = None, size: int = 32):
        self.settings = settings
        self.connection = connection
        from backend.model.embeddings import VectorCache, embedder_for, similarity_model

        self.client = client
        self._cache: OrderedDict[tuple, ProjectContext] = OrderedDict()
        # Workers (with a client) embed what is missing; the web process only reads cached vectors.
        self.embedder = embedder_for(
            similarity_model(settings.embedding_model),
            client,
            VectorCache(connection, max_entries=settings.vector_cache_max_entries),
        )
        self._lock = threading.Lock()
        self._seed_warnings: set[tuple] = set()

    def get(self, project_id: int, label_config: str | None = None) -> ProjectContext:
        """The context of a project; a config sent with the request wins over the registered one."""
        record = store.load_project(self.connection, project_id)
        config = label_config or (record.label_config if record else "")
        if not config:
            raise UnknownProject(
                f"project {project_id} is not set up: no labeling config received yet "
                "(Label Studio sends it at /setup and /predict)"
            )
        options = (record.options if record else None) or {}
        active_id = record.active_id if record else ""
        key = (project_id, stable_hash(config), stable_hash(options), active_id)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None:
            return self._live_threshold(cached, options)
        context = self._build(project_id, config, options, active_id)
        if context.labeler.ready:  # else built again next time: the workers may have embedded the demonstrations
            with self._lock:
                self._cache[key] = context
                while len(self._cache) > 32:
                    self._cache.popitem(last=False)
        return self._live_threshold(context, options)

    def _live_threshold(self, context: ProjectContext, options: dict) -> ProjectContext:
        """With "threshold": "auto", the threshold the live quality backs now (it moves without a rebuild)."""
        if not thresholds.uses_auto(options):
            return context
        applied = thresholds.applied_threshold(self.connection, context.project_id) or {}
        live = applied.get("threshold")
        return replace(context, threshold=self.settings.score_threshold if live is None else float(live))

    def _build(self, project_id: int, config: str, options: dict, active_id: str) -> ProjectContext:
        from backend.model.labeler import Labeler
        from backend.model.options import prompt_for

        spec = parse_spec(config)
        demos = store.read_demonstrations(self.connection, project_id) if active_id else {}
        pool = self.seeds(spec, project_id) + [
            example_from_demonstration(t, d) for t, d in demos.items() if set(d["labels"]) <= set(spec.label_values)
        ]
        prompt = prompt_for(self.settings, options)
        labeler = Labeler(
            spec, pool, self.settings, self.client, prompt, self.embedder, guard=self.guard(project_id, prompt.model)
        )
        if not labeler.examples:
            log.info(
                "project %s has no demonstrations yet: labeling zero-shot from the label names and hints", project_id
            )
        return ProjectContext(
            project_id,
            spec,
            labeler,
            active_id,
            len(labeler.examples),
            threshold=float(
                self.settings.score_threshold
                if thresholds.uses_auto(options)
                else options.get("threshold", self.settings.score_threshold)
            ),
            low_score_action=options.get("low_score", self.settings.low_score_action),
        )

    def guard(self, project_id: int, model: str) -> SpendGuard:
        """The project's daily spend limit (shared through Redis by every worker)."""
        return SpendGuard(
            self.connection,
            project_id,
            self.settings.budget_tokens_per_day,
            self.settings.budget_usd_per_day,
            model,
            self.settings.price_table,
        )

    def seeds(self, spec: LabelingSpec, project_id: int) -> list[Example]:
        """Seed files that fit this project's labels; a file that does not fit is skipped with a warning."""
        examples = []
        for seed_path in self.settings.seed_paths:
            path = Path(seed_path)
            files = sorted(path.glob("seeds*.json*")) if path.is_dir() else [path]
            for file in files:
                try:
                    examples.extend(load_seed_file(file, spec))
                except BadExamples as exc:
                    if (project_id, str(file)) not in self._seed_warnings:
                        self._seed_warnings.add((project_id, str(file)))
                        log.warning("seed file %s does not fit project %s and is skipped: %s", file, project_id, exc)
        return examples


def register(
    connection: redis.Redis,
    project_id: int,
    label_config: str | None = None,
    options: dict | None = None,
    studio_url: str | None = None,
    studio_token: str | None = None,
) -> None:
    """Record what Label Studio told us of a project (the config is checked first)."""
    if label_config:
        parse_spec(label_config)  # UnsupportedConfig before anything is stored
    store.save_project_fields(
        connection,
        project_id,
        label_config=label_config or None,
        options=options,
        studio_url=studio_url or None,
        studio_token=studio_token or None,
    )


def apply_version_policy(connection: redis.Redis, settings: Settings, project_id: int, training: bool = False) -> bool:
    """Move the active demonstrations (and so model_version) when the policy says; True if moved."""
    record = store.load_project(connection, project_id)
    if record is None:
        return False
    every = settings.version_every
    due = training or not record.active_id or (every and record.live_changes >= every)
    if due:
        store.activate_demonstrations(connection, project_id)
    return bool(due)


__all__ = [
    "Contexts",
    "ProjectContext",
    "UnknownProject",
    "UnsupportedConfig",
    "apply_version_policy",
    "demonstration_from_example",
    "example_from_demonstration",
    "parse_project_id",
    "register",
]
