"""Alert webhooks may not reach loopback, private, link-local or other internal addresses.

Every server here listens on 127.0.0.1. A stand-in for socket.getaddrinfo resolves host names,
so no test looks a name up in DNS or contacts another address. The internal addresses a name
"resolves" to are rejected before any connection is made.
"""

import importlib.util
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from monitoring import notifications
from monitoring.admin import NotificationTargetForm
from monitoring.models import (
    AlertNotification,
    NotificationKind,
    NotificationStatus,
    NotificationTarget,
    Severity,
)
from monitoring.notifications import NotificationSendError, notification_test_send
from monitoring.webhook_guard import webhook_url_address_error
from tests.monitoring.test_notifications import raise_alert

pytestmark = pytest.mark.django_db

HOOK_HOST = "hooks.chat.test"
TEST_PORTS = range(8731, 8738)
real_getaddrinfo = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _notification_settings(settings):
    settings.OMSGUARD_PUBLIC_URL = "https://guard.example.com"
    settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS = 3
    settings.OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS = 2
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = []


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any connection to an address other than 127.0.0.1 before a packet is sent.

    The tests make names "resolve" to internal addresses such as 169.254.169.254. If the
    guard under test were missing or broken, this keeps the client from really contacting
    them, and the test fails instead.
    """
    real_connect = socket.socket.connect

    def loopback_connect(sock, address):
        if address[0] != "127.0.0.1":
            raise AssertionError(f"test tried to connect to {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_connect)


class Server:
    """An HTTP server on 127.0.0.1 that records POSTs and responds with `status`."""

    def __init__(self, status: int = 200, headers: dict | None = None):
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                length = int(self.headers["Content-Length"])
                recorder.requests.append(
                    {"path": self.path, "body": json.loads(self.rfile.read(length))}
                )
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()

            def do_GET(self):  # noqa: N802 - the name http.server calls
                recorder.requests.append({"path": self.path, "body": None})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        for port in TEST_PORTS:
            try:
                self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError(f"No free port in {TEST_PORTS} for the test server.")
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def resolving(*addresses: str):
    """Patch getaddrinfo so HOOK_HOST resolves to `addresses`, and 127.0.0.1 and ::1 as usual.

    Any other name fails the test, so nothing is ever looked up in DNS.
    """

    def fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host == HOOK_HOST:
            results = []
            for address in addresses:
                if ":" in address:
                    results.append(
                        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
                    )
                else:
                    results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
            return results
        if host in ("127.0.0.1", "::1"):
            return real_getaddrinfo(host, port, family, type, proto, flags)
        raise AssertionError(f"unexpected name lookup of {host!r}")

    return mock.patch("socket.getaddrinfo", side_effect=fake_getaddrinfo)


def webhook(address: str) -> NotificationTarget:
    # Created directly, like a target saved before the save-time check existed.
    return NotificationTarget.objects.create(
        name="Chat",
        kind=NotificationKind.WEBHOOK,
        address=address,
        min_severity=Severity.INFORMATIONAL,
    )


def form_errors(address: str) -> list[str]:
    form = NotificationTargetForm(
        data={"name": "t", "kind": "webhook", "address": address, "min_severity": "actionable"}
    )
    form.is_valid()
    return list(form.errors.get("address", []))


# --- When a target is saved ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "named", "kind"),
    [
        ("http://127.0.0.1:8831/healthz", "127.0.0.1", "loopback"),
        ("http://localhost:8831/healthz", "localhost", "loopback"),
        ("http://chat.localhost/hook", "chat.localhost", "loopback"),
        ("http://[::1]/hook", "::1", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:7f00:1", "loopback"),
        ("http://10.1.2.3/hook", "10.1.2.3", "private"),
        ("http://192.168.0.10/hook", "192.168.0.10", "private"),
        ("http://[fd00::1]/hook", "fd00::1", "private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://[fe80::1]/hook", "fe80::1", "link-local"),
        ("http://224.0.0.1/hook", "224.0.0.1", "multicast"),
        ("http://0.0.0.0/hook", "0.0.0.0", "unspecified"),  # noqa: S104 - an address under test
        ("http://100.100.100.200/hook", "100.100.100.200", "non-public"),
    ],
)
def test_form_rejects_internal_address(address, named, kind):
    errors = form_errors(address)

    assert len(errors) == 1, errors
    assert named in errors[0]
    assert f" {kind} address" in errors[0]
    assert "OMSGUARD_NOTIFY_ALLOWED_NETWORKS" in errors[0]


@pytest.mark.parametrize("address", ["http://127.1/hook", "http://2130706433/hook"])
def test_ipv4_shorthand_judged_as_address(address):
    # URLValidator already rejects these, but the guard must not depend on that, because
    # getaddrinfo resolves them to 127.0.0.1.
    error = webhook_url_address_error(address)

    assert error is not None
    assert error.startswith("127.0.0.1 is a loopback address.")


def test_form_accepts_public_host_without_lookup():
    with mock.patch("socket.getaddrinfo", side_effect=AssertionError("looked up")) as lookup:
        errors = form_errors("https://hooks.slack.com/services/T0/B0/token")

    assert errors == []
    assert lookup.call_count == 0


def test_form_accepts_allowed_network(settings):
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["10.20.0.0/16"]

    assert form_errors("http://10.20.3.4/hook") == []
    assert form_errors("http://10.21.3.4/hook") != []


def test_bad_allowed_network_stops_startup(settings):
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["10.0.0.0/8", "10.1.2.3/8"]

    with pytest.raises(ImproperlyConfigured, match=r"contains '10\.1\.2\.3/8'"):
        apps.get_app_config("monitoring").ready()


# --- When a message is sent ------------------------------------------------------------------


def test_saved_loopback_target_never_contacted(django_capture_on_commit_callbacks):
    with Server() as server:
        webhook(f"http://127.0.0.1:{server.port}/hook")
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert server.requests == []
    assert (notification.status, notification.attempts) == (NotificationStatus.FAILED, 1)
    assert notification.last_error.startswith(f"Webhook at 127.0.0.1:{server.port} rejected: ")
    assert "loopback" in notification.last_error


@pytest.mark.parametrize(
    "resolved",
    [
        ["127.0.0.1"],
        ["::ffff:127.0.0.1"],
        ["169.254.169.254"],
        ["10.0.0.7"],
        ["fe80::1%1"],
    ],
)
def test_name_resolving_internal_rejected(resolved, django_capture_on_commit_callbacks):
    with Server() as server, resolving(*resolved):
        webhook(f"http://{HOOK_HOST}:{server.port}/hook")
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert server.requests == []
    assert (notification.status, notification.attempts) == (NotificationStatus.FAILED, 1)
    assert f"{HOOK_HOST} resolves to " in notification.last_error
    assert "OMSGUARD_NOTIFY_ALLOWED_NETWORKS" in notification.last_error


def test_every_resolved_address_checked(settings, django_capture_on_commit_callbacks):
    # The first address is allowed and would respond, but the second is the metadata address.
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Server() as server, resolving("127.0.0.1", "169.254.169.254"):
        webhook(f"http://{HOOK_HOST}:{server.port}/hook")
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert server.requests == []
    assert notification.status == NotificationStatus.FAILED
    assert "169.254.169.254, a link-local address" in notification.last_error


def test_allowed_network_receives_post(settings, django_capture_on_commit_callbacks):
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with Server() as server, resolving("127.0.0.1"):
        webhook(f"http://{HOOK_HOST}:{server.port}/hook")
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.SENT
    assert [request["path"] for request in server.requests] == ["/hook"]


def test_connects_to_checked_address_only(settings):
    # DNS rebinding: a second lookup would return the metadata address. The connection
    # must use the address that was checked, so only one lookup may happen.
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    lookup_results = [["127.0.0.1"], ["169.254.169.254"]]
    lookups = []

    def rebinding_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host != HOOK_HOST:
            raise AssertionError(f"unexpected name lookup of {host!r}")
        lookups.append(host)
        address = lookup_results[min(len(lookups), len(lookup_results)) - 1][0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    with Server() as server, mock.patch("socket.getaddrinfo", side_effect=rebinding_getaddrinfo):
        target = webhook(f"http://{HOOK_HOST}:{server.port}/hook")
        notification_test_send(target=target)

    assert lookups == [HOOK_HOST]
    assert len(server.requests) == 1


def test_redirect_not_followed(settings):
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Server() as elsewhere:
        location = f"http://127.0.0.1:{elsewhere.port}/internal"
        with Server(status=307, headers={"Location": location}) as server:
            target = webhook(f"http://127.0.0.1:{server.port}/hook")
            with pytest.raises(NotificationSendError, match="HTTP 307"):
                notification_test_send(target=target)

    assert len(server.requests) == 1
    assert elsewhere.requests == []


def fresh_notifications_module():
    """Import monitoring.notifications again under another name, so its opener is built now.

    urllib reads HTTP(S)_PROXY when an opener is built, at import, so the environment a test
    sets afterwards only reaches a freshly imported copy.
    """
    spec = importlib.util.spec_from_file_location(
        "monitoring._notifications_fresh", notifications.__file__
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_environment_proxy_ignored(settings, monkeypatch):
    # Through a proxy the connection would go to the proxy's address, so the check could not
    # see where the POST really goes.
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Server() as proxy, Server() as server, resolving("127.0.0.1"):
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        fresh = fresh_notifications_module()
        fresh._webhook_post(f"http://{HOOK_HOST}:{server.port}/hook", {"text": "test"})

    assert proxy.requests == []
    assert len(server.requests) == 1


def test_admin_test_send_names_address(admin_client):
    with resolving("169.254.169.254"):
        target = webhook(f"http://{HOOK_HOST}/latest/meta-data/")
        response = admin_client.post(
            "/admin/monitoring/notificationtarget/",
            {"action": "send_test", "_selected_action": [target.pk]},
            follow=True,
        )

    content = response.content.decode()
    assert f"Test to {target.name} failed: Webhook at {HOOK_HOST} rejected: " in content
    assert "169.254.169.254, a link-local address" in content
