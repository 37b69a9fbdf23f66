"""Policy edits: validate a set of rules, store it as a new immutable version, publish it.

A policy is never edited in place. Every save creates version N+1 with its author, time and
changelog, and publishing points the policy's `live_version` at it. Decisions keep the version
that judged them, so an old decision still shows the rules it was judged by.
"""

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from omsguard.money import is_currency

from .models import (
    ActionType,
    Canary,
    CanaryStatus,
    CustomerTier,
    Mode,
    Policy,
    PolicyBand,
    PolicyVersion,
    SlaBreachAction,
    VersionKind,
)
from .services import audit_record

logger = logging.getLogger(__name__)

RULE_FIELDS = (
    "mode",
    "approver_group",
    "limits_currency",
    "order_value_under",
    "item_price_under",
    "confidence_above",
    "require_fresh_stock",
    "review_sla_minutes",
    "on_sla_breach",
    "escalation_group",
)
BAND_FIELDS = (
    "name",
    "order_value_from",
    "order_value_to",
    "customer_tier",
    "margin_rate_from",
    "mode",
    "item_price_under",
    "confidence_above",
)
LIMIT_FIELDS = ("order_value_under", "item_price_under", "confidence_above", "require_fresh_stock")
# Modes under which the engine checks limits; under the others limits cannot change a verdict.
LIMITED_MODES = (Mode.AUTONOMOUS, Mode.NEEDS_APPROVAL)
# ValidationError code of a publish rejected because a running or paused rule-set canary
# contains the draft.
CANARY_HOLDS_VERSION = "canary_holds_version"


def policy_rules_problems(
    *, action: ActionType, rules: Mapping[str, Any], bands: Iterable[Mapping[str, Any]] = ()
) -> dict[str, list[str]]:
    """Return what contradicts itself in a set of rules, by field; empty when they are valid.

    Keys are version fields ("mode", "approver_group", ...) and, for value bands,
    "bands.<index>.<field>". `rules` and `bands` use the model field names; groups may be
    Group rows or names.
    """
    problems: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        problems.setdefault(key, []).append(message)

    bands = [dict(band) for band in bands]
    rules = _rules_with_defaults(rules)
    mode = rules.get("mode")
    if mode not in Mode.values:
        add("mode", f"Unknown mode {mode!r}; choose one of {', '.join(Mode.values)}.")
        return problems

    _check_version_values(rules, add)
    _check_modes(action, rules, bands, add)
    _check_limits_matter(rules, bands, add)
    for index, band in enumerate(bands):
        _check_band(index, band, mode, add, has_applier=action.has_applier)
    _check_bands_reachable(bands, add)
    return problems


# The maximum duration of a policy or setting, in minutes: one year. A deadline further
# out is a typing error, and one past the year 9999 cannot be stored or compared at all.
MAX_DURATION_MINUTES = 365 * 24 * 60


def _check_version_values(rules: Mapping[str, Any], add) -> None:
    currency = rules.get("limits_currency") or ""
    if not is_currency(currency):
        add("limits_currency", f"Unknown currency {currency!r}; use an ISO 4217 code like USD.")

    for name in ("order_value_under", "item_price_under"):
        _check_positive_money(rules.get(name), name, add)
    _check_rate(rules.get("confidence_above"), "confidence_above", add, strict_upper=True)

    sla = rules.get("review_sla_minutes")
    if sla is None or int(sla) < 1:
        add("review_sla_minutes", "The review SLA must be at least 1 minute.")
    elif int(sla) > MAX_DURATION_MINUTES:
        add(
            "review_sla_minutes",
            f"The review SLA must be at most {MAX_DURATION_MINUTES:,} minutes (365 days).",
        )

    on_breach = rules.get("on_sla_breach") or SlaBreachAction.HOLD_ORDER
    if on_breach not in SlaBreachAction.values:
        add("on_sla_breach", f"Unknown SLA breach action {on_breach!r}.")
    if on_breach == SlaBreachAction.ESCALATE and not rules.get("escalation_group"):
        add("escalation_group", "Choose the group to escalate to, or keep the order on hold.")


def _check_modes(action: ActionType, rules: Mapping[str, Any], bands: list[dict], add) -> None:
    mode = rules["mode"]
    band_modes = [band.get("mode") for band in bands if band.get("mode")]
    if mode == Mode.AUTONOMOUS and not action.has_applier:
        add(
            "mode",
            f"{action.name} cannot be carried out by OMS Guard, so it cannot be autonomous; "
            "choose needs approval or recommend only.",
        )

    reachable = {mode, *band_modes}
    if reachable & set(LIMITED_MODES) and not rules.get("approver_group"):
        add(
            "approver_group",
            "Choose the group that approves queued proposals; autonomous and needs-approval "
            "policies queue proposals that fail a limit.",
        )


def _check_limits_matter(rules: Mapping[str, Any], bands: list[dict], add) -> None:
    """Reject version limits that can never change a verdict under the policy's modes."""
    mode = rules["mode"]
    if mode in LIMITED_MODES:
        return
    # A band can switch a recommend-only policy to a limited mode; then the limits apply.
    if mode == Mode.RECOMMEND_ONLY and any(band.get("mode") in LIMITED_MODES for band in bands):
        return

    label = Mode(mode).label.lower()
    for name in LIMIT_FIELDS:
        value = rules.get(name)
        if value not in (None, "", False):
            add(name, f"A {label} policy never checks limits; leave this empty.")


def _check_band(index: int, band: dict, version_mode: str, add, *, has_applier: bool) -> None:
    def add_band(name: str, message: str) -> None:
        add(f"bands.{index}.{name}", message)

    if not (band.get("name") or "").strip():
        add_band("name", "Name the band, e.g. 'Priority customers'.")

    band_mode = band.get("mode") or ""
    if band_mode and band_mode not in Mode.values:
        add_band("mode", f"Unknown mode {band_mode!r}.")
        return
    if version_mode == Mode.HARD_BLOCK:
        if band_mode == Mode.AUTONOMOUS:
            add_band("mode", "A band cannot make a hard-blocked action autonomous.")
        else:
            add_band(
                "mode",
                "A hard-blocked action is blocked for every order; use a needs-approval "
                "policy with a hard-block band to block only some orders.",
            )
        return

    if band_mode == Mode.AUTONOMOUS and not has_applier:
        add_band("mode", "OMS Guard cannot carry this action out, so no band can be autonomous.")

    tier = band.get("customer_tier") or CustomerTier.ANY
    if tier not in CustomerTier.values:
        add_band("customer_tier", f"Unknown customer tier {tier!r}.")

    _check_band_values(band, add_band)

    effective_mode = band_mode or version_mode
    has_limits = (
        band.get("item_price_under") is not None or band.get("confidence_above") is not None
    )
    if has_limits and effective_mode not in LIMITED_MODES:
        label = Mode(effective_mode).label.lower()
        for name in ("item_price_under", "confidence_above"):
            if band.get(name) is not None:
                add_band(name, f"Orders in this band are {label}; limits are never checked.")
    if not band_mode and not has_limits:
        add_band("mode", "The band changes nothing; set a mode or a limit, or remove it.")


def _check_band_values(band: dict, add_band) -> None:
    _check_positive_money(band.get("item_price_under"), "item_price_under", add_band)
    _check_rate(band.get("confidence_above"), "confidence_above", add_band, strict_upper=True)
    _check_rate(band.get("margin_rate_from"), "margin_rate_from", add_band)

    value_from = band.get("order_value_from")
    value_to = band.get("order_value_to")
    if value_from is not None and Decimal(value_from) < 0:
        add_band("order_value_from", "An order value cannot be negative.")
    if value_to is not None and Decimal(value_to) <= 0:
        add_band("order_value_to", "The upper bound must be more than 0.")
    if value_from is not None and value_to is not None and Decimal(value_from) >= Decimal(value_to):
        add_band("order_value_to", "The upper bound must be more than the lower bound.")


def _check_bands_reachable(bands: list[dict], add) -> None:
    """Reject a band that an earlier band always matches first: bands are tried in order."""
    for index, band in enumerate(bands):
        for earlier_index, earlier in enumerate(bands[:index]):
            if _band_covers(earlier, band):
                name = earlier.get("name") or f"#{earlier_index + 1}"
                add(
                    f"bands.{index}.order_value_from",
                    f"This band is never reached: band {name!r} before it matches every "
                    "order this band matches. Reorder or narrow the bands.",
                )
                break


def _band_covers(first: dict, second: dict) -> bool:
    """Return whether every order that matches `second` also matches `first`."""
    first_tier = first.get("customer_tier") or CustomerTier.ANY
    second_tier = second.get("customer_tier") or CustomerTier.ANY
    if first_tier != CustomerTier.ANY and first_tier != second_tier:
        return False
    if not _lower_covers(first.get("order_value_from"), second.get("order_value_from")):
        return False
    if not _lower_covers(first.get("margin_rate_from"), second.get("margin_rate_from")):
        return False

    first_to, second_to = first.get("order_value_to"), second.get("order_value_to")
    if first_to is None:
        return True
    return second_to is not None and Decimal(second_to) <= Decimal(first_to)


def _lower_covers(first_from, second_from) -> bool:
    if first_from is None:
        return True
    return second_from is not None and Decimal(first_from) <= Decimal(second_from)


def _check_positive_money(value, name: str, add) -> None:
    if value is not None and Decimal(value) <= 0:
        add(name, "The limit must be more than 0: no amount is under 0, and money is not negative.")


def _check_rate(value, name: str, add, *, strict_upper: bool = False) -> None:
    if value is None:
        return
    rate = Decimal(value)
    if rate < 0 or rate > 1:
        add(name, f"{rate} is outside 0 to 1; write 92 % as 0.92.")
    elif strict_upper and rate == 1:
        add(name, "No confidence is above 1; use needs approval instead.")


# --- Writes ------------------------------------------------------------------------------------


@transaction.atomic
def policy_version_create(
    *,
    policy: Policy,
    user: AbstractBaseUser | None,
    changelog: str,
    bands: Iterable[Mapping[str, Any]] = (),
    **rules: Any,
) -> PolicyVersion:
    """Validate the rules and store them as the policy's next version, a draft.

    `rules` are PolicyVersion fields (groups as Group rows or names); `bands` are dicts of
    PolicyBand fields, in the order they are tried. Raises ValidationError with field-level
    messages (band fields as "bands.<index>.<field>"), or PermissionDenied for a user who
    may not add policy versions. `user=None` is for internal callers such as data loads.
    """
    _require_permission(user, "guardrails.add_policyversion")
    unknown = set(rules) - set(RULE_FIELDS)
    if unknown:
        raise TypeError(f"Unknown policy rule fields: {', '.join(sorted(unknown))}")

    rules = _rules_with_groups(_rules_with_defaults(rules))
    bands = [dict(band) for band in bands]
    problems = policy_rules_problems(action=policy.action, rules=rules, bands=bands)
    if not (changelog or "").strip():
        problems.setdefault("changelog", []).append("Say what changed and why.")
    if problems:
        raise ValidationError(problems)

    # Lock the policy row so two editors cannot both take the same version number.
    policy = Policy.objects.select_for_update().select_related("action").get(pk=policy.pk)
    number = (policy.versions.aggregate(Max("number"))["number__max"] or 0) + 1
    version = PolicyVersion.objects.create(
        policy=policy, number=number, changelog=changelog.strip(), created_by=user, **rules
    )
    for position, band in enumerate(bands):
        values = {name: band.get(name) for name in BAND_FIELDS if band.get(name) is not None}
        PolicyBand.objects.create(version=version, position=position, **values)

    _audit(
        user,
        "policy_version.created",
        policy,
        reason=f"v{number}: {version.changelog}",
        after=_snapshot(version),
    )
    logger.info(
        "policy version created",
        extra={"policy_id": policy.pk, "version_id": version.pk, "number": number},
    )
    return version


@transaction.atomic
def policy_version_publish(
    *,
    version: PolicyVersion,
    user: AbstractBaseUser | None,
    promoted_canary_id: int | None = None,
) -> PolicyVersion:
    """Make a draft the live version of its policy.

    Raises ValidationError (field "version") for a published version, and for a draft in
    the candidate of a running or paused rule-set canary (code CANARY_HOLDS_VERSION),
    because publishing it would judge every order by the candidate while the canary still
    compares. Only that canary's promotion, which passes `promoted_canary_id`, may publish it.
    """
    _require_permission(user, "guardrails.publish_policyversion")
    policy = Policy.objects.select_for_update().get(pk=version.policy_id)
    version = PolicyVersion.objects.get(pk=version.pk)
    if version.published_at is not None:
        raise ValidationError(
            {"version": [f"{version} is already published; create a new version instead."]}
        )
    # canary_start locks this policy row too, so a canary that starts concurrently is either
    # committed before this check or finds the version published.
    _check_no_canary_holds(version, promoted_canary_id)

    previous = policy.live_version
    version.published_at = timezone.now()
    version.published_by = user
    version.save(update_fields=["published_at", "published_by"])

    policy.live_version = version
    fields = ["live_version"]
    if policy.shadow_version_id == version.pk:
        policy.shadow_version = None
        fields.append("shadow_version")
    policy.save(update_fields=fields)

    _audit(
        user,
        "policy_version.published",
        policy,
        reason=f"v{version.number}: {version.changelog}",
        before={"live_version": previous.number if previous else None},
        after={"live_version": version.number},
    )
    logger.info(
        "policy version published",
        extra={"policy_id": policy.pk, "version_id": version.pk, "number": version.number},
    )
    return version


@transaction.atomic
def policy_version_set_shadow(
    *, policy: Policy, version: PolicyVersion | None, user: AbstractBaseUser | None
) -> Policy:
    """Run a draft in shadow beside the live version, or stop shadowing with `version=None`."""
    _require_permission(user, "guardrails.publish_policyversion")
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if version is not None and version.policy_id != policy.pk:
        raise ValidationError({"version": [f"{version} belongs to another policy."]})
    if version is not None and version.published_at is not None:
        raise ValidationError(
            {"version": [f"{version} is published, but only drafts run in shadow."]}
        )

    previous = policy.shadow_version
    policy.shadow_version = version
    policy.save(update_fields=["shadow_version"])

    _audit(
        user,
        "policy.shadow_set",
        policy,
        reason=f"Shadow version of {policy}",
        before={"shadow_version": previous.number if previous else None},
        after={"shadow_version": version.number if version else None},
    )
    return policy


def _check_no_canary_holds(version: PolicyVersion, promoted_canary_id: int | None) -> None:
    canary = (
        Canary.objects.filter(
            status__in=(CanaryStatus.RUNNING, CanaryStatus.PAUSED),
            candidate__kind=VersionKind.RULE_SET,
            candidate__policy_versions=version,
        )
        .exclude(pk=promoted_canary_id)
        .order_by("pk")
        .first()
    )
    if canary is None:
        return
    message = (
        f"{version} belongs to the candidate of canary {canary.name}, which is {canary.status}; "
        "promote or stop that canary instead of publishing the draft."
    )
    raise ValidationError({"version": [ValidationError(message, code=CANARY_HOLDS_VERSION)]})


def _require_permission(user: AbstractBaseUser | None, permission: str) -> None:
    if user is not None and not user.has_perm(permission):
        raise PermissionDenied(f"{user.get_username()} lacks {permission}.")


def _rules_with_defaults(rules: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the rule fields a caller left out with the model's defaults."""
    filled = dict(rules)
    for name in RULE_FIELDS:
        if filled.get(name) is None:
            model_field = PolicyVersion._meta.get_field(name)
            filled[name] = model_field.get_default() if model_field.has_default() else None
    return filled


def _rules_with_groups(rules: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve group names to rows; an unknown name is a field error."""
    resolved = dict(rules)
    problems = {}
    for name in ("approver_group", "escalation_group"):
        value = resolved.get(name)
        if isinstance(value, str):
            group = Group.objects.filter(name=value).first()
            if group is None:
                problems[name] = [f"No group is named {value!r}."]
            resolved[name] = group
    if problems:
        raise ValidationError(problems)
    return resolved


def _snapshot(version: PolicyVersion) -> dict:
    """Return the version's rules as JSON for the audit log."""
    snapshot = {}
    for name in RULE_FIELDS:
        value = getattr(version, name)
        if isinstance(value, Group):
            value = value.name
        snapshot[name] = str(value) if isinstance(value, Decimal) else value
    snapshot["number"] = version.number
    snapshot["bands"] = [
        {name: _jsonable(getattr(band, name)) for name in BAND_FIELDS}
        for band in version.bands.all()
    ]
    return snapshot


def _jsonable(value):
    return str(value) if isinstance(value, Decimal) else value


def _audit(user, action: str, policy: Policy, *, reason: str, before=None, after=None) -> None:
    audit_record(
        action=action,
        target_type="guardrails.Policy",
        target_id=policy.pk,
        actor=user,
        system_label="" if user is not None else "guardrails.policies",
        reason=reason,
        before=before,
        after=after,
    )
