"""Recompute stored normalised titles with the new fold table, and give ops managers the
permissions for listing constraints and import jobs."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from catalog.normalize import normalize_title

OPS_MANAGER_PERMISSIONS = [
    "view_listingconstraint",
    "add_listingconstraint",
    "change_listingconstraint",
    "delete_listingconstraint",
    "view_importjob",
    "view_importrowerror",
]


def renormalize_titles(apps, schema_editor):
    # NOTE: this uses today's catalog.normalize, not a frozen copy; on a fresh database it is
    # a no-op, and on an existing one it brings stored titles in line with the running code.
    Sku = apps.get_model("catalog", "Sku")
    changed = []
    for sku in Sku.objects.only("id", "title", "normalized_title").iterator(chunk_size=2000):
        normalized = normalize_title(sku.title)[:300]
        if normalized != sku.normalized_title:
            sku.normalized_title = normalized
            changed.append(sku)
    Sku.objects.bulk_update(changed, ["normalized_title"], batch_size=1000)


def grant_ops_manager(apps, schema_editor):
    app_config = apps.get_app_config("catalog")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="ops_manager").first()
    if group is None:
        return
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="catalog", codename__in=OPS_MANAGER_PERMISSIONS
        )
    )


def revoke_ops_manager(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="ops_manager").first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(
                content_type__app_label="catalog", codename__in=OPS_MANAGER_PERMISSIONS
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_sku_master_imports_listing_constraints"),
        # The role groups are created there.
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(renormalize_titles, migrations.RunPython.noop),
        migrations.RunPython(grant_ops_manager, revoke_ops_manager),
    ]
