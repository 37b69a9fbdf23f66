"""A small Square Orders API on 127.0.0.1 serving samples/square/orders/*.json."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ORDERS_DIR = Path(__file__).resolve().parents[2] / "samples" / "square" / "orders"
TOKEN = "fake-square-token"  # noqa: S105 - test value


class FakeSquare(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, str]] = []
        self.fail_with: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeSquare

    def do_GET(self) -> None:  # noqa: N802 - http.server's handler name
        self.server.requests.append(
            {"path": self.path, "authorization": self.headers.get("Authorization", "")}
        )
        if self.server.fail_with is not None:
            return self._send(self.server.fail_with, {"errors": [{"code": "INTERNAL"}]})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        prefix = "/v2/orders/"
        order_id = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
        path = ORDERS_DIR / f"{order_id}.json"
        if not order_id.isalnum() or not path.is_file():
            return self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
        return self._send(200, json.loads(path.read_text("utf-8")))

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass


@contextmanager
def fake_square_server() -> Iterator[FakeSquare]:
    server = FakeSquare()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
