"""Recovery reports against concurrent degradation reports: the recovery finds and changes the
breaker under one row lock and never creates a row.

The race tests commit for real and hold a degradation report's transaction open on a second
connection. They then read pg_stat_activity to tell whether the recovery waits on a lock, so
they decide without timing guesses. They are skipped on other databases than PostgreSQL.
"""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.test import Client

from guardrails import breakers
from guardrails.models import Breaker, BreakerCause, BreakerEvent, BreakerScope, BreakerState
from tests.conftest import make_user

RECOVERY_URL = "/api/v1/breakers/report-recovery/"
MODEL = "gpt-sub"
# How long a thread may take to reach its next step before the test fails instead of hanging.
STEP_TIMEOUT_SECONDS = 20


def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks and pg_stat_activity")


class HeldTransaction:
    """Run `work` in a transaction on its own connection and commit only after `commit()`."""

    def __init__(self, work: Callable[[], object]):
        self._work = work
        self._ready = threading.Event()
        self._release = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            with transaction.atomic():
                self._work()
                self._ready.set()
                if not self._release.wait(timeout=STEP_TIMEOUT_SECONDS):
                    raise TimeoutError("the test never released the held transaction")
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.errors.append(error)
        finally:
            self._ready.set()
            connection.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(timeout=STEP_TIMEOUT_SECONDS)
        assert self.errors == []

    def commit(self) -> None:
        self._release.set()
        self._thread.join(timeout=STEP_TIMEOUT_SECONDS)
        assert not self._thread.is_alive()
        assert self.errors == []


class BackgroundCall:
    """Run `call` on its own connection, whose server process id is `backend_pid`."""

    def __init__(self, call: Callable[[], object]):
        self._call = call
        self._started = threading.Event()
        self.backend_pid: int | None = None
        self.result: object = None
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend_pid = cursor.fetchone()[0]
            self._started.set()
            self.result = self._call()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.errors.append(error)
        finally:
            self._started.set()
            connection.close()

    def start(self) -> None:
        self.thread.start()
        assert self._started.wait(timeout=STEP_TIMEOUT_SECONDS)

    def join(self) -> object:
        self.thread.join(timeout=STEP_TIMEOUT_SECONDS)
        assert not self.thread.is_alive()
        assert self.errors == []
        return self.result


def waits_on_lock(call: BackgroundCall) -> bool:
    """Return True once `call` waits on a lock, or False when it finishes without waiting."""
    deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not call.thread.is_alive():
            return False
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                [call.backend_pid],
            )
            row = cursor.fetchone()
        if row is not None and row[0] == "Lock":
            return True
        # pg_stat_activity reports the lock wait, so the pause only sets the polling rate.
        time.sleep(0.01)
    raise AssertionError("the recovery neither finished nor waited on a lock")


def report_degradation(detail: str = "model host returns 503") -> Breaker:
    return breakers.breaker_report_degradation(
        scope=BreakerScope.MODEL, key=MODEL, detail=detail, user=None
    )


def report_recovery() -> Breaker | None:
    return breakers.breaker_report_recovery(
        scope=BreakerScope.MODEL, key=MODEL, detail="model host healthy", user=None
    )


def integration_client() -> Client:
    client = Client()
    client.force_login(make_user("bot", "integration"))
    return client


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_recovery_waits_for_degradation_in_progress(default_policies):
    postgresql_only()
    client = integration_client()
    closed = report_degradation("first outage")
    breakers.breaker_close(breaker_id=closed.pk, user=None, detail="first outage over")
    degradation = HeldTransaction(lambda: report_degradation("second outage"))
    degradation.start()

    recovery = BackgroundCall(
        lambda: client.post(
            RECOVERY_URL,
            {"scope": "model", "key": MODEL, "detail": "model host healthy"},
            content_type="application/json",
        )
    )
    recovery.start()
    waited = waits_on_lock(recovery)
    degradation.commit()
    response = recovery.join()

    assert waited is True
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == closed.pk
    assert body["state"] == BreakerState.HALF_OPEN
    assert body["cause"] == BreakerCause.RECOVERY
    assert "note" not in body
    breaker = Breaker.objects.get()
    assert breaker.state == BreakerState.HALF_OPEN
    causes = list(breaker.events.order_by("id").values_list("cause", flat=True))
    assert causes == [
        BreakerCause.UPSTREAM,
        BreakerCause.MANUAL,
        BreakerCause.UPSTREAM,
        BreakerCause.RECOVERY,
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_recovery_ignores_uncommitted_first_breaker(default_policies):
    postgresql_only()
    degradation = HeldTransaction(report_degradation)
    degradation.start()

    recovery = BackgroundCall(report_recovery)
    recovery.start()
    waited = waits_on_lock(recovery)
    degradation.commit()
    result = recovery.join()

    assert waited is False
    assert result is None
    breaker = Breaker.objects.get()
    assert breaker.state == BreakerState.OPEN
    assert breaker.cause == BreakerCause.UPSTREAM
    assert list(breaker.events.values_list("cause", flat=True)) == [BreakerCause.UPSTREAM]


def test_recovery_without_breaker_creates_no_row(default_policies):
    result = report_recovery()

    assert result is None
    assert not Breaker.objects.exists()
    assert not BreakerEvent.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_recovery_never_sees_half_created_breaker(default_policies, monkeypatch):
    postgresql_only()
    row_inserted = threading.Event()
    release = threading.Event()
    transition = breakers._transition

    def transition_after_release(**kwargs):
        # Pauses the degradation report between inserting the row and opening it.
        row_inserted.set()
        assert release.wait(timeout=STEP_TIMEOUT_SECONDS)
        return transition(**kwargs)

    monkeypatch.setattr(breakers, "_transition", transition_after_release)
    degradation = BackgroundCall(report_degradation)
    degradation.start()
    assert row_inserted.wait(timeout=STEP_TIMEOUT_SECONDS)
    monkeypatch.setattr(breakers, "_transition", transition)

    result = report_recovery()
    release.set()
    opened = degradation.join()

    assert result is None
    assert opened.state == BreakerState.OPEN
    assert Breaker.objects.get().cause == BreakerCause.UPSTREAM
