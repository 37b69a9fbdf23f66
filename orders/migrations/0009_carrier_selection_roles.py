"""Starting reliability and transit data for the reference carriers, and the carrier rate
permissions of ops managers.

The reliability figures are rough on-time rates of the kind carriers and shipping
analytics publish for their domestic services; they are starting estimates, and ops
managers replace them with their own measured rates in the admin. Rates are not seeded,
because prices depend on each retailer's contract.
"""

from decimal import Decimal

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

# (carrier code, service code): (on-time rate 0-1, promised transit in business days)
SELECTION_DATA = {
    ("ups", "ground"): ("0.96", 5),
    ("ups", "2nd_day_air"): ("0.97", 2),
    ("ups", "next_day_air"): ("0.98", 1),
    ("fedex", "ground"): ("0.95", 5),
    ("fedex", "2day"): ("0.96", 2),
    ("fedex", "standard_overnight"): ("0.97", 1),
    ("usps", "ground_advantage"): ("0.90", 5),
    ("usps", "priority_mail"): ("0.91", 3),
    ("usps", "priority_mail_express"): ("0.94", 2),
    ("dhl_express", "express_worldwide"): ("0.95", 3),
    ("canada_post", "regular_parcel"): ("0.90", 7),
    ("canada_post", "expedited_parcel"): ("0.92", 5),
    ("canada_post", "xpresspost"): ("0.94", 2),
    ("canada_post", "priority"): ("0.95", 1),
    ("dpd", "classic"): ("0.94", 3),
    ("dpd", "express"): ("0.96", 1),
}

ROLE_PERMISSIONS = {
    "ops_manager": [
        "orders.view_carrierrate",
        "orders.add_carrierrate",
        "orders.approve_carrierrate",
        "orders.view_carrierservice",
        "orders.change_carrierservice",
    ],
}


def load_carrier_selection_data(apps, schema_editor):
    CarrierService = apps.get_model("orders", "CarrierService")
    for (carrier_code, service_code), (reliability, transit_days) in SELECTION_DATA.items():
        # Only fill what nobody has set yet, so a rerun never overwrites edited values.
        CarrierService.objects.filter(
            carrier__code=carrier_code, code=service_code, reliability__isnull=True
        ).update(reliability=Decimal(reliability))
        CarrierService.objects.filter(
            carrier__code=carrier_code, code=service_code, transit_days__isnull=True
        ).update(transit_days=transit_days)


def grant_carrier_rate_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_carrier_rate_permissions(apps, schema_editor):
    # The carrier service permissions stay: an earlier migration granted them too.
    rate_permissions = [code for code in ROLE_PERMISSIONS["ops_manager"] if "carrierrate" in code]
    role_permissions_revoke(apps, {"ops_manager": rate_permissions})


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_carrier_selection_data"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(load_carrier_selection_data, migrations.RunPython.noop),
        migrations.RunPython(grant_carrier_rate_permissions, revoke_carrier_rate_permissions),
    ]
