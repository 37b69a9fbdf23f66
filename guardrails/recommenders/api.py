"""REST endpoints that run the built-in recommenders on one order.

Both need the `guardrails.propose_decision` permission (the integration role has it), because
each ends in a proposal that the guardrails may apply. An integration reaches only the orders
of its granted channels; another channel's order is not found.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.channel_access import channel_scoped
from orders.models import Order, OrderLine

from .base import RecommendationError
from .carrier import carrier_recommend
from .substitution import substitution_recommend


class MayProposeDecisions(permissions.BasePermission):
    message = "Running a recommender needs the guardrails.propose_decision permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("guardrails.propose_decision"))


class ProposalFailed(APIException):
    """A DecisionError or RecommendationError with its own status and code."""

    def __init__(self, error: Exception, status_code: int, code: str):
        super().__init__(detail=str(error), code=code)
        self.status_code = status_code


class ShortageSerializer(serializers.Serializer):
    line = serializers.IntegerField(min_value=1, help_text="Position of the short line.")
    quantity_short = serializers.IntegerField(
        min_value=1, help_text="Units the pick could not find."
    )


class RecommendationSerializer(serializers.Serializer):
    """The response of both recommenders (see Recommendation.as_dict)."""

    action = serializers.CharField(help_text="The action code that was proposed.")
    model = serializers.DictField(help_text="Name and version of the recommender.")
    explanation = serializers.CharField(help_text="Why this candidate, or why none.")
    confidence = serializers.CharField(allow_null=True, help_text="Calibrated, 0 to 1.")
    chosen = serializers.JSONField(allow_null=True, help_text="The candidate proposed.")
    candidates = serializers.ListField(child=serializers.JSONField(), help_text="Ranked.")
    decision = serializers.JSONField(
        allow_null=True, help_text="The guardrails' decision on the chosen candidate."
    )


# The proposal at the end of a recommendation can fail as POST /api/v1/decisions/ does.
RECOMMENDATION_RESPONSES = {
    200: RecommendationSerializer,
    400: OpenApiResponse(description="Invalid input; `fields` names the field."),
    403: OpenApiResponse(description="Missing permission."),
    404: OpenApiResponse(description="Unknown order, or one of a channel not granted."),
    409: OpenApiResponse(
        description="A proposal of the same action on this order waits for review "
        "(`proposal_pending`), or the order changed."
    ),
}


class ShortageView(APIView):
    """POST a short line; returns ranked substitutes and the guardrails' verdict on the best."""

    permission_classes = [MayProposeDecisions]

    @extend_schema(request=ShortageSerializer, responses=RECOMMENDATION_RESPONSES)
    def post(self, request: Request, order_id: int) -> Response:
        order = get_object_or_404(_orders_visible(request), pk=order_id)
        serializer = ShortageSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        position = serializer.validated_data["line"]
        line = (
            OrderLine.objects.select_related("sku", "order__channel")
            .filter(order=order, position=position)
            .first()
        )
        if line is None:
            raise ValidationError({"line": [f"Order {order.pk} has no line {position}."]})

        recommendation = _run(
            substitution_recommend,
            order_line=line,
            quantity_short=serializer.validated_data["quantity_short"],
        )
        return Response(recommendation.as_dict(), status=status.HTTP_200_OK)


class CarrierRecommendationView(APIView):
    """POST to score the carrier services for an order and propose the best."""

    permission_classes = [MayProposeDecisions]

    @extend_schema(request=None, responses=RECOMMENDATION_RESPONSES)
    def post(self, request: Request, order_id: int) -> Response:
        order = get_object_or_404(
            _orders_visible(request).select_related("carrier_service__carrier"), pk=order_id
        )
        recommendation = _run(carrier_recommend, order=order)
        return Response(recommendation.as_dict(), status=status.HTTP_200_OK)


def _orders_visible(request: Request):
    """Return the orders the user may run a recommender on, limited to an integration's channels."""
    return channel_scoped(Order.objects.select_related("channel"), request.user)


def _run(recommend, **inputs):
    from guardrails.services import DecisionError

    try:
        return recommend(**inputs)
    except RecommendationError as error:
        if error.field and error.status == 400:
            raise ValidationError({error.field: [error.message]}) from error
        raise ProposalFailed(error, error.status, error.code) from error
    except DecisionError as error:
        if getattr(error, "field", None) and error.status == 400:
            raise ValidationError({error.field: [str(error)]}) from error
        raise ProposalFailed(error, error.status, error.code) from error
