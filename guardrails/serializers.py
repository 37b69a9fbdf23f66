"""Serializers of the decisions API."""

import json
from decimal import Decimal, DecimalException

from rest_framework import serializers

from omsguard.json_fields import StrictCharField

from .models import Decision, DecisionOutcome

# The largest `before` or `after`, in bytes of compact UTF-8 JSON. Every action's shape is an
# address, a carrier service, a status, a line and SKU or a list of shipments: a few hundred
# bytes in the documented examples. Each value is copied into the decision, its audit entries
# and its review item, and the review page shows it, so without a cap one proposal could store
# megabytes several times over.
PROPOSAL_STATE_MAX_BYTES = 16_384


class ProposalStateField(serializers.JSONField):
    """A JSON value of at most PROPOSAL_STATE_MAX_BYTES. The service checks that it is an object."""

    default_error_messages = {
        "too_large": (
            "Ensure this value is at most {max_bytes} bytes as compact JSON (it is {size})."
        ),
    }

    def to_internal_value(self, data: object) -> object:
        value = super().to_internal_value(data)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        # "surrogatepass" counts an unpaired surrogate instead of raising, because the service
        # rejects it with its own message (invalid_text).
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > PROPOSAL_STATE_MAX_BYTES:
            self.fail("too_large", max_bytes=PROPOSAL_STATE_MAX_BYTES, size=size)
        return value


class ConfidenceField(serializers.DecimalField):
    """The model's confidence: a JSON number, or a decimal string such as "0.95".

    `coerce_to_string=False` only makes the OpenAPI schema give the type as a number. The field
    reads strings and numbers alike, and no response serializes it.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_digits=None, decimal_places=None, coerce_to_string=False, **kwargs)


class DecisionProposeSerializer(serializers.Serializer):
    """An AI agent's proposal; the service checks the values, this only checks the types."""

    action = serializers.CharField(
        max_length=64, help_text="Action type code, e.g. substitute_sku."
    )
    order = serializers.IntegerField(help_text="OMS Guard order id.")
    before = ProposalStateField(
        help_text="The order's state the agent saw, in the action's shape; at most 16,384 "
        "bytes as JSON."
    )
    after = ProposalStateField(
        help_text="The state the agent proposes, in the action's shape; at most 16,384 bytes "
        "as JSON."
    )
    confidence = ConfidenceField(
        help_text='The model\'s confidence, 0 to 1. A decimal string such as "0.95" is also '
        "accepted."
    )
    model_name = serializers.CharField(max_length=200)
    model_version = serializers.CharField(max_length=100)
    # Longer than any explanation a reviewer reads; notes elsewhere stop at 2,000.
    rationale = StrictCharField(
        allow_blank=True,
        required=False,
        default="",
        max_length=10_000,
        help_text="The model's explanation, shown to reviewers; at most 10,000 characters.",
    )


def proposal_validated_plain(data: object) -> dict | None:
    """Return what DecisionProposeSerializer validates `data` to, or None to use the serializer.

    DRF's field loop took about 370 Python calls per proposal under cProfile. This function
    takes a few dozen for the plain case: a JSON object whose every field has its JSON type
    and passes every check. It returns None for anything else, so errors and conversions stay
    DRF's. NOTE: a field or check added to DecisionProposeSerializer must be added here too.
    tests/guardrails/test_decision_plain_validation.py compares both on many bodies.
    """
    if type(data) is not dict:
        return None
    action = _plain_text(data.get("action"), 64)
    model_name = _plain_text(data.get("model_name"), 200)
    model_version = _plain_text(data.get("model_version"), 100)
    order = data.get("order")
    before = data.get("before")
    after = data.get("after")
    confidence = _plain_decimal(data.get("confidence"))
    rationale = data.get("rationale", "")
    if (
        action is None
        or model_name is None
        or model_version is None
        or type(order) is not int
        or not _plain_state(before)
        or not _plain_state(after)
        or confidence is None
        or type(rationale) is not str
    ):
        return None
    if rationale.strip() == "":
        # DRF returns "" for a blank value without stripping or checking it further.
        rationale = ""
    else:
        rationale = _plain_text(rationale, 10_000)
        if rationale is None:
            return None
    return {
        "action": action,
        "order": order,
        "before": before,
        "after": after,
        "confidence": confidence,
        "model_name": model_name,
        "model_version": model_version,
        "rationale": rationale,
    }


def _plain_text(value: object, max_length: int) -> str | None:
    """Return a CharField's value for a string that passes its checks, else None."""
    if type(value) is not str:
        return None
    value = value.strip()
    if not value or len(value) > max_length or "\x00" in value:
        return None
    try:
        # DRF rejects unpaired surrogates, which UTF-8 cannot encode.
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _plain_decimal(value: object) -> Decimal | None:
    """Return ConfidenceField's value for a finite number or numeric string, else None."""
    if type(value) is str:
        text = value.strip()
        if len(text) > serializers.DecimalField.MAX_STRING_LENGTH:
            return None
    elif type(value) in (int, float):
        text = str(value)
    else:
        return None
    try:
        number = Decimal(text)
    except DecimalException:
        return None
    return number if number.is_finite() else None


def _plain_state(value: object) -> bool:
    """Return whether ProposalStateField accepts `value` as it is: an object within the size cap."""
    if type(value) is not dict:
        return False
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return len(text.encode()) <= PROPOSAL_STATE_MAX_BYTES
    except (TypeError, ValueError):
        # Not JSON, or an unpaired surrogate, so the field decides.
        return False


class DecisionSerializer(serializers.ModelSerializer):
    action = serializers.SlugRelatedField(slug_field="code", read_only=True)
    channel = serializers.SlugRelatedField(slug_field="code", read_only=True)
    fired = serializers.SerializerMethodField(help_text="The reasons that failed or blocked.")
    policy_version_label = serializers.SerializerMethodField()
    reverted_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    labelled_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    # Plain text fields: other components already use an "outcome" enum with other values.
    outcome = serializers.CharField(read_only=True, help_text="unlabelled, correct or error.")

    class Meta:
        model = Decision
        fields = [
            "id",
            "action",
            "order",
            "channel",
            "model_name",
            "model_version",
            "confidence",
            "rationale",
            "before",
            "after",
            "verdict",
            "reasons",
            "fired",
            "review_item",
            "policy_version",
            "policy_version_label",
            "applied_at",
            "apply_error",
            "reverted_at",
            "reverted_by",
            "outcome",
            "labelled_at",
            "labelled_by",
            "label_note",
            "latency_ms",
            "created_at",
        ]
        read_only_fields = fields

    def get_fired(self, decision: Decision) -> list[dict]:
        return [reason for reason in decision.reasons if reason["outcome"] in ("fail", "block")]

    def get_policy_version_label(self, decision: Decision) -> str | None:
        return str(decision.policy_version) if decision.policy_version_id else None


def decision_representation(decision: Decision, serializer: DecisionSerializer) -> dict:
    """Return what `serializer.to_representation(decision)` returns, with fewer calls.

    `serializer` is a DecisionSerializer whose bound fields format the decimal, choice and
    time values, so those keep DRF's format. The rest is read from the decision directly,
    which skips DRF's loop of get_attribute and to_representation over every field.
    NOTE: a field added to DecisionSerializer must be added here too;
    tests/guardrails/test_decisions2_response.py compares the two for every verdict.
    """
    fields = serializer.fields
    return {
        "id": decision.pk,
        "action": decision.action.code,
        "order": decision.order_id,
        "channel": decision.channel.code if decision.channel_id is not None else None,
        "model_name": decision.model_name,
        "model_version": decision.model_version,
        "confidence": _formatted(fields["confidence"], decision.confidence),
        "rationale": decision.rationale,
        "before": decision.before,
        "after": decision.after,
        "verdict": _formatted(fields["verdict"], decision.verdict),
        "reasons": decision.reasons,
        "fired": serializer.get_fired(decision),
        "review_item": decision.review_item_id,
        "policy_version": decision.policy_version_id,
        "policy_version_label": serializer.get_policy_version_label(decision),
        "applied_at": _formatted(fields["applied_at"], decision.applied_at),
        "apply_error": decision.apply_error,
        "reverted_at": _formatted(fields["reverted_at"], decision.reverted_at),
        "reverted_by": decision.reverted_by.username if decision.reverted_by_id else None,
        "outcome": str(decision.outcome),
        "labelled_at": _formatted(fields["labelled_at"], decision.labelled_at),
        "labelled_by": decision.labelled_by.username if decision.labelled_by_id else None,
        "label_note": decision.label_note,
        "latency_ms": float(decision.latency_ms) if decision.latency_ms is not None else None,
        "created_at": _formatted(fields["created_at"], decision.created_at),
    }


def _formatted(field: serializers.Field, value: object) -> object:
    # DRF leaves None as None without calling the field.
    return None if value is None else field.to_representation(value)


class DecisionDetailSerializer(DecisionSerializer):
    class Meta(DecisionSerializer.Meta):
        fields = [*DecisionSerializer.Meta.fields, "facts"]
        read_only_fields = fields


class DecisionRevertSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")
    outcome = serializers.CharField(
        default=DecisionOutcome.ERROR,
        help_text="The label the revert gives the decision: error, or correct when only plans "
        "changed.",
    )

    def validate_outcome(self, value: str) -> str:
        return _label_outcome(value)


class DecisionLabelSerializer(serializers.Serializer):
    outcome = serializers.CharField(help_text="correct or error.")
    note = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")

    def validate_outcome(self, value: str) -> str:
        return _label_outcome(value)


def _label_outcome(value: str) -> str:
    if value not in (DecisionOutcome.CORRECT, DecisionOutcome.ERROR):
        raise serializers.ValidationError(f"{value!r} is not a label; use correct or error.")
    return value
