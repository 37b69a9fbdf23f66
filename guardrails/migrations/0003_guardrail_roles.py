"""Give the role groups their guardrail permissions: who may propose, review and edit policies."""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

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
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_guardrail_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("reviews", "0002_roles"),
        ("guardrails", "0002_guardrail_engine"),
    ]

    operations = [migrations.RunPython(grant_guardrail_permissions, revoke_guardrail_permissions)]
