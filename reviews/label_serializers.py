"""Serializers of the label taxonomy and error labels API."""

from rest_framework import serializers

from omsguard.json_fields import StrictCharField

from .labels import NOTE_MAX_LENGTH
from .models import ErrorLabel, LabelTerm


class LabelTermSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelTerm
        fields = ["id", "kind", "code", "name", "description", "weight", "position", "is_active"]
        read_only_fields = fields


class LabelTermBriefSerializer(serializers.ModelSerializer):
    """A term as it appears inside a label."""

    class Meta:
        model = LabelTerm
        fields = ["id", "code", "name", "weight"]
        read_only_fields = fields


class ErrorLabelSerializer(serializers.ModelSerializer):
    cause = LabelTermBriefSerializer(read_only=True)
    impact = LabelTermBriefSerializer(read_only=True)
    corrective_action = LabelTermBriefSerializer(read_only=True)
    labelled_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ErrorLabel
        fields = [
            "id",
            "decision",
            "review_item",
            "cause",
            "impact",
            "corrective_action",
            "note",
            "fix",
            "fixed_in",
            "labelled_by",
            "labelled_at",
        ]
        read_only_fields = fields


class ErrorLabelInputSerializer(serializers.Serializer):
    """A new label: exactly one of `decision` and `review_item`, and three term ids."""

    decision = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="The decision's id."
    )
    review_item = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="The review item's id."
    )
    cause = serializers.IntegerField(min_value=1, help_text="Id of an active term of kind cause.")
    impact = serializers.IntegerField(min_value=1, help_text="Id of an active term of kind impact.")
    corrective_action = serializers.IntegerField(
        min_value=1, help_text="Id of an active term of kind corrective_action."
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=NOTE_MAX_LENGTH, default="")
