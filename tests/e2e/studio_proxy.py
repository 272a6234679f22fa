"""A reverse proxy in front of a real Label Studio that injects faults into chosen calls (test equipment).

Faults apply to requests whose method and path match, a given number of times, in order:
- "error_before": answer 500 without forwarding (Label Studio never saw the call);
- "error_after": forward, then answer 500 (Label Studio applied it; the caller does not know);
- "late_answer": forward, then hold the answer `seconds` (the caller times out; the call was applied);
- "late_apply": hold the call `seconds`, then forward it (the caller timed out; it is applied later);
- "hold": forward, then wait until the fault's `released` is set before answering;
- "hold_before": wait until `released` is set, then forward (a test acts before the call reaches Label Studio).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

IMPORT_PREDICTIONS = r"/api/projects/\d+/import/predictions"


@dataclass
class Fault:
    kind: str
    method: str = "POST"
    path: str = IMPORT_PREDICTIONS
    times: int = 1
    seconds: float = 0.0
    released: threading.Event = field(default_factory=threading.Event)


def _pause(fault: Fault | None, sleep_kind: str, hold_kind: str) -> None:
    if fault is not None and fault.kind == sleep_kind:
        time.sleep(fault.seconds)
    if fault is not None and fault.kind == hold_kind:
        fault.released.wait(120)


class StudioProxy:
    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.faults: list[Fault] = []
        self.calls: list[dict] = []  # {"method", "path", "fault", "status"} in arrival order
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=120)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, kind: str, **kwargs) -> Fault:
        fault = Fault(kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            for fault in self.faults:
                fault.released.set()
            self.faults = []

    def seen(self, path: str = IMPORT_PREDICTIONS, method: str = "POST") -> list[dict]:
        return [c for c in self.calls if c["method"] == method and re.fullmatch(path, c["path"])]

    def wait_for(self, count: int, timeout: float, path: str = IMPORT_PREDICTIONS, method: str = "POST") -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.seen(path, method)) >= count:
                return True
            time.sleep(0.05)
        return False

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and re.fullmatch(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def do_PATCH(self) -> None:
                self._relay()

            def do_DELETE(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                fault = proxy._take(self.command, path)
                call = {"method": self.command, "path": path, "fault": fault.kind if fault else None}
                proxy.calls.append(call)
                kind = fault.kind if fault else ""
                if kind == "error_before":
                    return self._answer(500, b'{"detail": "injected: 500 before applying"}', "application/json", call)
                _pause(fault, "late_apply", "hold_before")
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
                }
                answer = proxy._http.request(self.command, proxy.target + self.path, headers=headers, content=body)
                if kind == "error_after":
                    return self._answer(500, b'{"detail": "injected: 500 after applying"}', "application/json", call)
                _pause(fault, "late_answer", "hold")
                self._answer(answer.status_code, answer.content, answer.headers.get("content-type", ""), call)

            def _answer(self, status: int, payload: bytes, content_type: str, call: dict) -> None:
                call["status"] = status
                try:
                    self.send_response(status)
                    if content_type:
                        self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up (timed out, or was killed)

        return Handler

    def __enter__(self) -> StudioProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.clear()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
