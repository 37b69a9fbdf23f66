"""Give the role groups their guardrail permissions: who may propose, review and edit policies."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CS_AGENT = [
    "guardrails.view_decision",
    "guardrails.view_actiontype",
    "guardrails.view_policy",
    "guardrails.view_policyversion",
]

ROLE_PERMISSIONS = {
    # Agents propose decisions and report upstream degradation through the API.
    "integration": [
        "guardrails.propose_decision",
        "guardrails.view_decision",
        "guardrails.view_actiontype",
        "guardrails.view_breaker",
        "guardrails.report_degradation",
    ],
    "cs_agent": CS_AGENT,
    "cs_manager": [
        *CS_AGENT,
        "guardrails.revert_decision",
        "guardrails.label_decision",
        "guardrails.view_breaker",
        "guardrails.view_breakerevent",
        "guardrails.view_autonomygate",
    ],
    # Only ops managers edit policies: adding a version is how a policy is edited.
    "ops_manager": [
        "guardrails.view_policy",
        "guardrails.add_policy",
        "guardrails.change_policy",
        "guardrails.view_policyversion",
        "guardrails.add_policyversion",
        "guardrails.view_policyband",
        "guardrails.add_policyband",
        "guardrails.change_policyband",
        "guardrails.publish_policyversion",
        "guardrails.view_actiontype",
        "guardrails.change_actiontype",
        "guardrails.view_guardrailsettings",
        "guardrails.change_guardrailsettings",
        "guardrails.view_decision",
        "guardrails.revert_decision",
        "guardrails.label_decision",
        "guardrails.view_breaker",
        "guardrails.change_breaker",
        "guardrails.operate_breaker",
        "guardrails.view_breakerevent",
        "guardrails.view_autonomygate",
        "guardrails.view_backtestrun",
        "guardrails.add_backtestrun",
        "guardrails.view_shadowevaluation",
    ],
}


def grant_guardrail_permissions(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create this app's now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("guardrails")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*_permissions(apps, codes))


def revoke_guardrail_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for role, codes in ROLE_PERMISSIONS.items():
        group = Group.objects.filter(name=role).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, codes))


def _permissions(apps, codes: list[str]) -> list:
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for code in codes:
        app_label, codename = code.split(".")
        permissions.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return permissions


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("reviews", "0002_roles"),
        ("guardrails", "0002_guardrail_engine"),
    ]

    operations = [migrations.RunPython(grant_guardrail_permissions, revoke_guardrail_permissions)]
