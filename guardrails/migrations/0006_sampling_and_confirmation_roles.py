"""Let the managers read audit sampling rates and customer address confirmations."""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {
    "ops_manager": ["guardrails.view_samplingstate", "reviews.view_addressconfirmation"],
    "cs_manager": ["guardrails.view_samplingstate", "reviews.view_addressconfirmation"],
}


def grant_sampling_views(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_sampling_views(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("guardrails", "0005_sampling_and_review_settings"),
        ("reviews", "0008_open_items_routing"),
    ]

    operations = [migrations.RunPython(grant_sampling_views, revoke_sampling_views)]
