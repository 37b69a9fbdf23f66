"""REST API of versions and canaries.

Reading needs guardrails.view_version or guardrails.view_canary; recording a version
guardrails.add_version and activating one guardrails.change_version; starting and operating
a canary guardrails.operate_canary. AI agents (guardrails.propose_decision) ask
/canaries/assignment/ which arm an order is in before they propose. Every write goes through
`guardrails.rollouts`, which checks the permission again and audits the change.
"""

from collections.abc import Callable

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.api_filters import BooleanFilter, MultipleChoiceFilter
from orders.channel_access import channel_scoped
from orders.models import Order

from . import rollouts
from .breakers_api import HasPermission
from .models import Canary, CanaryStatus, Version, VersionKind, VersionStatus
from .rollout_serializers import (
    AssignmentQuerySerializer,
    AssignmentSerializer,
    CanaryDetailSerializer,
    CanaryPauseSerializer,
    CanarySerializer,
    CanaryShareSerializer,
    CanaryStartSerializer,
    ComparisonSerializer,
    NoteSerializer,
    ResumeSerializer,
    VersionCreateSerializer,
    VersionDetailSerializer,
    VersionSerializer,
)
from .rollout_views import comparison_shown, significance_words

OPERATE_PERMISSION = "guardrails.operate_canary"
PROPOSE_PERMISSION = "guardrails.propose_decision"

ERRORS = {
    400: OpenApiResponse(description="Invalid input; `fields` names the field."),
    403: OpenApiResponse(description="Missing permission."),
    404: OpenApiResponse(description="Unknown version, canary or order."),
    409: OpenApiResponse(description="The version or canary is in another state."),
}


class VersionFilter(django_filters.FilterSet):
    kind = MultipleChoiceFilter(choices=VersionKind.choices)
    status = MultipleChoiceFilter(choices=VersionStatus.choices)
    action = django_filters.CharFilter(field_name="action__code")

    class Meta:
        model = Version
        fields = ["kind", "status", "subject", "action"]


class CanaryFilter(django_filters.FilterSet):
    status = MultipleChoiceFilter(choices=CanaryStatus.choices)
    kind = MultipleChoiceFilter(field_name="candidate__kind", choices=VersionKind.choices)
    shadow = BooleanFilter()

    class Meta:
        model = Canary
        fields = ["status", "kind", "candidate", "shadow"]


class VersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Model, prompt, recommender and rule-set versions with their changelogs."""

    filterset_class = VersionFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at", "activated_at", "subject"]
    ordering = ["kind", "subject", "-created_at", "-id"]

    def get_queryset(self):
        return Version.objects.select_related("action", "created_by").prefetch_related(
            "policy_versions"
        )

    def get_serializer_class(self):
        return VersionDetailSerializer if self.action == "retrieve" else VersionSerializer

    def get_permissions(self):
        if self.action == "activate":
            return [permissions.IsAuthenticated(), HasPermission("guardrails.change_version")]
        return super().get_permissions()

    @extend_schema(
        request=VersionCreateSerializer, responses={201: VersionDetailSerializer, **ERRORS}
    )
    def create(self, request: Request) -> Response:
        """Record a version as a draft."""
        data = _validated(VersionCreateSerializer, request)
        return _respond(
            lambda: rollouts.version_create(
                kind=data["kind"],
                subject=data["subject"],
                label=data["label"],
                changelog=data["changelog"],
                user=request.user,
                action=data["action"],
                config=data["config"],
                policy_versions=tuple(data["policy_versions"]),
            ),
            self._answer,
            status.HTTP_201_CREATED,
        )

    @extend_schema(request=NoteSerializer, responses={200: VersionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, pk: str | None = None) -> Response:
        """Make the version the active one of its subject; the previous one is retired."""
        data = _validated(NoteSerializer, request)
        return _respond(
            lambda: rollouts.version_activate(
                version_id=int(pk), user=request.user, note=data["note"]
            ),
            self._answer,
        )

    def _answer(self, version: Version) -> dict:
        return VersionDetailSerializer(self.get_queryset().get(pk=version.pk)).data


class CanaryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Canaries: a draft version on 1 to 5 % of orders beside the active one."""

    filterset_class = CanaryFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at", "started_at", "status"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return Canary.objects.select_related(
            "candidate", "control", "action", "channel", "ended_by", "created_by"
        )

    def get_serializer_class(self):
        return CanaryDetailSerializer if self.action == "retrieve" else CanarySerializer

    def get_permissions(self):
        if self.action == "assignment":
            return [permissions.IsAuthenticated(), HasPermission(PROPOSE_PERMISSION)]
        if self.action == "create":
            return [*super().get_permissions(), HasPermission(OPERATE_PERMISSION)]
        if self.action in ("share", "pause", "resume", "promote", "stop"):
            return [permissions.IsAuthenticated(), HasPermission(OPERATE_PERMISSION)]
        return super().get_permissions()

    @extend_schema(request=CanaryStartSerializer, responses={201: CanaryDetailSerializer, **ERRORS})
    def create(self, request: Request) -> Response:
        """Start a canary of a draft version; it runs at once."""
        data = _validated(CanaryStartSerializer, request)
        return _respond(
            lambda: rollouts.canary_start(
                candidate_id=data["candidate"],
                user=request.user,
                name=data["name"],
                share=data["share"],
                shadow=data["shadow"],
                action=data["action"],
                channel=data["channel"],
                exclude_priority_skus=data["exclude_priority_skus"],
                days=data["days"],
                min_orders_per_arm=data["min_orders_per_arm"],
                max_exception_increase_pp=data["max_exception_increase_pp"],
            ),
            self._answer,
            status.HTTP_201_CREATED,
        )

    @extend_schema(responses={200: ComparisonSerializer, 403: ERRORS[403], 404: ERRORS[404]})
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def comparison(self, request: Request, pk: str | None = None) -> Response:
        """Compare the arms: orders, decisions, verdicts, disagreement, exceptions, returns.

        A running or paused canary is compared now; an ended one returns the comparison
        stored when it ended (`attached` is true).
        """
        canary = self.get_object()
        return Response(comparison_body(canary))

    @extend_schema(request=CanaryShareSerializer, responses={200: CanaryDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def share(self, request: Request, pk: str | None = None) -> Response:
        """Change the candidate's share; orders already assigned keep their arm."""
        data = _validated(CanaryShareSerializer, request)
        return _respond(
            lambda: rollouts.canary_set_share(
                canary_id=int(pk), share=data["share"], user=request.user, note=data["note"]
            ),
            self._answer,
        )

    @extend_schema(request=CanaryPauseSerializer, responses={200: CanaryDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Pause: new orders get the control until the canary resumes."""
        data = _validated(CanaryPauseSerializer, request)
        return _respond(
            lambda: rollouts.canary_pause(
                canary_id=int(pk), user=request.user, reason=data["reason"]
            ),
            self._answer,
        )

    @extend_schema(request=ResumeSerializer, responses={200: CanaryDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Resume a paused canary; once its run is over, `days` sets how long it runs on."""
        data = _validated(ResumeSerializer, request)
        return _respond(
            lambda: rollouts.canary_resume(
                canary_id=int(pk), user=request.user, note=data["note"], days=data["days"]
            ),
            self._answer,
        )

    @extend_schema(request=NoteSerializer, responses={200: CanaryDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        """Make the candidate the active version, with the current comparison attached."""
        data = _validated(NoteSerializer, request)
        return _respond(
            lambda: rollouts.canary_promote(
                canary_id=int(pk), user=request.user, note=data["note"]
            ),
            self._answer,
        )

    @extend_schema(request=NoteSerializer, responses={200: CanaryDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        """Stop the canary without promoting; every order goes back to the control."""
        data = _validated(NoteSerializer, request)
        return _respond(
            lambda: rollouts.canary_stop(canary_id=int(pk), user=request.user, note=data["note"]),
            self._answer,
        )

    @extend_schema(
        parameters=[AssignmentQuerySerializer],
        responses={200: AssignmentSerializer, 400: ERRORS[400], 403: ERRORS[403], 404: ERRORS[404]},
    )
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def assignment(self, request: Request) -> Response:
        """Return the arm an order is in for an action and model, and the version to use.

        `canary` is null when no running canary covers the order; propose with the active
        version then. A cancelled or shipped order that the canary has not seen gets the
        control arm and is not assigned. A proposal from the wrong arm is rejected with 409
        `wrong_arm`.
        """
        query = AssignmentQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data

        # An integration may look up only orders of its granted channels. Others are not found.
        orders = channel_scoped(Order.objects.select_related("channel"), request.user)
        order = orders.filter(pk=params["order"]).first()
        if order is None:
            return _error_body(
                404, "not_found", f"Order #{params['order']} does not exist.", "order"
            )
        try:
            assignment = rollouts.canary_assignment_for(
                order=order, action_code=params["action"], model_name=params["model"]
            )
        except rollouts.RolloutError as error:
            return _error_body(error.status, error.code, error.message, error.field)
        if assignment is None:
            return Response({"canary": None})
        return Response(AssignmentSerializer(assignment).data)

    def _answer(self, canary: Canary) -> dict:
        return CanaryDetailSerializer(self.get_queryset().get(pk=canary.pk)).data


def comparison_body(canary: Canary) -> dict:
    """Return the comparison the API and the page show, with its significance in words."""
    comparison, attached = comparison_shown(canary)
    body = {
        **comparison,
        "significance": significance_words(comparison),
        "attached": attached,
    }
    return ComparisonSerializer(body).data


def _validated(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _respond(
    change: Callable[[], object],
    answer: Callable[[object], dict],
    status_code: int = status.HTTP_200_OK,
) -> Response:
    try:
        result = change()
    except rollouts.RolloutError as error:
        return _error_body(error.status, error.code, error.message, error.field)
    return Response(answer(result), status=status_code)


def _error_body(status_code: int, code: str, message: str, field: str | None) -> Response:
    """The API's one error shape, built here because the service's code must survive."""
    fields = {field: [message]} if field else {}
    return Response(
        {"error": {"code": code, "message": message, "fields": fields}}, status=status_code
    )
