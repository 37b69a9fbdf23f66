"""Starting reliability and transit data for the reference carriers, and the carrier rate
permissions of ops managers.

The reliability figures are rough on-time rates of the kind carriers and shipping
analytics publish for their domestic services; they are starting estimates, and ops
managers replace them with their own measured rates in the admin. Rates are not seeded,
because prices depend on each retailer's contract.
"""

from decimal import Decimal

from django.contrib.auth.management import create_permissions
from django.db import migrations

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

OPS_MANAGER_CODENAMES = (
    "view_carrierrate",
    "add_carrierrate",
    "approve_carrierrate",
    "view_carrierservice",
    "change_carrierservice",
)


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
    # Permissions are normally created after all migrations ran; create them now so the
    # group can reference them on a fresh database.
    app_config = apps.get_app_config("orders")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="ops_manager")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="orders", codename__in=OPS_MANAGER_CODENAMES
        )
    )


def revoke_carrier_rate_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="ops_manager"):
        group.permissions.remove(
            *Permission.objects.filter(
                content_type__app_label="orders",
                codename__in=("view_carrierrate", "add_carrierrate", "approve_carrierrate"),
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_carrier_selection_data"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(load_carrier_selection_data, migrations.RunPython.noop),
        migrations.RunPython(grant_carrier_rate_permissions, revoke_carrier_rate_permissions),
    ]
