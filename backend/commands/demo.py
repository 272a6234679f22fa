"""The `demo` command: a local Label Studio with a pre-labeled support-ticket project, in one command.

It starts (by PID, and stops on Ctrl-C/SIGTERM) a Label Studio 1.23.2 from the cached venv, a private
redis-server, the backend under gunicorn, rq workers and, when no OPENAI_API_KEY/OPENAI_BASE_URL is set,
the FAKE stand-in model server; then it creates a project from seeds/support, connects the backend,
retrieves predictions through Label Studio and waits until every unannotated task has one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rq import Queue, Worker

from backend.devtools.fake_llm import FakeLLMProcess, spawn_fake_llm
from backend.devtools.local_studio import REPO_ROOT, LocalStudio, default_cache_dir, ensure_installed, installed_venv
from backend.labeling.examples import Example, load_seed_file
from backend.labeling.parser import parse_spec
from backend.labeling.results import result_regions
from backend.lifetime import die_with_parent, ignore_stop_signals, stop_signals
from backend.processes import (
    Proc,
    ProcessError,
    backend_env,
    free_port,
    start_backend,
    start_redis,
    start_workers,
    wait_until,
)
from backend.settings import Settings, redacted
from backend.state import store
from backend.studio.client import StudioAdmin, StudioError

SEEDS = REPO_ROOT / "seeds" / "support"
ANNOTATED = 6  # seed rows imported as annotated tasks: the project's demonstrations
QUEUE = "fewshot-demo"
FAKE_TITLE = "Support tickets (FAKE stand-in, not a real LLM)"  # Label Studio allows 50 characters
FAKE_NOTICE = (
    "The model is the FAKE stand-in server (backend/devtools/fake_llm), not a real LLM: it copies the label of "
    "the most similar demonstration. Set OPENAI_API_KEY (and OPENAI_BASE_URL, LLM_MODEL) for a real one."
)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to look at."""


class Demo:
    """Everything the demo started, so stop() can end it by PID whatever step failed."""

    def __init__(
        self,
        port: int = 8080,
        workers: int = 2,
        run_dir: Path | None = None,
        quiet: bool = False,
        fake: bool | None = None,
    ):
        self.port, self.workers, self.quiet = port, workers, quiet
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="fewshot-demo-"))
        self.log_dir = self.run_dir / "logs"
        # The FAKE stand-in model when no real one is configured (or when asked for, as the tests do).
        self.settings = Settings.from_env()
        self.fake = (
            fake if fake is not None else not (self.settings.openai_api_key.reveal() or self.settings.openai_base_url)
        )
        self.studio: LocalStudio | None = None
        self.fake_llm: FakeLLMProcess | None = None
        self.procs: list[Proc] = []
        self.env: dict[str, str] = {}
        self.backend_url = ""
        self.project_id = 0
        self.annotated: list[int] = []
        self.prelabeled: list[int] = []

    # ---------------------------------------------------------------- output

    def say(self, message: str) -> None:
        if not self.quiet:
            tag = "[demo | FAKE stand-in model]" if self.fake else "[demo]"
            with contextlib.suppress(OSError):  # a closed pipe (`make demo | tee`, Ctrl-C) must not stop the clean-up
                print(f"{tag} {message}", flush=True)

    @property
    def started_studio(self) -> LocalStudio:
        """The Label Studio start_studio started; the steps after it use it."""
        if self.studio is None:
            raise RuntimeError("the demo's Label Studio is not running: start_studio() comes first")
        return self.studio

    @property
    def api(self) -> StudioAdmin:
        return self.started_studio.api

    @property
    def project_url(self) -> str:
        return f"{self.started_studio.url}/projects/{self.project_id}/data"

    # ---------------------------------------------------------------- steps

    def start(self) -> Demo:
        """Start everything and return once every unannotated task has a prediction."""
        self.start_studio()
        self.start_llm()
        self.start_redis()
        self.start_backend()
        self.create_project()
        self.connect()
        self.prelabel()
        self.show_scores()
        return self

    def start_studio(self) -> None:
        cache = default_cache_dir()
        if installed_venv(cache) is None:
            self.say(f"Label Studio: installing into {cache} once, about 80 s (FEWSHOT_CACHE_DIR moves it)")
        else:
            self.say(f"Label Studio: installed in {cache} (FEWSHOT_CACHE_DIR moves it)")
        venv = ensure_installed()
        port = self.port or free_port()
        if not _port_free(port):
            port, taken = free_port(), port
            self.say(f"port {taken} is taken: Label Studio uses port {port} instead")
        self.say(f"starting Label Studio on port {port} (data in {self.run_dir / 'label-studio'})")
        self.studio = LocalStudio(port=port, venv=venv, data_dir=self.run_dir / "label-studio")
        self.studio.start()

    def start_llm(self) -> None:
        env = {k: v for k, v in backend_env().items() if k not in ("QUEUE_NAME", "REDIS_URL")}
        studio = self.started_studio
        env.update(QUEUE_NAME=QUEUE, LABEL_STUDIO_URL=studio.url, LABEL_STUDIO_API_KEY=studio.token)
        if self.fake:
            self.fake_llm = spawn_fake_llm()
            env.update(OPENAI_BASE_URL=self.fake_llm.url, OPENAI_API_KEY="fake-stand-in-key", LLM_MODEL="fake-llm")
            self.say(f"started the FAKE stand-in model server at {self.fake_llm.url} (pid {self.fake_llm.pid})")
            self.say(FAKE_NOTICE)
        else:
            self.say(f"model: {env.get('LLM_MODEL', 'gpt-4o-mini')} at {env.get('OPENAI_BASE_URL') or 'OpenAI'}")
        self.env = env

    def start_redis(self) -> None:
        # A private, empty server whenever redis-server is installed: every demo's Label Studio starts again
        # at project 1 and task 1, and a previous demo's claims and runs in a shared Redis would block them.
        if not shutil.which("redis-server"):
            url = self.settings.redis_url
            if not store.ping(store.connect(url)):
                raise DemoError(
                    f"no redis-server to start (Debian: apt-get install redis-server) and no Redis "
                    f"answers at {redacted(url)} (REDIS_URL)"
                )
            self.env["REDIS_URL"] = url
            self.say(f"redis-server is not installed: using the Redis at {redacted(url)}, queue {QUEUE}")
            return
        proc, url = start_redis(self.log_dir)
        self.procs.append(proc)
        self.env["REDIS_URL"] = url
        self.say(f"started a private redis-server on {url} (pid {proc.pid})")

    def start_backend(self) -> None:
        workers = start_workers(self.workers, self.log_dir, self.env, prefix="demo-worker")
        self.procs += workers
        queue = Queue(QUEUE, connection=store.connect(self.env["REDIS_URL"]))
        wait_until(lambda: Worker.count(queue=queue) >= self.workers, workers[0], 60, "registered with Redis")
        backend, self.backend_url = start_backend(self.log_dir, self.env)
        self.procs.append(backend)
        self.say(
            f"backend (gunicorn) at {self.backend_url} (pid {backend.pid}) with {self.workers} rq workers "
            f"(pids {', '.join(str(w.pid) for w in workers)}); logs in {self.log_dir}"
        )

    def create_project(self) -> None:
        spec = parse_spec((SEEDS / "config.xml").read_text())
        examples = _pick_examples(load_seed_file(SEEDS / "seeds.jsonl", spec), ANNOTATED)
        tasks = [json.loads(line) for line in (SEEDS / "tasks.jsonl").read_text().splitlines() if line.strip()]
        title, description = _title(self.fake, self.env.get("LLM_MODEL", "gpt-4o-mini"))
        project = self.api.create_project(title, spec.config, description=description)
        self.project_id = project["id"]
        # Unlabeled tasks first: the data manager's first rows are the pre-labeled ones.
        ids = self.api.import_tasks(self.project_id, tasks + [{spec.data_key: e.text} for e in examples])
        self.prelabeled, self.annotated = ids[: len(tasks)], ids[len(tasks) :]
        for task_id, example in zip(self.annotated, examples):
            self.api.create_annotation(task_id, result_regions(spec, example.labels))
        self.say(
            f'project {self.project_id} "{title}": {len(tasks)} tasks to pre-label and {len(examples)} '
            f"annotated tasks (the demonstrations, from seeds/support/seeds.jsonl)"
        )

    def connect(self) -> None:
        auth_user = self.env.get("BASIC_AUTH_USER") or None
        auth_pass = self.env.get("BASIC_AUTH_PASS", "") if auth_user else None
        try:
            self.api.connect_ml(
                self.project_id, self.backend_url, is_interactive=True, auth_user=auth_user, auth_pass=auth_pass
            )
        except StudioError as exc:
            raise DemoError(
                f"Label Studio could not connect the backend at {self.backend_url}: {exc}\n"
                'See README → Troubleshooting ("Can\'t connect to ML backend").'
            ) from exc
        if self.env.get("WEBHOOK_SECRET"):  # Label Studio's webhook carries no auth unless told to
            for hook in self.api.webhooks(self.project_id):
                if hook["url"].startswith(self.backend_url):
                    self.api.update_webhook(hook["id"], {"X-Webhook-Secret": self.env["WEBHOOK_SECRET"]})
        self.say(f"connected the backend to the project (POST /api/ml; webhook {self.backend_url}/webhook)")

    def prelabel(self, timeout: float = 300) -> None:
        self.say(f"retrieving predictions for {len(self.prelabeled)} tasks through Label Studio...")
        try:
            self.api.retrieve_predictions(self.project_id, self.prelabeled)
        except StudioError as exc:  # e.g. a slow model: the workers write the rest back after the deadline
            self.say(f"retrieve failed or took too long ({exc}); waiting for the write-back")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = set(self.prelabeled) - {p["task"] for p in self.api.list_predictions(project_id=self.project_id)}
            if not missing:
                return
            failed = self._failed_tasks()
            if failed and missing <= set(failed):
                raise DemoError(
                    f"{len(missing)} tasks failed in the model, e.g. {next(iter(failed.values()))}; "
                    f"see {self.backend_url}/status?project={self.project_id} and {self.log_dir}"
                )
            time.sleep(0.5)
        raise DemoError(
            f"{len(missing)} tasks still have no prediction after {timeout:.0f} s; "
            f"see {self.backend_url}/status?project={self.project_id} and {self.log_dir}"
        )

    def show_scores(self) -> None:
        """Make the data manager show the prediction score and results (hidden by default)."""
        # Label Studio averages only the predictions of the project's selected model version into the
        # "Prediction score" column (Settings -> Annotation); by default none is selected and it stays empty.
        version = self.api.ml_backends(self.project_id)[0]["model_version"]
        self.api.rest("PATCH", f"/api/projects/{self.project_id}/", json={"model_version": version})
        hidden = [f"tasks:{c}" for c in _HIDDEN_COLUMNS]
        labeling = hidden + [
            f"tasks:{c}"
            for c in (
                "id",
                "total_predictions",
                "annotators",
                "annotations_results",
                "predictions_results",
                "total_annotations",
            )
        ]
        view = {
            "title": "Pre-labels",
            "type": "list",
            "target": "tasks",
            "hiddenColumns": {"explore": hidden, "labeling": labeling},
            "filters": {"conjunction": "and", "items": []},
        }
        self.api.rest("POST", "/api/dm/views/", json={"project": self.project_id, "data": view})

    def _failed_tasks(self) -> dict:
        try:
            answer = httpx.get(f"{self.backend_url}/status", params={"project": self.project_id}, timeout=5).json()
            return {int(k): v for k, v in answer["projects"][0].get("failures", {}).items()}
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            return {}

    # ---------------------------------------------------------------- end

    def check_alive(self) -> None:
        dead = [p for p in self.procs if not p.alive()]
        if dead:
            raise DemoError(f"{dead[0].name} exited:\n{dead[0].tail()}")
        if self.studio and not self.studio.running:
            raise DemoError(f"Label Studio exited; log: {self.studio.log_path}")

    def stop(self) -> None:
        """Stop everything this demo started, by PID (process group), newest first; keep the logs."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs = []
        if self.fake_llm:
            self.fake_llm.stop()
            self.fake_llm = None
        if self.studio:
            log = self.studio.log_path
            self.studio.stop()
            if log.exists():
                self.log_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, self.log_dir / "label-studio.log")
            shutil.rmtree(self.studio.data_dir, ignore_errors=True)
            self.studio = None


_HIDDEN_COLUMNS = (
    "inner_id",
    "completed_at",
    "cancelled_annotations",
    "annotations_ids",
    "predictions_model_versions",
    "file_upload",
    "storage_filename",
    "created_at",
    "updated_at",
    "updated_by",
    "avg_lead_time",
    "draft_exists",
)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _pick_examples(examples: list[Example], count: int) -> list[Example]:
    """count examples, one label after another (every label gets one before any gets two)."""
    by_label: dict[tuple[str, ...], list[Example]] = {}
    for example in examples:
        by_label.setdefault(example.labels, []).append(example)
    picked: list[Example] = []
    for round_ in range(max(len(v) for v in by_label.values())):
        picked += [group[round_] for group in by_label.values() if round_ < len(group)]
    return picked[:count]


def _title(fake: bool, model: str) -> tuple[str, str]:
    if fake:
        return FAKE_TITLE, (
            "Pre-labels by the FAKE stand-in model server of fewshot-prelabel (backend/devtools/fake_llm), "
            "NOT a real LLM. " + FAKE_NOTICE
        )
    return f"Support tickets (pre-labels by {model})"[:50], f"Pre-labels by {model} through fewshot-prelabel."


def _summary(demo: Demo, elapsed: float) -> str:
    studio = demo.started_studio
    lines = [f"Pre-labels visible after {elapsed:.1f} s."]
    if demo.fake:
        lines += [
            "!! FAKE stand-in model: the pre-labels come from a test double, not a real LLM.",
            "!! Set OPENAI_API_KEY (and OPENAI_BASE_URL, LLM_MODEL) to use a real one.",
        ]
    lines += [
        f"Label Studio:  {studio.url}",
        f"Log in:        {studio.username} / {studio.password}",
        f"API token:     {studio.token}  (REST API: Authorization: Token <it>; LABEL_STUDIO_API_KEY)",
        f"Project:       {demo.project_url}",
        f"Look at:       open any of the first {len(demo.prelabeled)} tasks: the predicted intent is already",
        "               selected (the model's pre-annotation; submit or change it).",
        '               Data manager: the "Prediction score" column is the model\'s confidence;',
        '               "Order by" it to review the least sure first.',
        f"               The last {len(demo.annotated)} tasks are annotated: they are the demonstrations.",
        f"Backend:       {demo.backend_url}  (/health, /status?project={demo.project_id}); logs in {demo.log_dir}",
        "Ctrl-C stops everything the demo started.",
    ]
    rule = "=" * 78
    return "\n".join([rule, *lines, rule])


def run_demo(port: int = 8080, workers: int = 2, exit_when_ready: bool = False) -> int:
    """The `demo` command: start, print where everything is, wait for Ctrl-C/SIGTERM, stop everything."""
    # `make demo` passes the time it started, so the figure includes `make install`.
    started = float(os.environ.get("FEWSHOT_DEMO_STARTED") or time.time())
    stop_signals()  # Ctrl-C, SIGTERM, SIGHUP: stop everything below
    die_with_parent()  # and so does the death of whoever started it (`make demo` stopped with SIGTERM)
    demo = Demo(port=port, workers=workers)
    try:
        demo.start()
        print(_summary(demo, time.time() - started), flush=True)
        while not exit_when_ready:
            demo.check_alive()
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        demo.say("stopping...")
        return 0
    except (DemoError, StudioError, ProcessError, OSError) as exc:
        print(f"[demo] error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        ignore_stop_signals()  # a second Ctrl-C must not cut the clean-up short
        demo.stop()
        demo.say(f"stopped everything it started; logs kept in {demo.log_dir}")
