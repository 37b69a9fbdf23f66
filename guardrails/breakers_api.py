"""REST API of the circuit breakers: list them, report upstream degradation, operate by hand."""

import django_filters
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.models import Channel
from omsguard.api_filters import MultipleChoiceFilter
from omsguard.json_fields import StrictCharField
from orders.channel_access import (
    CHANNEL_NOT_ALLOWED,
    channel_allowed,
    channel_codes_granted,
    channel_limited,
)

from . import breakers
from .models import ActionType, Breaker, BreakerEvent, BreakerScope, BreakerState


class BreakerEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.username", default=None, read_only=True, allow_null=True
    )

    class Meta:
        model = BreakerEvent
        fields = ["id", "from_state", "to_state", "cause", "detail", "data", "actor", "created_at"]


class BreakerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Breaker
        fields = [
            "id",
            "scope",
            "key",
            "state",
            "cause",
            "cause_detail",
            "changed_at",
            "trial_started_at",
        ]


class BreakerDetailSerializer(BreakerSerializer):
    events = serializers.SerializerMethodField()

    class Meta(BreakerSerializer.Meta):
        fields = [*BreakerSerializer.Meta.fields, "events"]

    def get_events(self, breaker: Breaker) -> list[dict]:
        return BreakerEventSerializer(breaker.events.select_related("actor")[:50], many=True).data


class RecoveryAnswerSerializer(BreakerDetailSerializer):
    """The response to a recovery report: the breaker, or a note when the scope has none."""

    id = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Null when the scope and key have no breaker."
    )
    # Not read-only: the schema lists read-only fields as required, and this one is optional.
    note = serializers.CharField(
        required=False, help_text="Present only when the scope and key have no breaker."
    )

    class Meta(BreakerDetailSerializer.Meta):
        fields = [*BreakerDetailSerializer.Meta.fields, "note"]

    def get_events(self, breaker: Breaker) -> list[dict]:
        return [] if breaker.pk is None else super().get_events(breaker)


class ScopeReportSerializer(serializers.Serializer):
    """An integration's report on one scope: what degraded or recovered, and why it says so."""

    scope = serializers.ChoiceField(choices=BreakerScope.choices)
    key = StrictCharField(max_length=200, help_text="Action code, channel code or model.")
    detail = StrictCharField(max_length=2000, help_text="What the integration observed.")

    def validate(self, data: dict) -> dict:
        scope, key = data["scope"], data["key"]
        if scope == BreakerScope.ACTION and not ActionType.objects.filter(code=key).exists():
            raise serializers.ValidationError({"key": [f"Unknown action type code {key!r}."]})
        if scope == BreakerScope.CHANNEL and not Channel.objects.filter(code=key).exists():
            raise serializers.ValidationError({"key": [f"Unknown channel code {key!r}."]})
        return data


class ReasonSerializer(serializers.Serializer):
    detail = StrictCharField(max_length=2000, help_text="Why the breaker is operated.")


class BreakerFilter(django_filters.FilterSet):
    state = MultipleChoiceFilter(choices=BreakerState.choices)
    scope = MultipleChoiceFilter(choices=BreakerScope.choices)

    class Meta:
        model = Breaker
        fields = ["state", "scope", "key"]


class HasPermission(permissions.BasePermission):
    """An authenticated user with one Django permission."""

    def __init__(self, codename: str):
        self.codename = codename

    def has_permission(self, request: Request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(self.codename))


class BreakerViewSet(viewsets.ReadOnlyModelViewSet):
    """Breakers per action type, channel and model. Reading needs guardrails.view_breaker."""

    filterset_class = BreakerFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["changed_at", "scope", "key"]
    ordering = ["scope", "key"]

    def get_queryset(self):
        breakers = Breaker.objects.all()
        user = self.request.user
        if channel_limited(user):
            # An integration sees the breakers of its granted channels, and of every action
            # and model, which no channel owns.
            granted = channel_codes_granted(user)
            breakers = breakers.filter(~Q(scope=BreakerScope.CHANNEL) | Q(key__in=granted))
        return breakers

    def get_serializer_class(self):
        return BreakerDetailSerializer if self.action == "retrieve" else BreakerSerializer

    def get_permissions(self):
        if self.action in ("report_degradation", "report_recovery"):
            return [HasPermission("guardrails.report_degradation")]
        if self.action in ("open", "close"):
            return [HasPermission("guardrails.operate_breaker")]
        return super().get_permissions()

    @extend_schema(request=ScopeReportSerializer, responses=BreakerDetailSerializer)
    @action(detail=False, methods=["post"], url_path="report-degradation")
    def report_degradation(self, request: Request) -> Response:
        """Open the scope's breaker until recovery is reported or someone closes it."""
        data = _validated(ScopeReportSerializer, request)
        _check_channel_allowed(request, data)
        return self._respond(
            lambda: breakers.breaker_report_degradation(
                scope=data["scope"], key=data["key"], detail=data["detail"], user=request.user
            )
        )

    @extend_schema(request=ScopeReportSerializer, responses=RecoveryAnswerSerializer)
    @action(detail=False, methods=["post"], url_path="report-recovery")
    def report_recovery(self, request: Request) -> Response:
        """Move a breaker opened on upstream degradation to half-open (a trial).

        A scope with no breaker has nothing to recover, so the response is 200 with a closed
        breaker that has no id and a `note`, and nothing is recorded.
        """
        data = _validated(ScopeReportSerializer, request)
        _check_channel_allowed(request, data)
        scope, key = data["scope"], data["key"]
        try:
            # The service checks for the breaker and changes it under one row lock, so a
            # degradation report at the same moment cannot slip in between.
            breaker = breakers.breaker_report_recovery(
                scope=scope, key=key, detail=data["detail"], user=request.user
            )
        except breakers.BreakerError as error:
            raise _api_error(error) from None
        if breaker is not None:
            return Response(BreakerDetailSerializer(breaker).data)

        absent = Breaker(scope=scope, key=key)
        absent.note = (
            f"No breaker exists for {scope} {key!r}, so there is nothing to recover; "
            "nothing was recorded."
        )
        return Response(RecoveryAnswerSerializer(absent).data)

    @extend_schema(request=ReasonSerializer, responses=BreakerDetailSerializer)
    @action(detail=True, methods=["post"])
    def open(self, request: Request, pk: str | None = None) -> Response:
        """Open the breaker by hand; it stays open until someone closes it."""
        data = _validated(ReasonSerializer, request)
        return self._respond(
            lambda: breakers.breaker_open_by_id(
                breaker_id=int(pk), user=request.user, detail=data["detail"]
            )
        )

    @extend_schema(request=ReasonSerializer, responses=BreakerDetailSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        """Close the breaker by hand."""
        data = _validated(ReasonSerializer, request)
        return self._respond(
            lambda: breakers.breaker_close(
                breaker_id=int(pk), user=request.user, detail=data["detail"]
            )
        )

    def _respond(self, change) -> Response:
        try:
            breaker = change()
        except breakers.BreakerError as error:
            raise _api_error(error) from None
        return Response(BreakerDetailSerializer(breaker).data)


def _check_channel_allowed(request: Request, data: dict) -> None:
    """Raise 403 when an integration reports on a channel it has no grant for."""
    if data["scope"] != BreakerScope.CHANNEL:
        return
    channel = Channel.objects.filter(code=data["key"]).first()
    if channel is not None and not channel_allowed(request.user, channel.pk):
        raise exceptions.PermissionDenied(
            f"This user may not report on channel {channel.code!r}.", code=CHANNEL_NOT_ALLOWED
        )


def _validated(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _api_error(error: breakers.BreakerError) -> exceptions.APIException:
    if error.status == 400 and error.field:
        return exceptions.ValidationError({error.field: [error.message]}, code=error.code)
    exception = exceptions.APIException(detail=error.message, code=error.code)
    exception.status_code = error.status
    return exception
