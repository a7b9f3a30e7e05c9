"""A webhook receiver on 127.0.0.1 for notification tests: records every POSTed JSON
body and every GET, by path, and answers 200 (or ``status``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.gets: list[str] = []
        self.status = 200
        self._lock = threading.Lock()
        self.port = 0

    def messages(self, path: str) -> list[str]:
        """Title and message of each JSON body POSTed to ``path``, as one line each."""
        with self._lock:
            return [
                f"{body.get('title', '')}: {body.get('message', '')}"
                for p, body in self.posts
                if p == path
            ]

    def wait_for(self, path: str, *words: str, deadline: float) -> str:
        """The first message to ``path`` holding every one of ``words``, polled until
        ``deadline`` (a monotonic time); AssertionError naming what came instead."""
        while True:
            found = [m for m in self.messages(path) if all(w in m for w in words)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with {words} on {path}: {self.messages(path)}")
            time.sleep(0.5)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"raw": raw.decode(errors="replace")}
            with receiver._lock:
                receiver.posts.append((self.path, body))
            self._answer()

        def do_GET(self) -> None:
            with receiver._lock:
                receiver.gets.append(self.path)
            self._answer()

        def _answer(self) -> None:
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
