"""Ops managers may see and delete login lockouts (django-axes access attempts) in the admin."""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {"ops_manager": ["axes.view_accessattempt", "axes.delete_accessattempt"]}


def grant_unlock_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_unlock_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0010_label_taxonomy_and_roles"),
        ("axes", "0010_accessattemptexpiration"),
    ]

    operations = [migrations.RunPython(grant_unlock_permissions, revoke_unlock_permissions)]
