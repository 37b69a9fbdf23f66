"""Add the configuration stamp row and the triggers that renew its token.

`guardrails.config_cache` explains the cache the token keeps right. Every insert, update or
delete on a watched table (and TRUNCATE on PostgreSQL) writes a new random token into the row,
whatever program makes the change.
"""

import uuid

from django.db import migrations, models

from guardrails.config_cache import (
    stamp_triggers_install,
    stamp_triggers_remove,
    watched_tables,
)


def _install(apps, schema_editor) -> None:
    stamp_triggers_install(schema_editor, watched_tables(apps))
    apps.get_model("guardrails", "ConfigStamp").objects.update_or_create(
        pk=1, defaults={"token": uuid.uuid4().hex}
    )


def _remove(apps, schema_editor) -> None:
    stamp_triggers_remove(schema_editor, watched_tables(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("guardrails", "0009_audit_append_only"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("catalog", "0001_initial"),
        ("orders", "0003_carriers_and_address_score"),
    ]

    operations = [
        migrations.CreateModel(
            name="ConfigStamp",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("token", models.CharField(max_length=36)),
            ],
        ),
        migrations.RunPython(_install, _remove),
    ]
