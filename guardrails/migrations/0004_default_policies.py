"""Load the action catalog, the default policy of every action, the settings row and the gates.

NOTE: this migration loads whatever guardrails.defaults holds when it runs. Add a new data
migration that calls default_policies_load again when you add an action, so databases that
already ran this one get it too.
"""

from django.db import migrations

from guardrails.defaults import default_policies_load


def load_default_policies(apps, schema_editor):
    default_policies_load(apps=apps)


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0003_guardrail_roles")]

    # Reversing keeps the rows: decisions may already point at them.
    operations = [migrations.RunPython(load_default_policies, migrations.RunPython.noop)]
