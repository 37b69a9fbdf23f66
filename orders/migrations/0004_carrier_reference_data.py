"""Load the reference carriers, services and carrier-defined codes (orders.carrier_reference).

NOTE: this migration loads whatever REFERENCE_CARRIERS holds when it runs. Add a new data
migration that calls carrier_reference_load again when you extend the list, so databases
that already ran this one get the new rows too.
"""

from django.db import migrations

from orders.carrier_reference import carrier_reference_load


def load_reference_data(apps, schema_editor):
    carrier_reference_load(apps=apps)


class Migration(migrations.Migration):
    dependencies = [("orders", "0003_carriers_and_address_score")]

    # Reversing keeps the rows: orders may already point at them.
    operations = [migrations.RunPython(load_reference_data, migrations.RunPython.noop)]
