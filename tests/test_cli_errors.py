"""Every command turns a missing or unreadable file, a bad config and an unreachable service into one clean line
that names the thing and the fix (exit 2), never a traceback. Real servers where there are some: a port where
nothing listens is what an unreachable service is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from backend.commands.cli import main
from backend.processes import free_port
from tests.conftest import REPO, SEEDS

SUPPORT = SEEDS / "support"
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    return err[-1]


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / "typo.xml"
    path.write_text((SUPPORT / "config.xml").read_text().replace('toName="ticket"', 'toName="tikcet"'))
    return path


COMMANDS_WITH_A_CONFIG = {
    "label": lambda config, out: [
        "label",
        "--config",
        str(config),
        "--input",
        str(SUPPORT / "tasks.jsonl"),
        "--output",
        str(out / "o.jsonl"),
        "--no-progress",
    ],
    "evaluate": lambda config, out: [
        "evaluate",
        "--input",
        str(SUPPORT / "seeds.jsonl"),
        "--config",
        str(config),
        "--output-dir",
        str(out / "ev"),
        "--no-progress",
    ],
    "export": lambda config, out: [
        "export",
        "--input",
        str(SUPPORT / "seeds.jsonl"),
        "--config",
        str(config),
        "--format",
        "jsonl",
        "--output",
        str(out / "sft.jsonl"),
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_A_CONFIG))
def test_a_missing_config_file_is_named(command, env, tmp_path, capsys):
    line = one_line_error(capsys, COMMANDS_WITH_A_CONFIG[command](tmp_path / "nope.xml", tmp_path))
    assert f"cannot open '{tmp_path / 'nope.xml'}'" in line or f"cannot read '{tmp_path / 'nope.xml'}'" in line
    assert "No such file or directory" in line


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_A_CONFIG))
def test_an_unreadable_config_is_named(command, env, tmp_path, capsys):
    line = one_line_error(capsys, COMMANDS_WITH_A_CONFIG[command](SUPPORT, tmp_path))  # a directory
    assert str(SUPPORT) in line and "Is a directory" in line


@pytest.mark.parametrize("command", sorted(COMMANDS_WITH_A_CONFIG))
def test_a_totname_typo_names_the_objects_and_controls_the_config_has(command, env, bad_config, tmp_path, capsys):
    line = one_line_error(capsys, COMMANDS_WITH_A_CONFIG[command](bad_config, tmp_path))
    assert "['tikcet']" in line
    assert "the config has objects <Text name='ticket'> and controls <Choices name='intent'>" in line


def test_a_missing_input_file_is_named(env, tmp_path, capsys):
    line = one_line_error(
        capsys,
        [
            "label",
            "--config",
            str(SUPPORT / "config.xml"),
            "--input",
            str(tmp_path / "missing.jsonl"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert f"'{tmp_path / 'missing.jsonl'}'" in line and "No such file or directory" in line


def test_an_output_in_a_missing_directory_is_named(env, tmp_path, capsys):
    line = one_line_error(
        capsys,
        [
            "label",
            "--config",
            str(SUPPORT / "config.xml"),
            "--input",
            str(SUPPORT / "tasks.jsonl"),
            "--output",
            str(tmp_path / "no" / "o.jsonl"),
        ],
    )
    assert str(tmp_path / "no") in line


@pytest.mark.parametrize("command", ["label", "evaluate"])
def test_an_unreachable_llm_server_is_named_before_any_work(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", f"{DEAD}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-shown")
    line = one_line_error(capsys, COMMANDS_WITH_A_CONFIG[command](SUPPORT / "config.xml", tmp_path))
    assert f"the LLM server is unreachable at {DEAD}/v1" in line and "OPENAI_BASE_URL" in line
    assert "sk-not-shown" not in line
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "ev").exists()  # nothing was written


def test_an_unreachable_redis_is_named_without_its_password(capsys, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:9/0")
    monkeypatch.setenv("LABEL_STUDIO_URL", DEAD)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")
    line = one_line_error(capsys, ["prelabel", "--project", "1"])
    assert "127.0.0.1:9" in line and "hunter2" not in line and "Redis" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--project", "1", "--no-progress"],
        ["export", "--project", "1", "--format", "jsonl", "--output", "{out}"],
    ],
)
def test_an_unreachable_label_studio_is_named(argv, env, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", DEAD)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "ls-token-not-shown")
    line = one_line_error(capsys, [a.replace("{out}", str(tmp_path / "o.jsonl")) for a in argv])
    assert f"cannot reach Label Studio at {DEAD}" in line and "LABEL_STUDIO_URL" in line
    assert "ls-token-not-shown" not in line


def test_run_without_redis_and_without_redis_server_names_redis_url(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to start
    monkeypatch.setenv("REDIS_URL", "redis://user:hunter2@127.0.0.1:9/0")
    line = one_line_error(capsys, ["run"])
    assert "redis://127.0.0.1:9/0 (REDIS_URL)" in line and "redis-server" in line and "hunter2" not in line


def test_fake_llm_takes_its_options_and_a_taken_port_is_one_line():
    help_text = subprocess.run(
        [sys.executable, "-m", "backend.commands.cli", "fake-llm", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_text.returncode == 0 and "--port" in help_text.stdout and "--latency-ms" in help_text.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "backend.commands.cli", "fake-llm", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"[FAKE LLM STAND-IN] cannot listen on 127.0.0.1:{port}: Address "
        "already in use; choose another --port (0 = a free one)"
    ]


def test_a_worker_without_redis_says_so_in_one_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = "redis://:hunter2@127.0.0.1:9/0"
    done = subprocess.run(
        [sys.executable, "-m", "backend.commands.cli", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert "Redis is unreachable at redis://127.0.0.1:9/0 (REDIS_URL)" in done.stderr
