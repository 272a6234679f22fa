"""An OpenAPI 3 description of the backend's endpoints, served at GET /openapi.json (and used to fuzz them).

It describes what the endpoints accept and answer, as built in backend/web/ml_adapter.py and backend/web/service.py:
JSON bodies only, a JSON `{"error": ...}` body with every 4xx/503, optional basic auth (and, for /webhook, the
X-Webhook-Secret header).
"""

from __future__ import annotations

from typing import Any

from backend import __version__

SENTIMENT_EXAMPLE = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="positive"/><Choice value="negative"/></Choices></View>'
)

_PROJECT = {
    "oneOf": [
        {"type": "string", "description": '"<id>.<created_ts>" as Label Studio sends it'},
        {"type": "integer", "minimum": 1},
    ]
}
_PROJECT_QUERY = {
    "name": "project",
    "in": "query",
    "required": False,
    "description": 'project id ("<id>" or "<id>.<created_ts>")',
    "schema": {"type": "string"},
}


def _json(schema: dict, example=None) -> dict:
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def _ok(description: str, schema: dict) -> dict:
    return {"description": description, **_json(schema)}


def _errors(*statuses: int) -> dict:
    meaning = {
        400: "malformed request (the message says what is wrong)",
        401: "authentication required",
        404: "unknown project (no labeling config received yet)",
        405: "method not allowed",
        413: "request body larger than MAX_BODY_MB",
        503: "Redis is unreachable",
    }
    return {str(s): {"description": meaning[s], **_json({"$ref": "#/components/schemas/Error"})} for s in statuses}


_COMMON = (401, 405, 503)
_WITH_BODY = (400, 401, 405, 413, 503)

_TASK = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "integer"},
        "data": {
            "type": "object",
            "description": "the task's data; the config's $key names the text",
            "additionalProperties": True,
        },
        "project": {"type": "integer"},
    },
    "additionalProperties": True,
}

_PREDICTION = {
    "type": "object",
    "required": ["model_version"],
    "properties": {
        "model_version": {"type": ["string", "null"]},
        "score": {"type": ["number", "null"]},
        "result": {"type": "array", "items": {"type": "object"}},
    },
}

_HEALTH = {
    "type": "object",
    "required": ["status", "version", "model_class", "redis", "llm"],
    "properties": {
        "status": {"type": "string", "enum": ["UP", "DOWN"]},
        "version": {"type": "string"},
        "model_class": {"type": "string"},
        "redis": {"type": "string"},
        "llm": {"type": "object"},
        "workers": {"type": "integer"},
        "queued": {"type": "integer"},
        "warning": {"type": "string"},
    },
}

_VERSIONS = {
    "type": "object",
    "required": ["versions", "model_version"],
    "properties": {
        "versions": {"type": "array", "items": {"type": "string"}},
        "model_version": {"type": ["string", "null"]},
    },
}


def _nullable(schema: Any) -> Any:
    """OpenAPI 3.0 spells JSON Schema's type lists as `nullable`."""
    if isinstance(schema, dict):
        schema = {k: _nullable(v) for k, v in schema.items()}
        kind = schema.get("type")
        if isinstance(kind, list) and "null" in kind:
            rest = [k for k in kind if k != "null"]
            schema["type"] = rest[0]
            schema["nullable"] = True
        return schema
    if isinstance(schema, list):
        return [_nullable(v) for v in schema]
    return schema


def spec() -> dict:
    """The OpenAPI 3.0 document (a fresh dict on every call: callers may change it)."""
    paths = {
        "/health": {
            "get": {
                "summary": "liveness: Redis, rq workers and the LLM settings (never a secret)",
                "responses": {
                    "200": _ok("up", _HEALTH),
                    "503": _ok("Redis is unreachable", _HEALTH),
                    **_errors(401, 405),
                },
            }
        },
        "/setup": {
            "post": {
                "summary": "register a project's labeling config and options; answers its model_version",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["project", "schema"],
                            "properties": {
                                "project": _PROJECT,
                                "schema": {"type": "string", "description": "the labeling config (XML)"},
                                "hostname": {
                                    "type": "string",
                                    "description": "Label Studio's URL (LABEL_STUDIO_URL wins)",
                                },
                                "access_token": {
                                    "type": "string",
                                    "description": "stored in the Redis registry; never shown",
                                },
                                "extra_params": {"oneOf": [{"type": "object"}, {"type": "string"}]},
                                "model_version": {"type": "string"},
                            },
                        },
                        {"project": "1.1700000000", "schema": SENTIMENT_EXAMPLE},
                    ),
                },
                "responses": {
                    "200": _ok(
                        "the project's model_version",
                        {
                            "type": "object",
                            "required": ["model_version"],
                            "properties": {"model_version": {"type": "string"}},
                        },
                    ),
                    **_errors(404, *_WITH_BODY),
                },
            }
        },
        "/predict": {
            "post": {
                "summary": "pre-label tasks (cache hits at once, misses through the rq workers)",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["tasks"],
                            "properties": {
                                "tasks": {"type": "array", "minItems": 1, "items": _TASK},
                                "project": _PROJECT,
                                "label_config": {"type": "string"},
                                "params": {"type": "object"},
                            },
                        },
                        {
                            "tasks": [{"id": 1, "data": {"text": "Lisa is happy."}}],
                            "project": "1.1700000000",
                            "label_config": SENTIMENT_EXAMPLE,
                        },
                    ),
                },
                "responses": {
                    "200": _ok(
                        "one entry per task, in order (no `result`: not labeled)",
                        {
                            "type": "object",
                            "required": ["results", "model_version"],
                            "properties": {
                                "results": {"type": "array", "items": _PREDICTION},
                                "model_version": {"type": ["string", "null"]},
                            },
                        },
                    ),
                    **_errors(404, *_WITH_BODY),
                },
            }
        },
        "/webhook": {
            "post": {
                "summary": "Label Studio webhook events (annotations created/updated/deleted, tasks deleted, "
                "START_TRAINING); others are ignored",
                "parameters": [
                    {"name": "X-Webhook-Secret", "in": "header", "required": False, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["action", "project"],
                            "properties": {
                                "action": {"type": "string"},
                                "project": {
                                    "oneOf": [
                                        {"type": "integer", "minimum": 1},
                                        {
                                            "type": "object",
                                            "required": ["id"],
                                            "properties": {
                                                "id": {"type": "integer", "minimum": 1},
                                                "label_config": {"type": "string"},
                                            },
                                        },
                                    ]
                                },
                                "annotation": {"type": "object"},
                                "task": {"type": "object"},
                                "annotations": {"type": "array", "items": {"type": "object"}},
                                "tasks": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                        {"action": "PROJECT_UPDATED", "project": {"id": 1}},
                    ),
                },
                "responses": {
                    "201": _ok("what changed", {"type": "object", "required": ["action"]}),
                    **_errors(404, *_WITH_BODY),
                },
            }
        },
        "/versions": {
            "get": {
                "summary": "the project's model_version (Label Studio 1.23 sends GET)",
                "parameters": [_PROJECT_QUERY],
                "responses": {"200": _ok("versions", _VERSIONS), **_errors(400, 404, *_COMMON)},
            },
            "post": {
                "summary": "the project's model_version (older Label Studio)",
                "requestBody": {"required": False, **_json({"type": "object", "properties": {"project": _PROJECT}})},
                "responses": {"200": _ok("versions", _VERSIONS), **_errors(404, *_WITH_BODY)},
            },
        },
        "/metrics": {
            "get": {
                "summary": "cache size, projects, queue length, workers",
                "responses": {
                    "200": _ok("figures", {"type": "object", "required": ["cache_entries", "queued", "workers"]}),
                    **_errors(*_COMMON),
                },
            }
        },
        "/status": {
            "get": {
                "summary": "per project: demonstrations, the selection in effect and why, runs, failures, "
                "write-back queue",
                "parameters": [_PROJECT_QUERY],
                "responses": {
                    "200": _ok("status", {"type": "object", "required": ["projects", "queued", "workers"]}),
                    **_errors(400, 404, *_COMMON),
                },
            }
        },
        "/quality": {
            "get": {
                "summary": "live quality: how often annotators kept the pre-labels, per model_version, label and "
                "score, and the threshold that reaches QUALITY_TARGET (an HTML page for text/html)",
                "parameters": [{**_PROJECT_QUERY, "required": True}],
                "responses": {
                    "200": {
                        "description": 'the figures (README, "Live quality")',
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "project_id",
                                        "rebuilding",
                                        "reviewed",
                                        "accepted_share",
                                        "by_model_version",
                                        "controls",
                                    ],
                                }
                            },
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, *_COMMON),
                },
            }
        },
        "/train": {
            "post": {
                "summary": "legacy Start training: re-read the project's annotations",
                "requestBody": {"required": False, **_json({"type": "object", "properties": {"project": _PROJECT}})},
                "responses": {
                    "201": _ok("enqueued", {"type": "object", "required": ["action"]}),
                    **_errors(404, *_WITH_BODY),
                },
            }
        },
        "/is_training": {
            "get": {
                "summary": "always false (training is a re-read of annotations)",
                "responses": {
                    "200": _ok(
                        "no",
                        {
                            "type": "object",
                            "required": ["is_training"],
                            "properties": {"is_training": {"type": "boolean"}},
                        },
                    ),
                    **_errors(*_COMMON),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "responses": {
                    "200": _ok("OpenAPI 3.0", {"type": "object", "required": ["openapi", "paths"]}),
                    **_errors(401, 405),
                },
            }
        },
    }
    return _nullable(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "fewshot-prelabel ML backend",
                "version": __version__,
                "description": "Label Studio ML backend that pre-labels tasks with an LLM. Every error is JSON "
                '{"error": message}; with BASIC_AUTH_USER set every endpoint needs basic auth '
                "(/webhook also takes X-Webhook-Secret).",
            },
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {
                "schemas": {
                    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
                },
                "securitySchemes": {
                    "basic": {"type": "http", "scheme": "basic"},
                    "webhookSecret": {"type": "apiKey", "in": "header", "name": "X-Webhook-Secret"},
                },
            },
        }
    )
