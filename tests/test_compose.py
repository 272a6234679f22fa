"""The Docker files stay valid and in step with the code: compose schema, commands, settings, ports, health checks.

Docker is not needed: the compose file is validated against the Compose Specification's JSON schema (the copy
check-jsonschema ships), and the health-check commands are run against real local processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import fields
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from backend.commands.cli import _parser
from backend.settings import Settings, settings_table
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
EXAMPLE_ENV = REPO / "deploy" / "example.env"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

OUR_SERVICES = {"backend", "worker"}
DEMO_SERVICES = {"label-studio", "fake-llm"}
ALL_SERVICES = {"redis"} | OUR_SERVICES | DEMO_SERVICES
DEMO_FAKE_URL = "http://fake-llm:8000/v1"
# Values example.env sets for containers where the code's default would not work there.
CONTAINER_VALUES = {"BACKEND_HOST": "0.0.0.0", "REDIS_URL": "redis://redis:6379/0"}
# Label Studio's own variables set in the demo (each one is checked against its source when it is installed).
LABEL_STUDIO_VARIABLES = {
    "LABEL_STUDIO_USERNAME",
    "LABEL_STUDIO_PASSWORD",
    "LABEL_STUDIO_USER_TOKEN",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN",
    "ML_BLOCK_LOCAL_IP",
    "SSRF_PROTECTION_ENABLED",
    "LATEST_VERSION_CHECK",
    "COLLECT_ANALYTICS",
    "SENTRY_DSN",
    "FRONTEND_SENTRY_DSN",
    "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short",
}
DEMO_USER_VARIABLES = {"LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"}


# ---- readers -------------------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-backend anchors and << merges as Compose does


def service(name: str) -> dict:
    return compose()["services"][name]


def environment(svc: dict) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def example_env() -> dict[str, str]:
    values = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name == name.strip(), f"not NAME=value: {line!r}"
            assert name not in values, f"{name} is set twice in {EXAMPLE_ENV.name}"
            values[name] = value
    return values


def setting_names() -> set[str]:
    return {name for name, _default, _meaning in settings_table()}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile() if keyword == name]


def healthcheck_argv(test: list[str]) -> list[str]:
    """The exec-form health check as a local command: `python` becomes this interpreter."""
    assert test[0] == "CMD", f"exec form expected, got {test!r}"
    argv = list(test[1:])
    return [sys.executable if argv[0] in ("python", "python3") else argv[0], *argv[1:]]


# ---- the Compose Specification -------------------------------------------------------------------------------


def compose_schema() -> dict:
    # The Compose Specification's schema (compose-spec/compose-spec, schema/compose-spec.json), as vendored by
    # check-jsonschema for its `check-compose-spec` hook.
    source = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(source.read_text())


def schema_errors(document: dict) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification():
    document = compose()
    assert compose_schema()["title"] == "Compose Specification"
    assert schema_errors(document) == []
    assert "version" not in document, "the Compose Specification has no `version:` key (obsolete)"
    assert set(document["services"]) == ALL_SERVICES


def test_the_schema_check_catches_mistakes():
    # The schema is strict enough to be worth running: each of these breaks the file.
    mistakes = [
        ("backend", "restart_policy", "always"),  # unknown key (it belongs under deploy:)
        ("worker", "depends_on", {"redis": {"condition": "healthy"}}),  # not a condition Compose knows
        ("redis", "healthcheck", {"test": ["CMD", "redis-cli", "ping"], "retries": [3]}),
    ]
    for name, key, value in mistakes:
        document = compose()
        document["services"][name][key] = value
        assert schema_errors(document), f"{name}.{key}={value!r} passed the schema"


# ---- in step with the code -----------------------------------------------------------------------------------


def test_every_command_is_a_real_fewshot_prelabel_subcommand():
    parser, known = _parser(), subcommands(_parser())
    image = service("backend")["image"]
    for name in ("backend", "worker"):
        command = service(name)["command"]
        assert command[0] == "fewshot-prelabel" and command[1] in known, f"{name}: {command!r}"
        parser.parse_args(command[1:])  # exits (SystemExit) on an option the command does not have
        assert service(name)["image"] == image and service(name)["build"] == "."
    assert service("backend")["command"][1:] == ["serve"] and service("worker")["command"][1:] == ["worker"]
    assert json.loads(instruction("CMD")[-1]) == ["fewshot-prelabel", "serve"]


def test_the_fake_llm_service_runs_the_stand_in_on_the_compose_network():
    from backend.devtools.fake_llm import server

    fake = service("fake-llm")
    assert fake["image"] == service("backend")["image"] and "fake-llm" in subcommands(_parser())
    assert fake["command"][:2] == ["fewshot-prelabel", "fake-llm"]
    args = server.build_parser().parse_args(fake["command"][2:])
    url = urlsplit(DEMO_FAKE_URL)  # what example.env tells the admin to set
    assert args.host == "0.0.0.0" and args.port == url.port
    assert url.hostname in compose()["services"]


def test_the_stand_in_binds_the_address_its_host_option_names():
    from backend.devtools.fake_llm import server

    stand_in = server.FakeServer(server.FakeState(server.knobs_from_env({})), 0, host="127.0.0.2")
    try:
        assert stand_in.server_address[0] == "127.0.0.2"  # loopback: the test binds nothing reachable
        assert stand_in.url.startswith("http://127.0.0.2:")
    finally:
        stand_in.server_close()


def test_every_variable_is_a_setting_or_a_documented_demo_variable():
    settings, document = setting_names(), compose()
    for name in ("backend", "worker"):
        assert set(environment(document["services"][name])) <= settings, name
    assert set(environment(document["services"]["label-studio"])) == LABEL_STUDIO_VARIABLES
    assert not environment(document["services"]["fake-llm"])
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert interpolated == DEMO_USER_VARIABLES, "compose reads only the demo's user from .env"
    assert set(example_env()) - settings == DEMO_USER_VARIABLES


def test_example_env_lists_every_setting_with_its_default():
    values, secrets = example_env(), {f.metadata["env"] for f in fields(Settings) if f.metadata.get("secret")}
    missing = setting_names() - set(values)
    assert not missing, f"add these settings to deploy/example.env: {sorted(missing)}"
    for name, default, _meaning in settings_table():
        expected = CONTAINER_VALUES.get(name, default)
        assert values[name].lower() in ("", expected.lower()), f"{name}={values[name]!r}, default {default!r}"
    for name in secrets | {"LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"}:
        assert values[name] == "", f"{name} is a secret: leave it empty in deploy/example.env"
    assert Settings.from_env(values).host == "0.0.0.0"  # the file as a whole is valid settings


def test_every_variable_in_example_env_has_a_comment():
    lines = EXAMPLE_ENV.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"{EXAMPLE_ENV.name}: no comment above {line!r}"


def test_containers_get_what_they_need_from_compose_not_from_the_admin():
    backend, worker = environment(service("backend")), environment(service("worker"))
    assert backend["REDIS_URL"] == worker["REDIS_URL"] == CONTAINER_VALUES["REDIS_URL"]
    assert backend["BACKEND_HOST"] == "0.0.0.0" and "127.0.0.1:9090:9090" in service("backend")["ports"]
    assert backend["BACKEND_PORT"] == "9090"
    env_files = service("backend")["env_file"]
    assert env_files[0] == {"path": "deploy/example.env"} and env_files[-1] == {"path": ".env", "required": False}
    assert service("worker")["env_file"] == env_files
    for name in OUR_SERVICES:  # both talk to Label Studio, which may run on the Docker host
        assert "host.docker.internal:host-gateway" in service(name)["extra_hosts"], name
    assert urlsplit(backend["REDIS_URL"]).hostname in compose()["services"]


# ---- deployment rules ----------------------------------------------------------------------------------------


def published(svc: dict) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port, short or long syntax."""
    result = []
    for port in svc.get("ports", []):
        if isinstance(port, dict):
            result.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            parts = str(port).rsplit(":", 2)
            result.append(tuple([""] * (3 - len(parts)) + parts))
    return result


def test_ports_are_published_on_the_hosts_loopback_only():
    assert published(service("backend")) == [("127.0.0.1", "9090", "9090")]
    assert published(service("label-studio")) == [("127.0.0.1", "8080", "8080")]
    for name, svc in compose()["services"].items():
        assert all(host == "127.0.0.1" for host, _, _ in published(svc)), f"{name} is published beyond loopback"


def test_workers_scale():
    worker = service("worker")
    assert "container_name" not in worker and "ports" not in worker
    assert "replicas" not in worker.get("deploy", {}) and "scale" not in worker


def test_redis_keeps_nothing_on_disk():
    redis = service("redis")
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert "volumes" not in redis


def test_label_studio_and_the_fake_are_demo_only():
    services = compose()["services"]
    for name in DEMO_SERVICES:
        assert services[name]["profiles"] == ["demo"], name
    for name in services.keys() - DEMO_SERVICES:
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"
        assert not set(services[name].get("depends_on", {})) & DEMO_SERVICES, name
    assert "stand-in" in json.dumps(services["fake-llm"]["labels"]).lower()


def test_the_product_is_not_wired_to_the_fake():
    for name in ("backend", "worker"):
        assert "fake" not in json.dumps(environment(service(name))).lower(), name
    assert example_env()["OPENAI_BASE_URL"] == ""
    assert DEMO_FAKE_URL in EXAMPLE_ENV.read_text()  # ...but the admin is told how to choose it


def test_label_studio_is_the_version_the_backend_is_built_for():
    from backend.devtools.local_studio import LABEL_STUDIO_VERSION

    assert service("label-studio")["image"] == f"heartexlabs/label-studio:{LABEL_STUDIO_VERSION}"
    assert any(v.split(":")[-1] == "/label-studio/data" for v in service("label-studio")["volumes"])
    assert "label-studio-data" in compose()["volumes"]
    env = environment(service("label-studio"))
    assert (env["ML_BLOCK_LOCAL_IP"], env["SSRF_PROTECTION_ENABLED"]) == ("false", "false")
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"


def test_every_service_has_a_health_check():
    for name, svc in compose()["services"].items():
        check = svc.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert not check.get("disable"), name
    redis = service("redis")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in OUR_SERVICES:
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_the_readme_shows_how_to_scale_workers():
    readme = (REPO / "README.md").read_text()
    assert re.search(r"docker compose up (-d )?--scale worker=\d+", readme), (
        "README: add a Docker section with `docker compose up -d --scale worker=4`"
    )
    assert "--profile demo" in readme


# ---- Dockerfile and build context ----------------------------------------------------------------------------


def test_the_dockerfile_runs_the_backend_as_a_non_root_user():
    keywords = [keyword for keyword, _ in dockerfile()]
    assert instruction("FROM") == ["python:3.11-slim"]
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0") and keywords.index("USER") < keywords.index("CMD")
    assert re.search(r"\bBACKEND_HOST=0\.0\.0\.0\b", " ".join(instruction("ENV")))
    runs = " ".join(instruction("RUN"))
    assert "pip install . " in runs and "pip install --no-deps . " in runs  # dependencies, then the package


def _ignore_regex(pattern: str) -> re.Pattern:
    parts = []
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern.strip("/")):
        wildcard = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token)
        parts.append(wildcard or (token if token.startswith("[") else re.escape(token)))
    return re.compile("".join(parts) + "$")


def dockerignored(path: str) -> bool:
    """Whether the .dockerignore leaves this path (relative to the repo) out of the build context.

    Docker's rules, as far as this file uses them: *, **, ? and [...] wildcards, `!` exceptions, the last
    matching line wins, and a path is matched through itself or any of its parent directories.
    """
    rules = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    candidates = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
    ignored = False
    for rule in rules:
        negated, pattern = rule.startswith("!"), rule.lstrip("!")
        if any(_ignore_regex(pattern).match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secrets():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = [
        source for args in instruction("COPY") for source in [a for a in args.split() if not a.startswith("--")][:-1]
    ]
    assert {"pyproject.toml", project["project"]["readme"], "backend"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
        assert not dockerignored(source), f".dockerignore leaves out {source}, which the Dockerfile copies"
    assert not dockerignored("backend/devtools/fake_llm/server.py") and not dockerignored("seeds/support/seeds.jsonl")
    for secret_or_junk in (
        ".env",
        "deploy/.env",
        ".git/config",
        ".venv/bin/python",
        "tests/test_compose.py",
        "backend/__pycache__/cli.cpython-311.pyc",
        "backend/commands/cli.pyc",
        "fewshot_prelabel.egg-info/PKG-INFO",
    ):
        assert dockerignored(secret_or_junk), secret_or_junk


# ---- the health checks work (run here against local processes) -----------------------------------------------


def local_env(**extra) -> dict:
    prefixes = ("OPENAI_", "LLM_", "REDIS_", "QUEUE_", "BASIC_AUTH_", "BACKEND_", "LABEL_STUDIO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({"PYTHONPATH": str(REPO), **{k: str(v) for k, v in extra.items()}})
    return env


def passes(test: list[str], env: dict) -> bool:
    done = subprocess.run(healthcheck_argv(test), env=env, cwd=REPO, capture_output=True, timeout=30)
    return done.returncode == 0


def dockerfile_healthcheck() -> list[str]:
    args = instruction("HEALTHCHECK")[-1]
    return ["CMD", *json.loads(args[args.index("CMD") + 3 :])]


def test_the_backend_health_checks_answer_for_a_running_backend(redis_url, logs_dir):
    from backend.processes import start_backend

    env = local_env(REDIS_URL=redis_url, BASIC_AUTH_USER="admin", BASIC_AUTH_PASS="s3cret")
    proc, url = start_backend(logs_dir, env, workers=1)
    port = url.rsplit(":", 1)[1]
    checks = {"compose": service("backend")["healthcheck"]["test"], "Dockerfile": dockerfile_healthcheck()}
    try:
        for where, test in checks.items():
            assert passes(test, {**env, "BACKEND_PORT": port}), where
            assert not passes(test, {**env, "BACKEND_PORT": port, "BASIC_AUTH_PASS": "wrong"}), where
    finally:
        proc.stop()
    for where, test in checks.items():
        assert not passes(test, {**env, "BACKEND_PORT": port}), f"{where}: healthy with the backend stopped"


def elsewhere(directory: Path) -> Path:
    """A sitecustomize that makes a Python process believe it runs in another container."""
    (directory / "sitecustomize.py").write_text("import socket\nsocket.gethostname = lambda: 'another-container'\n")
    return directory


def test_the_worker_health_check_finds_this_containers_worker(redis_url, logs_dir, tmp_path):
    from backend.processes import start_workers
    from tests.conftest import wait_for_workers

    queue = f"compose-health-{uuid.uuid4().hex[:8]}"
    env = local_env(REDIS_URL=redis_url, QUEUE_NAME=queue)
    test = service("worker")["healthcheck"]["test"]
    assert not passes(test, env), "healthy before any worker started"
    workers = start_workers(1, logs_dir, env, prefix="compose-health")
    try:
        wait_for_workers(redis_url, 1, queue=queue)
        assert passes(test, env)
        assert not passes(test, {**env, "QUEUE_NAME": queue + "-other"})
        assert not passes(test, {**env, "PYTHONPATH": f"{elsewhere(tmp_path)}{os.pathsep}{REPO}"})
    finally:
        for worker in workers:
            worker.stop()


def test_the_fake_llm_health_check_answers_for_the_stand_in():
    from backend.devtools.fake_llm import FakeLLM

    test = service("fake-llm")["healthcheck"]["test"]
    assert ":8000/health" in test[-1]
    with FakeLLM() as fake:
        local = test[:-1] + [test[-1].replace(":8000/", f":{fake.port}/")]
        assert passes(local, local_env())
    assert not passes(local, local_env())


# ---- Label Studio's variable names, from its source (when the e2e tests have installed it) -------------------


def label_studio_source() -> str:
    from backend.devtools.local_studio import LABEL_STUDIO_VERSION, default_cache_dir

    venv = default_cache_dir() / f"label-studio-{LABEL_STUDIO_VERSION}" / "venv"
    packages = sorted(venv.glob("lib/python3*/site-packages/label_studio"))
    if not packages:
        pytest.skip("Label Studio is not installed here (the e2e tests install it)")
    return "\n".join(p.read_text(errors="replace") for p in packages[0].rglob("*.py") if "tests" not in p.parts)


def test_label_studio_reads_every_variable_the_demo_sets():
    source = label_studio_source()
    for name in LABEL_STUDIO_VARIABLES:
        short = name.removeprefix("LABEL_STUDIO_")
        read = re.search(rf"get_(bool_)?env\(\s*['\"]({re.escape(short)}|{re.escape(name)})['\"]", source)
        assert read or f"'{name}'" in source, f"nothing in Label Studio reads {name}"
    assert "re_path(r'health/'" in source or "path('health/'" in source
