"""Every command the README and docker-compose.yml show, run as written, so a broken example fails CI.

The README's fenced shell blocks are read from README.md itself: every command that names fewshot-prelabel or
make runs, in README order, in one shell-like session (a file a command writes is there for the next one). What
a reader supplies is supplied, and nothing else is changed:
- the stand-in model (the fake server; the product's own `OPENAI_*` settings point at it), a private Redis with
  two rq workers, and a real Label Studio holding a project with annotations, for the commands that name one;
- placeholders (`...`, project `12`, `http://localhost:8080`) become that project, its URL and token;
- fixed ports and the paths commands write (`/tmp/labeled.jsonl`, `sft.jsonl`, `evaluation/`) become free ports
  and temporary paths, the same ones wherever they recur.
Long-running commands (`make run`, `make demo`, a `... &` stand-in) are started, checked ready, then stopped with
SIGTERM sent to the process the README starts (make itself); afterwards none of their processes runs and nothing
is left in their temp dir or home folder but the logs they name. `make test` is this suite: it is checked to be
what CI runs and to reach the pytest run (`make -n`), not run again from inside itself.

docker-compose.yml: the `command:` of each of our services runs as the container would run it, with the
environment compose gives it (deploy/example.env, then `environment:`), without Docker, and its health check
must pass against it.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from backend.devtools.local_studio import default_cache_dir
from backend.processes import free_port
from tests.conftest import REPO
from tests.e2e.exactly_once import make_project

README = REPO / "README.md"
SHELL_LANGS = {"sh", "bash", "shell", "console"}
VENV_BIN = Path(sys.executable).parent
# Commands that need a paid API and nothing else could stand in for: none in the README today.
PAID_API = re.compile(r"api\.openai\.com")


# ---- reading the README ------------------------------------------------------------------------------------


def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced block."""
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^```(\S*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif line.startswith("```") and lang is not None:
            blocks.append((lang, start, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def logical_commands(lines: list[str]) -> list[str]:
    """Backslash continuations joined, trailing comments and blank lines dropped."""
    commands, current = [], ""
    for line in lines:
        current += line
        if current.endswith("\\"):
            current = current[:-1]
            continue
        command = re.sub(r"(^|\s)#.*$", "", current).strip()
        if command:
            commands.append(" ".join(command.split()))
        current = ""
    return commands


def names_ours(command: str) -> bool:
    try:
        words = shlex.split(command.rstrip("&"))
    except ValueError:  # prose in a plain block ("the parent's death")
        words = command.split()
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)  # VAR=value prefixes
    return bool(words) and (words[0] == "make" or Path(words[0]).name == "fewshot-prelabel")


def readme_commands() -> list[tuple[int, str]]:
    found = []
    for lang, line, lines in fenced_blocks(README.read_text()):
        if lang in SHELL_LANGS:
            found += [(line, c) for c in logical_commands(lines) if names_ours(c) and not PAID_API.search(c)]
    return found


def test_the_reader_finds_the_readme_commands():
    commands = [c for _line, c in readme_commands()]
    # The first screen's commands, and the kinds the README shows further down, are all found.
    for expected in ("make test", "make run", "make demo", "make install"):
        assert expected in commands
    assert any(c.startswith(".venv/bin/fewshot-prelabel fake-llm") and c.endswith("&") for c in commands)
    for sub in ("label", "prelabel", "evaluate", "export"):
        assert any(f"fewshot-prelabel {sub} " in c for c in commands), sub
    # No command hides in a block the reader skips.
    for lang, line, lines in fenced_blocks(README.read_text()):
        if lang not in SHELL_LANGS:
            assert not [c for c in logical_commands(lines) if names_ours(c)], f"README.md:{line} ({lang or 'plain'})"


# ---- processes ---------------------------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """pid's live descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: set[int], timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return {p for p in pids if alive(p)}


def read_until(proc: subprocess.Popen, pattern: str, timeout: float, seen: list[str]) -> re.Match:
    """Lines of proc's stdout until one matches (a thread reads them: select() cannot see Python's buffer)."""
    lines = _reader(proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line.rstrip("\n"))
        if match := re.search(pattern, line):
            return match
    raise AssertionError(
        f"no line matching {pattern!r} within {timeout:.0f} s (exit {proc.poll()}):\n" + "\n".join(seen[-40:])
    )


_READERS: dict[int, queue.Queue] = {}


def _reader(proc: subprocess.Popen) -> queue.Queue:
    if proc.pid not in _READERS:
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        _READERS[proc.pid] = lines
    return _READERS[proc.pid]


class Session:
    """The reader's shell: the environment, the substitutions, and the background processes it started."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.subs: dict[str, str] = {}
        self.background: list[subprocess.Popen] = []
        # The reader's checkout, where relative outputs (`evaluation/`, `sft.jsonl`) land: the repository's
        # entries linked into a temp dir, with ../shared next to it as in the worktree.
        self.cwd = tmp / "checkout"
        self.cwd.mkdir()
        for entry in REPO.iterdir():
            if entry.name != ".git":
                (self.cwd / entry.name).symlink_to(entry)
        (tmp / "shared").symlink_to(REPO.parent / "shared")

    def rewrite(self, command: str) -> str:
        # Fixed ports: a free one, the same wherever the port recurs.
        for port in sorted(set(re.findall(r"--port (\d+)", command))):
            self.subs.setdefault(port, str(free_port()))
        # Absolute paths the commands write (/tmp/...): temporary ones. Relative ones land in the checkout.
        for path in re.findall(r"(?:--output|--output-dir) (/\S+)", command):
            self.subs.setdefault(path, str(self.tmp / path.strip("/").replace("/", "_")))
        for old, new in sorted(self.subs.items(), key=lambda kv: -len(kv[0])):
            command = re.sub(rf"(?<![\w.-]){re.escape(old)}(?![\w-])", new, command)
        return command

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        command = self.rewrite(command)
        if command.endswith("&"):
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command[:-1].strip()}"],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            self.background.append(proc)
            read_until(proc, r"http://127\.0\.0\.1:\d+", 30, [])  # its banner: it is listening
            return None
        done = subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, (
            f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def stop(self) -> None:
        for proc in self.background:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)


# ---- the README's commands ---------------------------------------------------------------------------------


@pytest.fixture
def project_stack(studio, make_stack):
    stack = make_stack(workers=2)
    project = make_project(studio.api, "README commands", 12, 6)
    return stack, project


def test_every_readme_command_works_as_written(studio, project_stack, tmp_path):
    stack, project = project_stack
    env = {**stack["env"], "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    session = Session(tmp_path, env)
    # What the reader supplies for the placeholders of the commands that name a Label Studio project.
    session.subs.update({"http://localhost:8080": studio.url, "12": str(project["id"])})
    ran = []
    try:
        for line, command in readme_commands():
            if re.match(r"^make (test|run|demo)$", command):
                continue  # below: the suite itself, and the long-running ones
            command = command.replace("LABEL_STUDIO_URL=...", f"LABEL_STUDIO_URL={studio.url}")
            command = command.replace("LABEL_STUDIO_API_KEY=...", f"LABEL_STUDIO_API_KEY={studio.token}")
            done = session.run(command)
            ran.append(f"README.md:{line}: {command}")
            if done and " --output " in command and " label " in command:
                output = session.cwd / session.rewrite(command).split(" --output ")[1].split()[0]
                assert output.stat().st_size > 0, command
    finally:
        session.stop()
    print("\n".join(ran))
    assert len(ran) >= 10
    sft = session.cwd / "sft.jsonl"
    assert sft.exists() and sft.read_text().strip()
    assert (session.cwd / "evaluation" / "evaluation.json").exists()
    assert not (REPO / "evaluation").exists() and not (REPO / "sft.jsonl").exists()  # nothing in the checkout


def test_make_test_is_what_ci_runs_and_reaches_the_suite():
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("\nmake test")
    dry = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "tools/system-deps" in dry.stdout and "-m pytest" in dry.stdout


def fresh_env(tmp_path: Path, **extra) -> dict[str, str]:
    """The reader's environment with its own temp dir and home folder (to see what is left in them)."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    prefixes = ("OPENAI_", "LLM_", "REDIS_", "QUEUE_", "BACKEND_", "LABEL_STUDIO_", "FEWSHOT_", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    # The Label Studio install is shared (FEWSHOT_CACHE_DIR names where it is when HOME moves).
    env.update(HOME=str(home), TMPDIR=str(tmp), FEWSHOT_CACHE_DIR=str(default_cache_dir()), **extra)
    return env


def stop_make_and_check_nothing_is_left(make: subprocess.Popen, env: dict, logs: Path) -> None:
    tree = descendants(make.pid)
    assert tree, "make started nothing"
    # redis-server rewrites its command line; its --dir is its working directory.
    redis_dirs = [Path(os.readlink(f"/proc/{p}/cwd")) for p in tree if "redis-server" in cmdline(p)[0]]
    gunicorns = [p for p in tree if "gunicorn" in " ".join(cmdline(p))]
    make.send_signal(signal.SIGTERM)  # to make alone, as `kill <pid of make>` does
    make.wait(timeout=30)
    left = wait_gone(tree, timeout=60)
    assert not left, f"still running after SIGTERM to make: {[(p, cmdline(p)) for p in left]}"
    assert redis_dirs and not any(d.exists() for d in redis_dirs), redis_dirs
    assert gunicorns, "no gunicorn ran"  # HOME has no XDG_RUNTIME_DIR: its control socket would be in ~/.gunicorn
    assert not list(Path(env["HOME"]).iterdir()), f"left in the home folder: {list(Path(env['HOME']).iterdir())}"
    left_tmp = list(Path(env["TMPDIR"]).iterdir())
    assert left_tmp == [logs], f"left in the temp dir besides the logs {logs}: {left_tmp}"


def wait_healthy(port: int, seen: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("run: /health never answered 200\n" + "\n".join(seen))


def kill_leftovers(make: subprocess.Popen) -> None:
    """After a failed check: nothing of this test may outlive it."""
    for pid in descendants(make.pid):
        os.kill(pid, signal.SIGKILL)
    if make.poll() is None:
        make.kill()


def start_run(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen, dict, list[str], Path]:
    """`run` started by argv (make, a script, itself) with its own Redis port, backend port, temp dir and home;
    returned once its backend answers /health: the process, its environment, its output and its log dir."""
    port, redis_port = free_port(), free_port()
    env = fresh_env(
        tmp_path,
        BACKEND_PORT=str(port),
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        OPENAI_API_KEY="x",
    )
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        logs = Path(read_until(proc, r"logs in (\S+)", 120, seen).group(1))
        wait_healthy(port, seen)
    except BaseException:
        kill_leftovers(proc)
        raise
    assert any(f"started redis-server on redis://127.0.0.1:{redis_port}/0" in line for line in seen), seen
    return proc, env, seen, logs


def test_make_run_starts_the_backend_and_sigterm_to_make_stops_everything(tmp_path):
    make, env, _seen, logs = start_run(tmp_path, ["make", "run"])
    try:
        stop_make_and_check_nothing_is_left(make, env, logs)
    finally:
        kill_leftovers(make)


def test_run_started_in_the_background_by_a_script_stops_when_the_script_is_killed(tmp_path):
    """No make and no signal to `run` itself: its parent, a script, dies with SIGKILL (it cannot pass anything on)."""
    script, env, _seen, logs = start_run(tmp_path, ["bash", "-c", f"{VENV_BIN / 'fewshot-prelabel'} run & wait"])
    try:
        tree = descendants(script.pid)
        assert any("gunicorn" in " ".join(cmdline(p)) for p in tree) and len(tree) >= 4, tree
        script.kill()
        script.wait(timeout=10)
        left = wait_gone(tree, timeout=60)
        assert not left, f"still running after the script died: {[(p, cmdline(p)) for p in left]}"
        assert list(Path(env["TMPDIR"]).iterdir()) == [logs] and not list(Path(env["HOME"]).iterdir())
    finally:
        kill_leftovers(script)


def test_what_run_started_stops_even_when_run_itself_is_killed(tmp_path):
    """SIGKILL to `run` leaves it no chance to clean up: each process it started asked for SIGTERM on its death."""
    run, _env, _seen, _logs = start_run(tmp_path, [str(VENV_BIN / "fewshot-prelabel"), "run"])
    try:
        tree = descendants(run.pid)
        run.kill()
        run.wait(timeout=10)
        left = wait_gone(tree, timeout=60)
        assert not left, f"still running after run was killed: {[(p, cmdline(p)) for p in left]}"
    finally:
        kill_leftovers(run)


def test_make_demo_prints_url_login_and_token_and_sigterm_to_make_stops_everything(tmp_path):
    env = fresh_env(tmp_path)
    make = subprocess.Popen(
        ["make", "demo"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    try:
        elapsed = read_until(make, r"Pre-labels visible after ([\d.]+) s", 600, seen)
        url = read_until(make, r"Label Studio:\s+(\S+)", 10, seen).group(1)
        user, password = read_until(make, r"Log in:\s+(\S+) / (\S+)", 10, seen).groups()
        token = read_until(make, r"API token:\s+(\S+)", 10, seen).group(1)
        logs = Path(read_until(make, r"logs in (\S+)", 10, seen).group(1)).parent
        print(f"make demo: pre-labels visible after {elapsed.group(1)} s")
        who = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=30)
        assert who.status_code == 200 and who.json()["email"] == user
        login = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
        page = login.get("/user/login/")
        form = {"email": user, "password": password, "csrfmiddlewaretoken": login.cookies.get("csrftoken", "")}
        assert (
            login.post(
                "/user/login/", data=form, headers={"Referer": f"{url}/user/login/"}, cookies=page.cookies
            ).url.path
            != "/user/login/"
        )
        stop_make_and_check_nothing_is_left(make, env, logs)
    finally:
        kill_leftovers(make)


# ---- docker-compose.yml ------------------------------------------------------------------------------------


def test_the_compose_services_commands_run_and_pass_their_health_checks(tmp_path, logs_dir):
    from tests.test_compose import environment, example_env, healthcheck_argv, service

    redis_port, backend_port, fake_port = free_port(), free_port(), free_port()
    redis_cmd = service("redis")["command"]
    assert redis_cmd[0] == "redis-server"
    # The container's own port is 6379; here that one is taken, so the port is the one thing added.
    redis = subprocess.Popen(
        [*redis_cmd, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = [redis]
    try:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "LLM_", "REDIS_", "QUEUE_", "BACKEND_", "LABEL_STUDIO_"))
        }
        base["PATH"] = f"{VENV_BIN}{os.pathsep}{base['PATH']}"
        for name in ("backend", "worker", "fake-llm"):
            svc = service(name)
            env = {**base, **(example_env() if "env_file" in svc else {}), **environment(svc)}
            env = {k: v.replace("redis://redis:6379", f"redis://127.0.0.1:{redis_port}") for k, v in env.items()}
            command = list(svc["command"])
            if name == "backend":
                env["BACKEND_PORT"] = str(backend_port)
            if name == "fake-llm":
                command[command.index("--port") + 1] = str(fake_port)
            proc = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"{name}.log", "w"),
                start_new_session=True,
            )
            started.append(proc)
            test = list(svc["healthcheck"]["test"])
            test = [t.replace("127.0.0.1:8000", f"127.0.0.1:{fake_port}") for t in test]
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, (
                    f"{name}: `{' '.join(command)}` exited {proc.returncode}:\n"
                    f"{(tmp_path / f'{name}.log').read_text()[-3000:]}"
                )
                check = subprocess.run(healthcheck_argv(test), cwd=REPO, env=env, capture_output=True, timeout=30)
                if check.returncode == 0:
                    break
                assert time.monotonic() < deadline, f"{name}: health check failing: {check.stderr[-2000:]}"
                time.sleep(1)
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def test_a_broken_readme_command_fails_the_test(tmp_path):
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    session = Session(tmp_path, env)
    with pytest.raises(AssertionError, match="exited 2"):
        session.run("fewshot-prelabel evaluate --input ../shared/eval-data/sst2_test.jsonl --config sst2.xml")
    with pytest.raises(AssertionError, match="exited 2"):
        session.run("fewshot-prelabel fake-llm --port 8911 --no-such-option")
