"""Policy coverage: which policy judges each action on each active channel."""

from dataclasses import dataclass

from catalog.models import Channel

from .models import ActionType, Policy, PolicyVersion

CHANNEL_POLICY = "channel"
DEFAULT_POLICY = "default"
NO_POLICY = "none"


@dataclass(frozen=True)
class CoverageRow:
    action: ActionType
    channel: Channel
    source: str  # CHANNEL_POLICY, DEFAULT_POLICY or NO_POLICY
    version: PolicyVersion | None

    @property
    def is_explicit(self) -> bool:
        return self.source == CHANNEL_POLICY


def policy_coverage(*, missing_only: bool = False) -> list[CoverageRow]:
    """Return one row per active action and active channel, with the policy that judges it.

    A channel's own live policy wins over the policy for all channels, as in
    `guardrails.selectors.policy_for`. With `missing_only`, only the pairs without a
    policy of their own are returned.
    """
    actions = list(ActionType.objects.filter(is_active=True).order_by("code"))
    channels = list(Channel.objects.filter(is_active=True).order_by("code"))
    policies = Policy.objects.filter(live_version__isnull=False).select_related("live_version")
    live = {(policy.action_id, policy.channel_id): policy.live_version for policy in policies}

    rows = []
    for action in actions:
        for channel in channels:
            row = _coverage_row(action, channel, live)
            if not (missing_only and row.is_explicit):
                rows.append(row)
    return rows


def _coverage_row(action: ActionType, channel: Channel, live: dict) -> CoverageRow:
    own = live.get((action.pk, channel.pk))
    if own is not None:
        return CoverageRow(action, channel, CHANNEL_POLICY, own)
    default = live.get((action.pk, None))
    if default is not None:
        return CoverageRow(action, channel, DEFAULT_POLICY, default)
    return CoverageRow(action, channel, NO_POLICY, None)
