"""A host that is not Slack's: it serves a file to anyone and records every request it gets,
with any Authorization header, so a test can prove the bot token never reached it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ForeignHost:
    """Listens on 127.0.0.1 but is addressed as `localhost`: a different host name from the
    Slack stand-in's (127.0.0.1), so "only Slack's hosts get the token" can be tested locally."""

    def __init__(self, body: bytes = b"stolen?") -> None:
        self.body = body
        self.requests: list[dict[str, str | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> ForeignHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with host._lock:
                    host.requests.append(
                        {"path": self.path, "authorization": self.headers.get("Authorization")}
                    )
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(host.body)))
                self.end_headers()
                self.wfile.write(host.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://localhost:{self._server.server_address[1]}"

    def seen(self) -> list[dict[str, str | None]]:
        with self._lock:
            return list(self.requests)
