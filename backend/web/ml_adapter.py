"""The label-studio-ml 1.0.9 adapter: its model class and Flask app, corrected for Label Studio 1.23 and many projects.

Corrections (each is listed with its reason in the README, "label-studio-ml corrections"):
1. No per-process model built by /setup: a FewshotModel is made per request from the request's project
   and labeling config (and the Redis registry), so any gunicorn worker can serve any project.
2. model_version comes from the project's prompt inputs, per project, not from the library's fit jobs.
3. GET /versions exists (Label Studio 1.23 sends GET; the library has POST only).
4. START_TRAINING (and the legacy POST /train) re-reads the project's annotations and moves the version.
5. The library's request/response DEBUG logging (headers with basic auth, /setup's access token) is removed.
6. Errors are JSON with a 4xx/503 status and a message, never a traceback in the body.
7. Optional basic auth on every endpoint, and a webhook secret header, compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re

import redis
from flask import Flask, Response, current_app, request
from label_studio_ml import api as ml_api
from label_studio_ml.model import LabelStudioMLBase
from werkzeug.exceptions import HTTPException

from backend.settings import Settings
from backend.state import store
from backend.web import openapi
from backend.web.service import HTTPError, Service

log = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"
DEFAULT_MAX_BODY_MB = 64  # MAX_BODY_MB
MAX_JSON_DEPTH = 100  # deeper request bodies are refused (400) before anything walks them
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class FewshotModel(LabelStudioMLBase):
    """The model class label-studio-ml expects, made per request; all work is done by the Service."""

    service: Service | None = None

    def __init__(self, project=None, label_config=None, **kwargs):
        super().__init__(label_config=label_config, **kwargs)
        self.project = project
        self.model_version = None

    def _service(self) -> Service:
        if self.service is None:
            raise RuntimeError("no Service: create_app sets FewshotModel.service before serving")
        return self.service

    def predict(self, tasks, **kwargs):
        answer = self._service().predict(
            {"tasks": tasks, "project": self.project, "label_config": self.label_config, "params": kwargs}
        )
        self.model_version = answer["model_version"]
        return answer["results"]

    def process_event(self, event, data, job_id=None, additional_params=None):
        return self._service().webhook({"action": event, **data})

    def fit(self, tasks, workdir=None, **kwargs):
        return self.process_event("START_TRAINING", {"project": self.project})


def _json_body():
    raw = _read_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")  # strict: json.loads(bytes) would let UTF-8-encoded surrogates through
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise HTTPError(400, "the request body is not valid JSON (UTF-8)") from None
    if _too_deep(body, MAX_JSON_DEPTH):
        raise HTTPError(400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(body):  # after a strict decode only an escape can
        raise HTTPError(400, "the request body holds a lone UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode")
    return body


def _read_body(limit: int) -> bytes:
    """The body, at most `limit` bytes (413 past it). Werkzeug 2.0's get_data() ignores MAX_CONTENT_LENGTH, and
    a chunked body (gunicorn) has no Content-Length: both are bounded here while reading."""
    too_large = HTTPError(413, f"the request body is larger than {limit / 1048576:g} MB (MAX_BODY_MB)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    parts, size = [], 0
    while True:
        part = request.stream.read(min(1 << 20, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
        if size > limit:
            raise too_large
    return b"".join(parts)


def _too_deep(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _lone_surrogate(body) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _object_body() -> dict:
    body = _json_body()
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


def _reply(payload, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _credentials_ok(settings: Settings) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), settings.basic_auth_user.encode())
    pass_ok = hmac.compare_digest(password.encode(), settings.basic_auth_pass.reveal().encode())
    return user_ok and pass_ok


def _webhook_secret_ok(settings: Settings) -> bool:
    sent = request.headers.get(WEBHOOK_SECRET_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), settings.webhook_secret.reveal().encode())


def _authorize(settings: Settings):
    webhook = request.path.rstrip("/") == "/webhook"
    if webhook and settings.webhook_secret and _webhook_secret_ok(settings):
        return None
    if settings.basic_auth_user:
        if _credentials_ok(settings):
            return None
        reply = _reply({"error": "authentication required"}, 401)
        if not webhook:
            reply.headers["WWW-Authenticate"] = 'Basic realm="fewshot-prelabel"'
        return reply
    if webhook and settings.webhook_secret:
        return _reply({"error": f"webhook secret missing or wrong: send it in {WEBHOOK_SECRET_HEADER}"}, 401)
    return None


def create_app(settings: Settings | None = None, connection: redis.Redis | None = None) -> Flask:
    """label-studio-ml's Flask app with the corrections above applied."""
    settings = settings or Settings.from_env()
    connection = connection or store.connect(settings.redis_url)
    service = Service(settings, connection)
    FewshotModel.service = service
    app = ml_api.init_app(FewshotModel)
    app.config["MAX_CONTENT_LENGTH"] = int(float(getattr(settings, "max_body_mb", DEFAULT_MAX_BODY_MB)) * 1048576)
    _drop_library_logging(app)
    _route(app, "/predict", "_predict", ["POST"], lambda: _predict(service))
    _route(app, "/setup", "_setup", ["POST"], lambda: _reply(service.setup(_json_body())))
    _route(app, "/webhook", "webhook", ["POST"], lambda: _reply(service.webhook(_json_body()), 201))
    _route(app, "/train", "_train", ["POST"], lambda: _train(service))
    _route(app, "/versions", "get_version", ["POST"], lambda: _reply(service.versions(_object_body().get("project"))))
    _route(app, "/versions", "versions_get", ["GET"], lambda: _reply(service.versions(request.args.get("project"))))
    _route(app, "/health", "health", ["GET"], lambda: _reply(*reversed(service.health())))
    _route(app, "/metrics", "metrics", ["GET"], lambda: _reply(service.metrics()))
    _route(app, "/status", "status", ["GET"], lambda: _reply(service.status(request.args.get("project"))))
    _route(app, "/quality", "quality", ["GET"], lambda: _quality(service))
    _route(app, "/is_training", "_is_training", ["GET"], lambda: _reply({"is_training": False}))
    _route(app, "/openapi.json", "openapi", ["GET"], lambda: _reply(openapi.spec()))
    # label-studio-ml has one module-level Flask app: replace (never stack) our hook when an app is made again.
    hooks = [f for f in app.before_request_funcs.setdefault(None, []) if not isinstance(f, _AuthorizeHook)]
    app.before_request_funcs[None] = [_AuthorizeHook(settings), *hooks]
    _error_handlers(app)
    return app


class _AuthorizeHook:
    """Our before_request hook: a class of its own, so an app made again can tell it from the others."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self):
        return _authorize(self.settings)


def _route(app: Flask, rule: str, endpoint: str, methods: list[str], view) -> None:
    if endpoint not in app.view_functions:
        app.add_url_rule(rule, endpoint, view, methods=methods)
    app.view_functions[endpoint] = view


def _predict(service: Service) -> Response:
    body = _json_body()
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    model = FewshotModel(project=body.get("project"), label_config=None)
    model.label_config = body.get("label_config")  # set after init: the library would parse it again
    params = body.get("params")
    if not isinstance(params, dict):
        params = {}
    results = model.predict(body.get("tasks"), context=params.get("context"))
    return _reply({"results": results, "model_version": model.model_version})


def _quality(service: Service) -> Response:
    """JSON, or the self-contained HTML page when the caller (a browser) prefers text/html."""
    answer = service.quality(request.args.get("project"))
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        from backend.evaluation.quality_report import html

        return Response(html(answer["project_id"], answer, answer["threshold_auto"]), mimetype="text/html")
    return _reply(answer)


def _train(service: Service) -> Response:
    body = _json_body()
    project = body.get("project") if isinstance(body, dict) else None
    return _reply(service.webhook({"action": "START_TRAINING", "project": project}), 201)


def _drop_library_logging(app: Flask) -> None:
    # label-studio-ml logs every request's headers and body at DEBUG: basic auth and access tokens included.
    app.before_request_funcs[None] = [
        f for f in app.before_request_funcs.get(None, []) if f is not ml_api.log_request_info
    ]
    app.after_request_funcs[None] = [
        f for f in app.after_request_funcs.get(None, []) if f is not ml_api.log_response_info
    ]


def _error_handlers(app: Flask) -> None:
    # Flask 1.1 looks handlers up by class: the library registers some (with tracebacks); ours win by being
    # registered for the base classes and by replacing its specific ones.
    app.error_handler_spec[None] = {}

    @app.errorhandler(HTTPError)
    def _http_error(exc: HTTPError):
        return _reply({"error": exc.message}, exc.status)

    @app.errorhandler(HTTPException)
    def _werkzeug_error(exc: HTTPException):
        return _reply({"error": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError):
        log.error("Redis error: %s", type(exc).__name__)
        return _reply({"error": "Redis is unreachable or failing; the backend cannot work until it is back"}, 503)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _reply({"error": f"internal error ({type(exc).__name__}); see the backend's log"}, 500)
