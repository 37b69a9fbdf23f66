"""REST API of decisions: AI agents propose actions, people revert and label them."""

import copy
import functools

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.api_filters import IdFilter, MultipleChoiceFilter
from orders.channel_access import CHANNEL_NOT_ALLOWED, channel_limited, channel_scoped

from . import services
from .disagreement_api import (
    DisagreementQuerySerializer,
    DisagreementSerializer,
    disagreement_response,
)
from .models import Decision, Verdict
from .selectors import ChannelGrant, order_channel_grant, reads_shared, stamp_token_share
from .serializers import (
    DecisionDetailSerializer,
    DecisionLabelSerializer,
    DecisionProposeSerializer,
    DecisionRevertSerializer,
    DecisionSerializer,
    decision_representation,
    proposal_validated_plain,
)


class CanProposeDecisions(permissions.BasePermission):
    def has_permission(self, request: Request, view) -> bool:
        return bool(request.user and request.user.has_perm(services.PROPOSE_PERMISSION))


class DecisionFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(field_name="action__code")
    channel = django_filters.CharFilter(field_name="channel__code")
    verdict = MultipleChoiceFilter(choices=Verdict.choices)
    model_name = django_filters.CharFilter()
    order = IdFilter(field_name="order_id")

    class Meta:
        model = Decision
        fields = ["action", "channel", "verdict", "model_name", "order"]


ERROR_RESPONSES = {
    400: OpenApiResponse(description="Invalid input; `fields` names the field."),
    403: OpenApiResponse(description="Missing permission."),
    404: OpenApiResponse(description="Unknown order or decision."),
    409: OpenApiResponse(description="The order's state differs; `current` contains it."),
}


class DecisionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Decisions. Proposing needs guardrails.propose_decision; reading view_decision."""

    serializer_class = DecisionSerializer
    filterset_class = DecisionFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_permissions(self):
        if self.action == "create":
            return [permissions.IsAuthenticated(), CanProposeDecisions()]
        # The services check the revert and label permissions.
        if self.action in ("revert", "label"):
            return [permissions.IsAuthenticated()]
        return super().get_permissions()

    def get_queryset(self):
        decisions = Decision.objects.select_related(
            "action",
            "channel",
            "policy_version__policy__action",
            "policy_version__policy__channel",
            "reverted_by",
            "labelled_by",
        )
        # An integration reads only the decisions of its granted channels.
        return channel_scoped(decisions, self.request.user)

    def get_serializer_class(self):
        if self.action == "retrieve":
            return DecisionDetailSerializer
        return DecisionSerializer

    @extend_schema(
        request=DecisionProposeSerializer,
        responses={201: DecisionSerializer, **ERROR_RESPONSES},
    )
    def create(self, request: Request) -> Response:
        """Propose an action on an order and get the verdict with every rule that fired."""
        data = proposal_validated_plain(request.data)
        if data is None:
            data = _validated(DecisionProposeSerializer, request)
        # One block for the channel check and the decision, so the decision uses the stamp
        # token that the channel check read with the order's channel.
        with reads_shared():
            grant = order_channel_grant(order_id=data["order"], user_id=request.user.pk)
            refused = _channel_refusal(request, grant)
            if refused is not None:
                return refused
            if grant is not None:
                stamp_token_share(grant.stamp_token)
            return self._propose(request, data)

    def _propose(self, request: Request, data: dict) -> Response:
        try:
            decision = services.decision_propose(
                order_id=data["order"],
                action_code=data["action"],
                before=data["before"],
                after=data["after"],
                confidence=data["confidence"],
                model_name=data["model_name"],
                model_version=data["model_version"],
                rationale=data["rationale"],
                proposed_by=request.user,
            )
        except services.DecisionError as error:
            return _error_response(error)
        # The service returns the decision with every relation the serializer reads, so it is
        # not read again; the channel check above already allowed its channel.
        body = decision_representation(decision, _decision_output())
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=DecisionRevertSerializer,
        responses={200: DecisionSerializer, **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["post"])
    def revert(self, request: Request, pk: str | None = None) -> Response:
        """Undo an applied decision; labels it an error unless `outcome` is 'correct'."""
        data = _validated(DecisionRevertSerializer, request)
        try:
            decision = services.decision_revert(
                decision_id=int(pk), user=request.user, note=data["note"], outcome=data["outcome"]
            )
        except services.DecisionError as error:
            return _error_response(error)
        return self._answer(decision, status.HTTP_200_OK)

    @extend_schema(
        request=DecisionLabelSerializer,
        responses={200: DecisionSerializer, **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["post"])
    def label(self, request: Request, pk: str | None = None) -> Response:
        """Label a decision correct or an error, for the breakers and the autonomy gate."""
        data = _validated(DecisionLabelSerializer, request)
        try:
            decision = services.decision_label(
                decision_id=int(pk), user=request.user, outcome=data["outcome"], note=data["note"]
            )
        except services.DecisionError as error:
            return _error_response(error)
        return self._answer(decision, status.HTTP_200_OK)

    @extend_schema(
        parameters=[DisagreementQuerySerializer],
        responses={200: DisagreementSerializer, 400: ERROR_RESPONSES[400]},
    )
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def disagreement(self, request: Request) -> Response:
        """Disagreement rates of reviewed decisions per action, model name and model version."""
        # NOTE: the rates cover every channel, also for an integration limited to its granted
        # channels. They name no order or channel, only how often people overruled each model.
        return disagreement_response(request)

    def _answer(self, decision: Decision, status_code: int) -> Response:
        decision = self.get_queryset().get(pk=decision.pk)
        return Response(DecisionSerializer(decision).data, status=status_code)


@functools.cache
def _decision_output() -> DecisionSerializer:
    """Return one serializer for the response to every proposal.

    Building a ModelSerializer's fields costs about eight times as much as writing one
    decision with them, and `to_representation` keeps no state between calls.
    """
    return DecisionSerializer()


def _channel_refusal(request: Request, grant: ChannelGrant | None) -> Response | None:
    """Return a 403 when the order is on a channel the integration has no grant for.

    An unknown order (`grant` None) passes here, so the service returns its usual 404 for it.
    The rule is `channel_allowed`'s; the grant is read in the same query as the order's channel.
    """
    if grant is None or grant.granted or not channel_limited(request.user):
        return None
    message = f"This user may not propose decisions for channel {grant.channel_code!r}."
    return Response(
        {"error": {"code": CHANNEL_NOT_ALLOWED, "message": message, "fields": {}}},
        status=status.HTTP_403_FORBIDDEN,
    )


def _validated(serializer_class, request: Request) -> dict:
    serializer = copy.copy(_serializer_bound(serializer_class))
    serializer.initial_data = request.data
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@functools.cache
def _serializer_bound(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """Return an instance of `serializer_class` with its fields built and bound, for copying.

    DRF builds the fields anew for every instance (a deep copy of the declared fields), which
    took about 40 % of the CPU of validating a proposal under cProfile. The copies that
    `_validated` makes share these fields. That is safe because the input serializers here
    have no context, and their fields and validators keep no state between calls.
    """
    serializer = serializer_class()
    serializer.fields  # noqa: B018 - builds and binds the fields once
    return serializer


def _error_response(error: services.DecisionError) -> Response:
    """The API's one error shape, plus the order's current state for a stale proposal."""
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "fields": {error.field: [error.message]} if error.field else {},
        }
    }
    if "current" in error.data:
        body["error"]["current"] = error.data["current"]
    if error.code == "proposal_pending":
        body["error"]["decision"] = error.data.get("decision")
        body["error"]["review_item"] = error.data.get("review_item")
    if error.code == "wrong_arm":
        # The agent retries with the version of the order's arm.
        body["error"]["arm"] = error.data.get("arm")
        body["error"]["model_version"] = error.data.get("model_version")
    return Response(body, status=error.status)
