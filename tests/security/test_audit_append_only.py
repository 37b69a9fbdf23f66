"""The audit log is append-only: the ORM rejects changes everywhere, and on PostgreSQL a
trigger rejects raw UPDATE and DELETE through the app's own database connection."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from guardrails.models import AuditEntry
from guardrails.services import audit_record

MIGRATION = ("guardrails", "0009_audit_append_only")
TRIGGER_MESSAGE = "guardrails_auditentry is append-only"


@pytest.fixture
def entry(db) -> AuditEntry:
    return audit_record(
        action="policy.published",
        target_type="policy",
        target_id=7,
        system_label="test",
        reason="original reason",
        before={"mode": "autonomous"},
        after={"mode": "needs_approval"},
    )


@pytest.fixture
def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger exists on PostgreSQL only")


def raw_sql(sql: str, params: list) -> None:
    # A savepoint, so the rejected statement leaves the test's transaction usable.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def stored_row(pk: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT action, reason, actor_label FROM guardrails_auditentry WHERE id = %s", [pk]
        )
        return cursor.fetchone()


# --- The ORM guard (every database) ----------------------------------------------------------


def test_save_of_stored_entry_raises(entry):
    entry.reason = "rewritten"

    with pytest.raises(TypeError, match="append-only"):
        entry.save()


def test_delete_of_entry_raises(entry):
    with pytest.raises(TypeError, match="append-only"):
        entry.delete()


def test_queryset_update_raises(entry):
    with pytest.raises(TypeError, match="append-only"):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")


def test_queryset_delete_raises(entry):
    with pytest.raises(TypeError, match="append-only"):
        AuditEntry.objects.filter(pk=entry.pk).delete()

    assert AuditEntry.objects.filter(pk=entry.pk).exists()


# --- The database guard (PostgreSQL) ---------------------------------------------------------


@pytest.mark.postgres
def test_raw_update_rejected(postgresql_only, entry):
    with pytest.raises(IntegrityError, match=TRIGGER_MESSAGE):
        raw_sql("UPDATE guardrails_auditentry SET reason = %s WHERE id = %s", ["x", entry.pk])

    assert stored_row(entry.pk) == ("policy.published", "original reason", "test")


@pytest.mark.postgres
def test_raw_delete_rejected(postgresql_only, entry):
    with pytest.raises(IntegrityError, match=TRIGGER_MESSAGE):
        raw_sql("DELETE FROM guardrails_auditentry WHERE id = %s", [entry.pk])

    assert stored_row(entry.pk) == ("policy.published", "original reason", "test")


@pytest.mark.postgres
def test_raw_insert_allowed(postgresql_only, entry):
    raw_sql(
        "INSERT INTO guardrails_auditentry (actor_kind, actor_label, action, target_type, "
        "target_id, reason, created_at) VALUES ('system', 'raw', 'raw.inserted', 'test', '1', "
        "'', now())",
        [],
    )

    assert AuditEntry.objects.filter(action="raw.inserted").count() == 1


@pytest.mark.postgres
def test_migration_reverses_cleanly(postgresql_only, entry):
    # Only this migration is unapplied and applied again, inside the test's transaction, which
    # PostgreSQL rolls back with the DDL at the end.
    executor = MigrationExecutor(connection)
    migration = executor.loader.get_migration(*MIGRATION)
    state = executor.loader.project_state(MIGRATION, at_end=False)

    executor.unapply_migration(state, migration)
    raw_sql("UPDATE guardrails_auditentry SET reason = %s WHERE id = %s", ["x", entry.pk])
    assert stored_row(entry.pk)[1] == "x"

    executor.apply_migration(state, migration)
    with pytest.raises(IntegrityError, match=TRIGGER_MESSAGE):
        raw_sql("DELETE FROM guardrails_auditentry WHERE id = %s", [entry.pk])
    assert MIGRATION in executor.recorder.applied_migrations()
