"""Serializers of `GET /api/v1/decisions/disagreement/`: disagreement rates per action and model."""

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.query_params import QuerySerializer

from .disagreement import disagreement_rate_overall, disagreement_rates, disagreement_window_days

MAX_DAYS = 3650


class DisagreementQuerySerializer(QuerySerializer):
    days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_DAYS,
        required=False,
        help_text="Window in days, counted back from now by review time; default: the setting.",
    )


class DisagreementRowSerializer(serializers.Serializer):
    action = serializers.CharField(source="action_code")
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    reviewed = serializers.IntegerField()
    disagreed = serializers.IntegerField()
    rate = serializers.DecimalField(max_digits=5, decimal_places=4)


class DisagreementTotalSerializer(serializers.Serializer):
    reviewed = serializers.IntegerField()
    disagreed = serializers.IntegerField()
    rate = serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True)


class DisagreementSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    overall = DisagreementTotalSerializer()
    results = DisagreementRowSerializer(many=True)


def disagreement_response(request: Request) -> Response:
    """Build the response for the `days` query parameter.

    An invalid value, or `days` given more than once, raises a 400.
    """
    query = DisagreementQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    days = disagreement_window_days(query.validated_data.get("days"))
    body = {
        "days": days,
        "overall": disagreement_rate_overall(days=days),
        "results": disagreement_rates(days=days),
    }
    return Response(DisagreementSerializer(body).data)
