"""Create the four role groups with the permissions each role needs."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "cs_agent": [
        "orders.view_order",
        "orders.view_orderline",
        "orders.view_orderevent",
        "catalog.view_sku",
        "catalog.view_channelskumapping",
        "reviews.view_reviewitem",
        "reviews.decide_reviewitem",
    ],
    "cs_manager": [
        "orders.view_order",
        "orders.view_orderline",
        "orders.view_orderevent",
        "orders.view_delivery",
        "catalog.view_sku",
        "catalog.view_channel",
        "catalog.view_channelskumapping",
        "catalog.add_channelskumapping",
        "reviews.view_reviewitem",
        "reviews.decide_reviewitem",
        "guardrails.view_auditentry",
    ],
    "ops_manager": [
        "orders.view_order",
        "orders.view_orderline",
        "orders.view_orderevent",
        "orders.view_delivery",
        "catalog.view_channel",
        "catalog.add_channel",
        "catalog.change_channel",
        "catalog.view_sku",
        "catalog.add_sku",
        "catalog.change_sku",
        "catalog.view_channelskumapping",
        "catalog.add_channelskumapping",
        "catalog.change_channelskumapping",
        "catalog.delete_channelskumapping",
        "reviews.view_reviewitem",
        "guardrails.view_auditentry",
    ],
    # Integrations deliver data and read back orders and review items.
    "integration": [
        "orders.view_order",
        "orders.view_orderline",
        "catalog.view_sku",
        "reviews.view_reviewitem",
    ],
}


def create_role_groups(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now so the
    # groups can reference them on a fresh database.
    for app_config in apps.get_app_configs():
        # create_permissions skips apps whose models_module is unset, as it is on the
        # migration state's app configs; restore the value so a live registry is unchanged.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for code in codes:
            app_label, codename = code.split(".")
            permissions.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(permissions)


def remove_role_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("catalog", "0001_initial"),
        ("orders", "0001_initial"),
        ("guardrails", "0001_initial"),
        ("reviews", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, remove_role_groups)]
