"""Serializers of the decisions API."""

from rest_framework import serializers

from .models import Decision, DecisionOutcome


class DecisionProposeSerializer(serializers.Serializer):
    """An AI agent's proposal; the service checks the values, this only checks the types."""

    action = serializers.CharField(
        max_length=64, help_text="Action type code, e.g. substitute_sku."
    )
    order = serializers.IntegerField(help_text="OMS Guard order id.")
    before = serializers.JSONField(
        help_text="The order's state the agent saw, in the action's shape."
    )
    after = serializers.JSONField(help_text="The state the agent proposes, in the action's shape.")
    confidence = serializers.DecimalField(
        max_digits=None, decimal_places=None, help_text="The model's confidence, 0 to 1."
    )
    model_name = serializers.CharField(max_length=200)
    model_version = serializers.CharField(max_length=100)
    # Longer than any explanation a reviewer reads; notes elsewhere stop at 2,000.
    rationale = serializers.CharField(
        allow_blank=True,
        required=False,
        default="",
        max_length=10_000,
        help_text="The model's explanation, shown to reviewers; at most 10,000 characters.",
    )


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
