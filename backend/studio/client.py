"""The one place that talks to the Label Studio API, through label-studio-sdk 2.x."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core import ApiError, ParsingError

if TYPE_CHECKING:  # the SDK's models, for annotations only
    from label_studio_sdk.core.pagination import SyncPager
    from label_studio_sdk.types import PaginatedRoleBasedTaskList, PredictionRequest, RoleBasedTask

log = logging.getLogger(__name__)

T = TypeVar("T")

# POST /api/projects/ID/import/predictions in Label Studio 1.23 recounts EVERY task of the
# project on each call (about 4 s in a 10,000-task project, whatever the chunk size), so
# fewer, larger calls win; 2,000 predictions are well under 1 MB of JSON. (A server started
# with fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true recounts
# only the chunk's tasks: 0.09 s for 100, but then skips the labeling-config check.)
PREDICTIONS_PER_CALL = 2000
# Task ids per data-manager query: they travel in the URL, and proxies such as nginx
# refuse request lines over 8 KB (500 seven-digit ids are about 5 KB once URL-encoded).
IDS_PER_QUERY = 500
# Above this many task ids one listing of the project's predictions is cheaper than
# data-manager queries (measured: 15,000 predictions in 2.3 s vs about 1 ms per task).
PROJECT_SCAN_ABOVE = 2000

# Tasks with at least one annotation, cancelled (skipped) ones included: Label Studio
# keeps both counters on the task, so this filter compares two columns and needs no join.
# (`only_annotated`, which the SDK offers, is ignored by Label Studio 1.23 community.)
_ANNOTATED = {
    "conjunction": "or",
    "items": [
        {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0},
        {"filter": "filter:tasks:cancelled_annotations", "operator": "greater", "type": "Number", "value": 0},
    ],
}
# `include` also trims nested annotations and predictions to the same names.
_ANNOTATION_FIELDS = ("id", "result", "was_cancelled", "ground_truth", "created_at", "updated_at", "parent_prediction")
_PREDICTION_FIELDS = ("id", "result", "score", "model_version", "created_at", "updated_at")
_CHEAP_TASK_FIELDS = "id,data,meta,project,total_annotations,cancelled_annotations,total_predictions"

_TOKEN_HELP = (
    "a personal access token (Account & Settings > Personal Access Token), or a legacy token "
    "if the organisation allows them (Organization > API Tokens Settings)"
)


class StudioError(Exception):
    """A Label Studio call failed; `status` is the HTTP status, None when there was no answer."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class StudioAuthError(StudioError):
    """Label Studio refused the API token (HTTP 401 or 403)."""


class Studio:
    """A Label Studio server reached through label-studio-sdk, with our own errors and plain-dict results."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise StudioError(f"LABEL_STUDIO_URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        # A str subclass such as settings.Secret formats itself as "***": send the real value.
        self._token = str.__str__(token)
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        # The trailing slash matters: the SDK builds the JWT refresh URL with urljoin,
        # which would drop a path prefix such as https://host/label-studio without it.
        self._sdk = self._call(
            "connecting",
            lambda: LabelStudio(base_url=self.url + "/", api_key=self._token, timeout=timeout, httpx_client=self._http),
        )

    def __repr__(self) -> str:
        return f"Studio(url={self.url!r})"

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def project(self, project_id: int) -> dict:
        """The project's id, title, label_config and created_at."""
        project = self._call(f"reading project {project_id}", lambda: self._sdk.projects.get(id=project_id))
        found = _as_dict(project)
        return {key: found.get(key) for key in ("id", "title", "label_config", "created_at")}

    def task(self, task_id: int) -> dict:
        """One task with its data, project, annotations and predictions."""
        task = _as_dict(self._call(f"reading task {task_id}", lambda: self._sdk.tasks.get(id=str(task_id))))
        found = _pick(task, ("id", "project", "data", "meta"))
        found["annotations"] = [_pick(a, _ANNOTATION_FIELDS) for a in task.get("annotations") or []]
        found["predictions"] = [_pick(p, _PREDICTION_FIELDS) for p in task.get("predictions") or []]
        return found

    def annotated_tasks(self, project_id: int, page_size: int = 100) -> Iterator[dict]:
        """Every task with at least one annotation (cancelled ones too): {id, data, annotations}."""
        pages = self._task_pages(
            f"listing the annotated tasks of project {project_id}", project_id, page_size,
            fields="all", include=",".join(("data", "annotations", *_ANNOTATION_FIELDS)),
            query=json.dumps({"filters": _ANNOTATED}),
        )  # fmt: skip
        for task in pages:
            annotations = [_pick(a, _ANNOTATION_FIELDS) for a in task.get("annotations") or []]
            yield {"id": task["id"], "data": task.get("data"), "annotations": annotations}

    def tasks(self, project_id: int, page_size: int = 100, only_ids: bool = False) -> Iterator[dict]:
        """Every task of the project: {id} only, or id, data, meta, project and its counters."""
        what = f"listing the tasks of project {project_id}"
        include = "id" if only_ids else _CHEAP_TASK_FIELDS
        # fields="task_only": the SDK asks for "all" by default, which also serializes
        # every annotation and prediction (measured 2x slower than the default).
        yield from self._task_pages(what, project_id, page_size, fields="task_only", include=include)

    def predicted_task_ids(
        self, project_id: int, model_version: str, task_ids: Iterable[int] | None = None
    ) -> set[int]:
        """Ids of tasks with a prediction of exactly this model_version (among task_ids when given)."""
        wanted = None if task_ids is None else set(task_ids)
        if wanted is not None and not wanted:
            return set()  # an empty selection would mean "all tasks" to Label Studio
        if wanted is None or len(wanted) > PROJECT_SCAN_ABOVE:
            predicted = self._project_predicted_ids(project_id, model_version)
            return predicted if wanted is None else predicted & wanted
        ordered = sorted(wanted)
        chunks = (ordered[start : start + IDS_PER_QUERY] for start in range(0, len(ordered), IDS_PER_QUERY))
        return set().union(*(self._selected_predicted_ids(project_id, model_version, chunk) for chunk in chunks))

    def predictions(self, project_id: int) -> list[dict]:
        """Every prediction of the project: {id, task, result, score, model_version, created_at, updated_at}."""
        # GET /api/predictions?project=P: Label Studio 1.23 sets no pagination class on this
        # view (PredictionAPI), so one call answers a plain list with all of them.
        predictions = self._call(
            f"listing the predictions of project {project_id}",
            lambda: self._sdk.predictions.list(project=project_id),
        )
        return [_pick(_as_dict(p), ("task", *_PREDICTION_FIELDS)) for p in predictions]

    def _project_predicted_ids(self, project_id: int, model_version: str) -> set[int]:
        # GET /api/predictions?project=P: one unpaginated answer with every prediction.
        predictions = self._call(
            f"listing the predictions of project {project_id}",
            lambda: self._sdk.predictions.list(project=project_id),
        )
        return {p.task for p in predictions if p.model_version == model_version}

    def _selected_predicted_ids(self, project_id: int, model_version: str, task_ids: list[int]) -> set[int]:
        # The data manager's "contains" is a case-insensitive substring match (SQL LIKE):
        # it only narrows the candidates; the exact comparison is done here.
        query = {
            "filters": {"conjunction": "and", "items": [{
                "filter": "filter:tasks:predictions_model_versions", "operator": "contains",
                "type": "List", "value": [model_version],
            }]},
            "selectedItems": {"all": False, "included": task_ids},
        }  # fmt: skip
        what = f"finding tasks of project {project_id} predicted by {model_version!r}"
        pages = self._task_pages(
            what,
            project_id,
            len(task_ids),
            fields="all",
            include="id,predictions,model_version",
            query=json.dumps(query),
        )
        return {
            t["id"] for t in pages if any(p.get("model_version") == model_version for p in t.get("predictions") or [])
        }

    def create_predictions(
        self, project_id: int, predictions: list[dict], chunk_size: int = PREDICTIONS_PER_CALL
    ) -> int:
        """Write [{task, result, score, model_version}] in bulk; return how many Label Studio created."""
        created = 0
        for start in range(0, len(predictions), chunk_size):
            chunk = predictions[start : start + chunk_size]
            created += self._import_chunk(project_id, chunk, start)
        return created

    def _import_chunk(self, project_id: int, chunk: list[dict], start: int) -> int:
        what = f"writing predictions {start}-{start + len(chunk) - 1} to project {project_id}"
        # No SDK retries: a POST retried after a 5xx may have been applied already (duplicates). The SDK sends
        # plain dicts as they are; its type names only its model of them.
        request = cast("list[PredictionRequest]", chunk)
        answer = self._call(
            what,
            lambda: self._sdk.projects.import_predictions(
                id=project_id, request=request, request_options={"max_retries": 0}
            ),
        )
        created = answer.created or 0
        if created < len(chunk):
            # Label Studio 1.23 drops predictions that do not fit the labeling config
            # (an unknown label, a wrong from_name) without saying so in its answer.
            log.warning(
                "%s: Label Studio created %d of %d; the rest do not match the project's labeling "
                "config (its server log lists why)",
                what,
                created,
                len(chunk),
            )
        return created

    def _task_pages(self, what: str, project_id: int, page_size: int, **params: Any) -> Iterator[dict]:
        """GET /api/tasks page by page (ordered by id), each task once even if pages shift meanwhile."""
        seen: set[int] = set()
        page = 1
        while True:
            answer = self._call(f"{what} (page {page})", partial(self._task_page, project_id, page, page_size, params))
            if answer is None:
                return
            tasks, total = answer
            for task in tasks:
                if task["id"] not in seen:
                    seen.add(task["id"])
                    yield task
            if len(tasks) < page_size or page * page_size >= total:
                return
            page += 1

    def _task_page(self, project_id: int, page: int, page_size: int, params: dict) -> tuple[list[dict], int] | None:
        pager: SyncPager[RoleBasedTask, PaginatedRoleBasedTaskList]
        try:
            pager = self._sdk.tasks.list(project=project_id, page=page, page_size=page_size, **params)
        except ApiError as exc:
            # Tasks deleted while paging make a later page number invalid (404): that is the end.
            if exc.status_code == 404 and page > 1:
                return None
            raise
        return [_as_dict(task) for task in pager.items or []], pager.response.total

    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call by path, with the SDK's authentication and the same errors as every SDK call (for the
        administration calls of StudioAdmin, which the SDK offers in other shapes)."""

        def call() -> Any:
            headers = self._sdk._client_wrapper.get_headers()  # legacy token or JWT access token, refreshed
            response = self._http.request(method, self.url + path, headers=headers, **kwargs)
            if response.is_error:
                raise ApiError(status_code=response.status_code, body=_body(response))
            return response.json() if response.content else None

        return self._call(f"{method} {path}", call)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one SDK call; lower-layer errors leave as StudioError, with a hint and without the token."""
        try:
            return call()
        except ApiError as exc:  # not chained: the SDK's error quotes the response body, token and all
            raise self._api_error(what, exc) from None
        except httpx.TimeoutException as exc:
            raise StudioError(
                f"{what}: Label Studio at {self.url} did not answer within {self.timeout:g} s; "
                "it may be overloaded: retry later or raise the timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise StudioError(
                f"{what}: cannot reach Label Studio at {self.url} ({type(exc).__name__}: "
                f"{self._scrub(str(exc))}); check LABEL_STUDIO_URL and that the server is running"
            ) from exc
        except (ParsingError, json.JSONDecodeError) as exc:
            raise StudioError(
                f"{what}: {self.url} answered with something that is not Label Studio's JSON; "
                "check that LABEL_STUDIO_URL is the base URL of Label Studio"
            ) from exc

    def _api_error(self, what: str, exc: ApiError) -> StudioError:
        status = exc.status_code
        if status in (401, 403):
            return StudioAuthError(
                f"{what}: Label Studio at {self.url} refused the API token (HTTP {status}: "
                f"{self._detail(exc.body)}); check LABEL_STUDIO_API_KEY: it must be {_TOKEN_HELP}",
                status,
            )
        if status == 404:
            return StudioError(
                f"{what}: not found at {self.url} (HTTP 404); check the id, and that "
                "LABEL_STUDIO_URL is the base URL of Label Studio",
                status,
            )
        return StudioError(
            f"{what}: Label Studio at {self.url} answered HTTP {status}: {self._detail(exc.body)}", status
        )

    def _detail(self, body: Any) -> str:
        return self._scrub(_flatten(body))[:500]

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


class StudioAdmin(Studio):
    """The administration calls the demo and the end-to-end tests make (create projects, import tasks, submit
    annotations, connect the backend): the same client, authentication and errors as the backend's calls."""

    def whoami(self) -> dict:
        return self.rest("GET", "/api/current-user/whoami")

    def create_project(self, title: str, label_config: str, **fields: object) -> dict:
        return self.rest("POST", "/api/projects/", json={"title": title, "label_config": label_config, **fields})

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks ({"data": {...}} or flat dicts); return the new task ids in order."""
        # Community edition imports synchronously and lists the ids on request.
        params = {"return_task_ids": "true"}
        return self.rest("POST", f"/api/projects/{project_id}/import", params=params, json=tasks)["task_ids"]

    def list_tasks(self, project_id: int, page_size: int = 500) -> list[dict]:
        """All tasks of a project with data, annotations, predictions and drafts."""
        tasks: list[dict] = []
        for page in range(1, 1_000_000):
            params = {"project": project_id, "fields": "all", "page": page, "page_size": page_size}
            answer = self.rest("GET", "/api/tasks/", params=params)
            tasks += answer["tasks"]
            if not answer["tasks"] or len(tasks) >= answer["total"]:
                return tasks
        return tasks

    def get_task(self, task_id: int) -> dict:
        return self.rest("GET", f"/api/tasks/{task_id}/")

    def delete_tasks(self, project_id: int, task_ids: list[int] | None = None) -> dict:
        """Delete the given tasks, or all tasks of the project when task_ids is None."""
        return self._dm_action(project_id, "delete_tasks", task_ids)

    def create_annotation(self, task_id: int, result: list, was_cancelled: bool = False, **fields: object) -> dict:
        """fields: more annotation fields, e.g. parent_prediction (the prediction the annotator started from)."""
        body = {"result": result, "was_cancelled": was_cancelled, **fields}
        return self.rest("POST", f"/api/tasks/{task_id}/annotations/", json=body)

    def update_annotation(self, annotation_id: int, result: list) -> dict:
        return self.rest("PATCH", f"/api/annotations/{annotation_id}/", json={"result": result})

    def delete_annotation(self, annotation_id: int) -> None:
        self.rest("DELETE", f"/api/annotations/{annotation_id}/")

    def create_prediction(
        self, task_id: int, result: list, score: float | None = None, model_version: str = ""
    ) -> dict:
        body = {"task": task_id, "result": result, "score": score, "model_version": model_version}
        return self.rest("POST", "/api/predictions/", json=body)

    def list_predictions(self, project_id: int | None = None, task_id: int | None = None) -> list[dict]:
        """The predictions of one project or one task (not paginated)."""
        if (project_id is None) == (task_id is None):
            raise ValueError(f"pass exactly one of project_id and task_id, got {project_id!r} and {task_id!r}")
        params = {"project": project_id} if task_id is None else {"task": task_id}
        return self.rest("GET", "/api/predictions/", params=params)

    def connect_ml(
        self,
        project_id: int,
        url: str,
        is_interactive: bool = True,
        extra: dict | None = None,
        auth_user: str | None = None,
        auth_pass: str | None = None,
        **fields: object,
    ) -> dict:
        """Connect an ML backend; Label Studio calls its /health and /setup and adds a /webhook."""
        body: dict[str, object] = {"project": project_id, "url": url, "is_interactive": is_interactive, **fields}
        if extra is not None:
            body["extra_params"] = extra
        if auth_user is not None:
            if not auth_pass:  # Label Studio answers a missing password with HTTP 500
                raise ValueError(f"basic auth for user {auth_user!r} needs auth_pass")
            body.update(auth_method="BASIC_AUTH", basic_auth_user=auth_user, basic_auth_pass=auth_pass)
        return self.rest("POST", "/api/ml/", json=body)

    def ml_backends(self, project_id: int) -> list[dict]:
        # Side effect: Label Studio health-checks every backend of the project.
        return self.rest("GET", "/api/ml/", params={"project": project_id})

    def update_ml(self, ml_id: int, **fields: object) -> dict:
        return self.rest("PATCH", f"/api/ml/{ml_id}", json=fields)

    def retrieve_predictions(self, project_id: int, task_ids: list[int] | None = None) -> dict:
        """Ask the project's ML backend for predictions (one synchronous /predict call)."""
        return self._dm_action(project_id, "retrieve_tasks_predictions", task_ids)

    def _dm_action(self, project_id: int, action: str, task_ids: list[int] | None) -> dict:
        params = {"id": action, "project": project_id}
        return self.rest("POST", "/api/dm/actions/", params=params, json={"selectedItems": _selection(task_ids)})

    def interactive(self, ml_id: int, task_id: int, context: dict | None = None) -> dict:
        """Interactive pre-annotation; Label Studio answers 200 even on failure, so check "errors"."""
        body = {"task": task_id, "context": context or {}}
        return self.rest("POST", f"/api/ml/{ml_id}/interactive-annotating", json=body)

    def train(self, ml_id: int) -> Any:
        return self.rest("POST", f"/api/ml/{ml_id}/train", json={})

    def webhooks(self, project_id: int) -> list[dict]:
        return self.rest("GET", "/api/webhooks/", params={"project": project_id})

    def update_webhook(self, webhook_id: int, headers: dict[str, str], **fields: object) -> dict:
        """Set the webhook's extra HTTP headers (e.g. an Authorization for the backend)."""
        # A PATCH without "actions" clears the webhook's action list, so resend it.
        current = self.rest("GET", f"/api/webhooks/{webhook_id}/")
        body = {"actions": current["actions"], "headers": headers, **fields}
        return self.rest("PATCH", f"/api/webhooks/{webhook_id}/", json=body)


def studio_from(url: str | None, token: str | None, timeout: float = 30.0) -> Studio:
    """A Studio for this URL and token; StudioError saying which setting is missing."""
    if not url:
        raise StudioError("no Label Studio URL: set LABEL_STUDIO_URL to its base URL, e.g. http://localhost:8080")
    if not token:
        raise StudioError(f"no Label Studio API token: set LABEL_STUDIO_API_KEY to {_TOKEN_HELP}")
    return Studio(url, token, timeout=timeout)


def _flatten(body: Any) -> str:
    """Label Studio's error body as one line: its validation errors or detail, not the JSON wrapping."""
    if isinstance(body, dict) and (body.get("validation_errors") or body.get("detail")):
        return _flatten(body.get("validation_errors") or body["detail"])
    if isinstance(body, dict):
        return "; ".join(_flatten(v) if k == "non_field_errors" else f"{k}: {_flatten(v)}" for k, v in body.items())
    if isinstance(body, list):
        return "; ".join(_flatten(item) for item in body)
    return str(body)


def _as_dict(model: Any) -> dict:
    # Only the keys Label Studio sent (exclude_unset), with datetimes back as ISO strings.
    return model.model_dump(mode="json", exclude_unset=True)


def _pick(item: dict, keys: Iterable[str]) -> dict:
    return {key: item[key] for key in keys if key in item}


def _selection(task_ids: list[int] | None) -> dict:
    # Sent explicitly: data-manager actions apply to ALL tasks when selectedItems is missing.
    return {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": list(task_ids)}


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
