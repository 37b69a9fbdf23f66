"""Serializers of the versions and canaries API.

Input serializers check types and the numeric bounds of a canary's run and rollback rule,
which the schema then shows. A whole number or boolean must arrive as a JSON number or
boolean, because DRF would read "5" or "yes" and a client with a type bug would never learn
of it. Decimals (the share and the rollback threshold) may come as text or a JSON number.
The rollouts service checks the values again and checks the rest, such as the share's range,
a draft candidate and one policy version per policy, and names the field.
"""

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import Channel
from omsguard.json_fields import StrictBooleanField, StrictIntegerField
from omsguard.query_params import QuerySerializer

from .models import (
    ActionType,
    Canary,
    CanaryEvent,
    CanaryStatus,
    PolicyVersion,
    Version,
    VersionKind,
    VersionStatus,
)
from .rollouts import MAX_DAYS, MAX_EXCEPTION_INCREASE_PP, MAX_MIN_ORDERS_PER_ARM

# Decimals go out as strings, exactly as stored; no rounding on the way.
EXACT = {"max_digits": None, "decimal_places": None}


def _one_of(choices) -> str:
    return "One of: " + ", ".join(choices.values) + "."


class TextField(serializers.CharField):
    """Text field that rejects non-strings, because DRF's CharField turns 123 into "123"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeNumberField(StrictIntegerField):
    """Whole number that must arrive as a JSON number: never "5", 5.0, true or false.

    Python counts true and false as 1 and 0, so they get a message of their own.
    """

    default_error_messages = {"boolean": "Must be a whole number, not true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("boolean")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class DecimalTextField(serializers.Field):
    """Decimal field that accepts a JSON string or number and passes it on as text.

    The rollouts service checks the value and gives one message that states the whole rule
    (range and decimal places), in place of DRF's digit counts.
    """

    default_error_messages = {"invalid": "Must be a decimal number, as text or a JSON number."}

    def to_internal_value(self, data) -> str:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        return data.strip() if isinstance(data, str) else str(data)

    def to_representation(self, value) -> str:
        return str(value)


class VersionSerializer(serializers.ModelSerializer):
    # Plain text, not enums: several components have a "kind" or "status" with other values,
    # and the schema would give these enums generated names.
    kind = serializers.CharField(read_only=True, help_text=_one_of(VersionKind))
    status = serializers.CharField(read_only=True, help_text=_one_of(VersionStatus))
    action = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Version
        fields = [
            "id",
            "kind",
            "subject",
            "label",
            "action",
            "status",
            "changelog",
            "config",
            "policy_versions",
            "created_by",
            "created_at",
            "activated_at",
            "retired_at",
        ]
        read_only_fields = fields


class VersionDetailSerializer(VersionSerializer):
    fixed_labels = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Ids of the labelled errors this version fixed."
    )
    fix_items = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Ids of the backlog entries this version fixed."
    )

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "fixed_labels", "fix_items"]
        read_only_fields = fields


class VersionCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=VersionKind.choices)
    subject = TextField(
        max_length=200, help_text="The model name decisions carry, or the rule set's name."
    )
    label = TextField(
        max_length=100, help_text="The model version decisions carry, or the rule set's version."
    )
    action = serializers.SlugRelatedField(
        slug_field="code",
        queryset=ActionType.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Action type code this version proposes or judges; empty for several.",
    )
    changelog = TextField(help_text="What changed and why.")
    config = serializers.JSONField(
        required=False, default=dict, help_text="Prompt text or recommender settings."
    )
    policy_versions = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=PolicyVersion.objects.all(),
        pk_field=StrictIntegerField(),
        required=False,
        default=list,
        help_text="Rule sets only: ids of draft policy versions, at most one per policy.",
    )


class NoteSerializer(serializers.Serializer):
    note = TextField(max_length=2000, help_text="Why; recorded with the change.")


class ResumeSerializer(serializers.Serializer):
    note = TextField(max_length=2000, required=False, default="", allow_blank=True)
    days = WholeNumberField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"Run this many more days from now, 1 to {MAX_DAYS}; needed once the run "
        "is over.",
    )


class CanaryEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CanaryEvent
        fields = ["id", "kind", "detail", "data", "actor", "created_at"]
        read_only_fields = fields


class CanarySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text=_one_of(CanaryStatus))
    # CharField shows str(version); DRF gives null itself when there is no control, whereas
    # a source of "control.__str__" would show the method of None.
    candidate_label = serializers.CharField(source="candidate", read_only=True)
    control_label = serializers.CharField(
        source="control",
        read_only=True,
        allow_null=True,
        help_text="Null when the subject had no active version at the start.",
    )
    action = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    channel = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    ended_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Canary
        fields = [
            "id",
            "name",
            "candidate",
            "candidate_label",
            "control",
            "control_label",
            "action",
            "channel",
            "share",
            "shadow",
            "exclude_priority_skus",
            "days",
            "min_orders_per_arm",
            "max_exception_increase_pp",
            "status",
            "started_at",
            "ends_at",
            "ended_at",
            "ended_by",
            "end_reason",
            "last_evaluated_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class CanaryDetailSerializer(CanarySerializer):
    events = serializers.SerializerMethodField()

    class Meta(CanarySerializer.Meta):
        fields = [*CanarySerializer.Meta.fields, "result", "last_evaluation", "events"]
        read_only_fields = fields

    def get_events(self, canary: Canary) -> list[dict]:
        events = canary.events.select_related("actor").order_by("-created_at", "-id")[:100]
        return CanaryEventSerializer(events, many=True).data


class CanaryStartSerializer(serializers.Serializer):
    candidate = WholeNumberField(help_text="Id of a draft version.")
    name = TextField(max_length=200, required=False, default="", allow_blank=True)
    share = DecimalTextField(
        required=False,
        default="0.05",
        help_text="Share of orders sent to the candidate, from 0.01 to 0.05 (1 to 5 %), with "
        "at most 4 decimal places.",
    )
    shadow = StrictBooleanField(
        required=False, default=False, help_text="Record the candidate's decisions, not apply."
    )
    action = serializers.SlugRelatedField(
        slug_field="code",
        queryset=ActionType.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Action type code; empty for the candidate's action.",
    )
    channel = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Channel.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Channel code; empty for every channel.",
    )
    exclude_priority_skus = StrictBooleanField(
        required=False, default=False, help_text="Keep orders with a priority SKU on the control."
    )
    days = WholeNumberField(
        required=False,
        default=14,
        min_value=1,
        max_value=MAX_DAYS,
        help_text=f"How many days it runs, 1 to {MAX_DAYS}.",
    )
    min_orders_per_arm = WholeNumberField(
        required=False,
        default=1000,
        min_value=1,
        max_value=MAX_MIN_ORDERS_PER_ARM,
        help_text="Orders per arm before the rollback rule judges, "
        f"1 to {MAX_MIN_ORDERS_PER_ARM:,}.",
    )
    max_exception_increase_pp = serializers.DecimalField(
        max_digits=6,
        decimal_places=3,
        required=False,
        default="0.100",
        # 0.001 is the smallest value above 0 at 3 decimal places.
        min_value=Decimal("0.001"),
        max_value=MAX_EXCEPTION_INCREASE_PP,
        help_text="Roll back above this increase of the exception rate, in percentage points: "
        f"more than 0 and at most {MAX_EXCEPTION_INCREASE_PP}.",
    )


class CanaryShareSerializer(serializers.Serializer):
    share = DecimalTextField(
        help_text="New share, from 0.01 to 0.05, with at most 4 decimal places."
    )
    note = TextField(max_length=2000, required=False, default="", allow_blank=True)


class CanaryPauseSerializer(serializers.Serializer):
    reason = TextField(max_length=2000, help_text="Why the canary pauses.")


class ArmSerializer(serializers.Serializer):
    """One arm's figures. Rates are fractions: 0.0021 is 0.21 %."""

    version = serializers.CharField(
        allow_null=True, help_text="The arm's version label; null when no control was recorded."
    )
    orders = serializers.IntegerField(
        help_text="Orders of the arm with at least one decision in the canary (its sample size)."
    )
    decisions = serializers.IntegerField()
    verdicts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Decisions per verdict."
    )
    reviewed = serializers.IntegerField()
    disagreed = serializers.IntegerField()
    disagreement_rate = serializers.DecimalField(allow_null=True, **EXACT)
    orders_with_fulfilment_exceptions = serializers.IntegerField(
        help_text="Orders with any outcome the rollback rule counts, after they joined the arm."
    )
    orders_with_reported_exceptions = serializers.IntegerField(
        required=False, help_text="Orders with a reported pick, pack or ship exception."
    )
    orders_with_failed_deliveries = serializers.IntegerField(
        required=False, help_text="Orders with a shipment that failed or came back."
    )
    orders_with_fulfilment_returns = serializers.IntegerField(
        required=False, help_text="Orders with a return attributed to fulfilment."
    )
    fulfilment_exception_rate = serializers.DecimalField(allow_null=True, **EXACT)
    returns = serializers.IntegerField(help_text="Orders with at least one return.")
    return_rate = serializers.DecimalField(allow_null=True, **EXACT)


class ThresholdsSerializer(serializers.Serializer):
    max_exception_increase_pp = serializers.DecimalField(**EXACT)
    min_orders_per_arm = WholeNumberField()
    significance_level = serializers.DecimalField(required=False, **EXACT)


class ComparisonSerializer(serializers.Serializer):
    canary = serializers.IntegerField()
    status = serializers.CharField(help_text="The canary's status when compared.")
    shadow = StrictBooleanField()
    computed_at = serializers.DateTimeField()
    control = ArmSerializer()
    candidate = ArmSerializer()
    difference_pp = serializers.DecimalField(
        allow_null=True,
        help_text="Candidate's fulfilment exception rate minus the control's, in pp.",
        **EXACT,
    )
    p_value = serializers.DecimalField(allow_null=True, **EXACT)
    significant = serializers.BooleanField(help_text="The difference is significant at 95 %.")
    significance = serializers.CharField(
        help_text='"significant at 95 %", "not significant" or "too little data (inconclusive)".'
    )
    outcome = serializers.ChoiceField(choices=["inconclusive", "healthy", "rollback"])
    thresholds = ThresholdsSerializer()
    attached = serializers.BooleanField(
        help_text="True when this is the comparison stored when the canary ended."
    )


class AssignmentQuerySerializer(QuerySerializer):
    order = serializers.IntegerField(help_text="OMS Guard order id.")
    action = serializers.CharField(max_length=64, help_text="Action type code.")
    model = serializers.CharField(max_length=200, help_text="The agent's model name.")


class AssignmentSerializer(serializers.Serializer):
    canary = serializers.IntegerField(
        allow_null=True, help_text="Id of the canary the order is in; null when none covers it."
    )
    name = serializers.CharField(required=False, help_text="The canary's name.")
    kind = serializers.CharField(required=False, help_text="The candidate version's kind.")
    arm = serializers.CharField(required=False, help_text="control or candidate.")
    model_version = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="The model version to propose with for this arm; null for rule sets and for "
        "a control with no recorded active version.",
    )
    control_model_version = serializers.CharField(
        required=False, allow_null=True, help_text="The active version's label."
    )
    config = serializers.JSONField(required=False, help_text="The arm's prompt or settings.")
    shadow = StrictBooleanField(
        required=False,
        help_text="Shadow canary: propose with the active version as usual and, on candidate-arm "
        "orders, also with model_version; that second decision is recorded, never applied.",
    )
