"""Reads for the guardrail engine: the policy that judges an action, and the settings row."""

from catalog.models import Channel

from .models import ActionType, GuardrailSettings, Policy, PolicyVersion


def guardrail_settings() -> GuardrailSettings:
    """The editable engine settings; the row is created with its defaults on first use."""
    settings_row, _ = GuardrailSettings.objects.get_or_create(pk=1)
    return settings_row


def action_get(*, code: str) -> ActionType | None:
    return ActionType.objects.filter(code=code, is_active=True).first()


def policy_for(*, action: ActionType, channel: Channel | None) -> Policy | None:
    """The channel's own policy for the action, else the policy for all channels."""
    policies = Policy.objects.filter(action=action, live_version__isnull=False)
    if channel is not None:
        own = policies.filter(channel=channel).first()
        if own is not None:
            return own
    return policies.filter(channel__isnull=True).first()


def policy_version_live_for(*, action: ActionType, channel: Channel | None) -> PolicyVersion | None:
    """The live version that judges the action on the channel, with what evaluation reads."""
    policy = policy_for(action=action, channel=channel)
    if policy is None:
        return None
    return (
        PolicyVersion.objects.select_related(
            "policy__action", "policy__channel", "approver_group", "escalation_group"
        )
        .prefetch_related("bands")
        .get(pk=policy.live_version_id)
    )
