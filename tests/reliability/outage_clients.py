"""Client threads for the outage suites: requests at a steady rate, every response kept.

Each of the `count` threads sends one request every `count / per_second` seconds. A thread
whose request took longer sends its next one at once, without catching up on the ones it
missed, so a slow phase (the first requests of a fresh server) never turns into a burst in
the next. Each response keeps when it was sent, so a suite can split them by the phase of its
fault.
"""

import http.client
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.conftest import signed_headers
from tests.reliability.deliveries import order_body

WEBHOOK_PATH = "/webhooks/shopify/shop/"
# Seconds a client waits for one response; well above anything a healthy server needs.
CLIENT_TIMEOUT = 30


@dataclass(frozen=True)
class Request:
    """One request to send; `key` names what it carries (the webhook id, or the path)."""

    kind: str
    method: str
    path: str
    key: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """What the server returned for one request; `status` is None when no response came."""

    request: Request
    sent_at: float
    seconds: float
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str = ""


def webhook_request(number: int, *, prefix: str) -> Request:
    """A signed Shopify orders/create webhook for order `number`, with its own webhook id."""
    body = order_body(number)
    webhook_id = f"{prefix}-{number}"
    headers = signed_headers(body, webhook_id=webhook_id) | {
        "Content-Type": "application/json",
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }
    return Request(
        kind="webhook", method="POST", path=WEBHOOK_PATH, key=webhook_id, headers=headers, body=body
    )


@dataclass
class Clients:
    """`count` threads sending next_request(0), next_request(1)... to 127.0.0.1:`port`."""

    port: int
    count: int
    per_second: float
    next_request: Callable[[int], Request]
    responses: list[Response] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator["Clients"]:
        """Send for the duration of the block; on leaving, finish the requests in flight."""
        threads = [
            threading.Thread(target=self._client_run, args=(index,), daemon=True)
            for index in range(self.count)
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=CLIENT_TIMEOUT + 5)

    def responses_of(self, kind: str) -> list[Response]:
        with self._lock:
            return [response for response in self.responses if response.request.kind == kind]

    def _client_run(self, index: int) -> None:
        interval = self.count / self.per_second
        # Staggered, so the threads' requests interleave instead of leaving together.
        due = time.monotonic() + index * interval / self.count
        connection = connection_open(self.port)
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                with self._lock:
                    number = next(self._numbers)
                response = send(connection, self.next_request(number))
                with self._lock:
                    self.responses.append(response)
                due = max(due + interval, time.monotonic())
        finally:
            connection.close()


def connection_open(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)


def send(connection: http.client.HTTPConnection, request: Request) -> Response:
    """Send one request on `connection` and return the response, or the error in its place."""
    sent_at = time.monotonic()
    try:
        connection.request(request.method, request.path, body=request.body, headers=request.headers)
        http_response = connection.getresponse()
        body = http_response.read()
    except (OSError, http.client.HTTPException) as error:
        # http.client opens a new connection for the next request.
        connection.close()
        return Response(
            request=request,
            sent_at=sent_at,
            seconds=time.monotonic() - sent_at,
            status=None,
            headers={},
            body=b"",
            error=f"{type(error).__name__}: {error}",
        )
    return Response(
        request=request,
        sent_at=sent_at,
        seconds=time.monotonic() - sent_at,
        status=http_response.status,
        headers=dict(http_response.getheaders()),
        body=body,
    )
