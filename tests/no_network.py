"""Run code with every network access refused except loopback connections to allowed ports, and record them.

For subprocess tests: `from tests import no_network; no_network.install([port])` first, then the code under
test; at exit the attempts are printed as one JSON line `NO_NETWORK {...}` on stderr. The guard is a
Python audit hook, so it sees every socket any Python code opens (the openai client, requests, urllib,
huggingface_hub) and refuses it before it happens.
"""

from __future__ import annotations

import atexit
import json
import socket
import sys

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MARK = "NO_NETWORK "
attempts: list[dict] = []


def _host_port(address) -> tuple[str, int | None]:
    if isinstance(address, tuple):
        return str(address[0]), address[1] if len(address) > 1 else None
    return str(address), None


def install(allowed_ports=()) -> None:
    allowed = set(allowed_ports)

    def hook(event: str, args: tuple) -> None:
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[-1]
            if getattr(sock, "family", None) == socket.AF_UNIX:
                return
            host, port = _host_port(address)
            allowed_here = host in LOOPBACK and port in allowed
            attempts.append({"event": event, "host": host, "port": port, "allowed": allowed_here})
            if not allowed_here:
                raise ConnectionRefusedError(f"network access refused by the test: {host}:{port}")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            if host not in LOOPBACK:
                attempts.append({"event": event, "host": host, "port": None, "allowed": False})
                raise OSError(f"name resolution refused by the test: {host}")

    sys.addaudithook(hook)
    atexit.register(report)


def report() -> None:
    print(MARK + json.dumps(attempts), file=sys.stderr, flush=True)


def read_attempts(stderr: str) -> list[dict]:
    """The attempts a guarded subprocess reported."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise AssertionError(f"the guarded process reported nothing (did it crash?):\n{stderr[-2000:]}")
