"""Two people deciding one review item at once: the losing request names the winner."""

import threading
import time

import pytest
from django.db import connection, transaction

from reviews.models import ReviewItem, ReviewStatus
from reviews.services import ReviewConflict, review_item_accept, review_item_reject
from tests.conftest import make_user
from tests.reviews.test_queue_views import hold_orders


def _lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_race_loser_names_winner(channel, catalog, post_webhook):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    winner = make_user("agent-winner", "cs_agent")
    loser = make_user("agent-loser", "cs_agent")
    winner_decided = threading.Event()
    may_commit = threading.Event()
    errors: list[Exception] = []

    def win() -> None:
        try:
            # The winner keeps its transaction, and so the row lock, open until may_commit is set.
            with transaction.atomic():
                review_item_reject(item_id=item.pk, user=winner)
                winner_decided.set()
                may_commit.wait(timeout=10)
        finally:
            winner_decided.set()
            connection.close()

    def lose() -> None:
        try:
            review_item_accept(item_id=item.pk, user=loser)
        except ReviewConflict as error:
            errors.append(error)
        finally:
            connection.close()

    winner_thread = threading.Thread(target=win)
    loser_thread = threading.Thread(target=lose)
    winner_thread.start()
    assert winner_decided.wait(timeout=10)
    loser_thread.start()
    # Let the winner commit only once the loser waits for the row lock.
    deadline = time.monotonic() + 10
    while _lock_waiters() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lock_waiters() == 1
    may_commit.set()
    winner_thread.join(timeout=20)
    loser_thread.join(timeout=20)

    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert [error.code for error in errors] == ["already_decided"]
    assert errors[0].message == f"Review item #{item.pk} was already rejected by agent-winner."
