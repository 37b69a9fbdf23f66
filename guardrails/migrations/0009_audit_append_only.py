"""Make the audit log append-only inside PostgreSQL: a trigger rejects every UPDATE and DELETE.

The trigger fires for each row, so it also stops raw SQL and any other program that uses the
app's database role. It does not fire on TRUNCATE, and there is deliberately no TRUNCATE
trigger: Django's flush (used by `manage.py flush` and by every transactional test) empties
tables with TRUNCATE on PostgreSQL, and a trigger would break it. Revoking TRUNCATE from the
app's role closes that gap where the app does not own the table (docs/security/audit-log.md).

On SQLite this migration does nothing. Django's flush deletes rows with DELETE there, so a
trigger would break the test suite, and SQLite is for development only. There, only
AuditEntry.save() and its queryset reject changes.
"""

from django.db import migrations

# Separate statements, each executed without parameters, so the "%" placeholders of RAISE reach
# PostgreSQL untouched.
CREATE_SQL = (
    """
CREATE OR REPLACE FUNCTION guardrails_auditentry_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'guardrails_auditentry is append-only: % of audit entry % rejected',
        TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation',
              HINT = 'Audit entries can only be inserted. Record a new entry instead.';
END;
$$
""",
    "DROP TRIGGER IF EXISTS guardrails_auditentry_append_only ON guardrails_auditentry",
    """
CREATE TRIGGER guardrails_auditentry_append_only
    BEFORE UPDATE OR DELETE ON guardrails_auditentry
    FOR EACH ROW EXECUTE FUNCTION guardrails_auditentry_reject_change()
""",
)

DROP_SQL = (
    "DROP TRIGGER IF EXISTS guardrails_auditentry_append_only ON guardrails_auditentry",
    "DROP FUNCTION IF EXISTS guardrails_auditentry_reject_change()",
)


def _run_on_postgresql(statements: tuple[str, ...]):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("guardrails", "0008_canary_roles_and_schedule"),
    ]

    operations = [
        migrations.RunPython(_run_on_postgresql(CREATE_SQL), _run_on_postgresql(DROP_SQL)),
    ]
