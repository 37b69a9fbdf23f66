"""REST API of the label taxonomy (read-only) and of error labels (list, read, add)."""

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, permissions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.api_filters import BooleanFilter, IdFilter, IsoDateTimeFilter, MultipleChoiceFilter

from . import labels
from .label_serializers import ErrorLabelInputSerializer, ErrorLabelSerializer, LabelTermSerializer
from .models import ErrorLabel, LabelKind, LabelTerm


class LabelTermFilter(django_filters.FilterSet):
    kind = MultipleChoiceFilter(choices=LabelKind.choices)
    is_active = BooleanFilter()

    class Meta:
        model = LabelTerm
        fields = ["kind", "is_active"]


class LabelTermViewSet(viewsets.ReadOnlyModelViewSet):
    """The error taxonomy: causes, impacts and corrective actions. Needs view_labelterm."""

    serializer_class = LabelTermSerializer
    filterset_class = LabelTermFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["kind", "position"]
    ordering = ["kind", "position", "name", "id"]

    def get_queryset(self):
        return LabelTerm.objects.all()


class ErrorLabelFilter(django_filters.FilterSet):
    decision = IdFilter(field_name="decision_id")
    review_item = IdFilter(field_name="review_item_id")
    cause = django_filters.CharFilter(field_name="cause__code", help_text="Cause term code.")
    impact = django_filters.CharFilter(field_name="impact__code", help_text="Impact term code.")
    since = IsoDateTimeFilter(
        field_name="labelled_at",
        lookup_expr="gte",
        help_text="Labelled at or after this time (ISO 8601).",
    )
    until = IsoDateTimeFilter(
        field_name="labelled_at", lookup_expr="lt", help_text="Labelled before this time."
    )

    class Meta:
        model = ErrorLabel
        fields = ["decision", "review_item", "cause", "impact", "since", "until"]


ERROR_RESPONSES = {
    400: OpenApiResponse(description="Invalid input; `fields` names the field and the reason."),
    403: OpenApiResponse(description="Missing permission to label the decision or item."),
}


class ErrorLabelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Error labels on decisions and review items. Reading needs view_errorlabel.

    Labels are history: there is no update or delete; a correction is a new label.
    """

    serializer_class = ErrorLabelSerializer
    filterset_class = ErrorLabelFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["labelled_at"]
    ordering = ["-labelled_at", "-id"]

    def get_permissions(self):
        # The service checks the permission of the target: label_decision or add_errorlabel.
        if self.action == "create":
            return [permissions.IsAuthenticated()]
        return super().get_permissions()

    def get_queryset(self):
        return labels.error_labels_with_terms()

    @extend_schema(
        request=ErrorLabelInputSerializer,
        responses={201: ErrorLabelSerializer, **ERROR_RESPONSES},
    )
    def create(self, request: Request) -> Response:
        """Label an error on a decision or a review item with three terms of the taxonomy."""
        serializer = ErrorLabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            label = labels.error_label_add(
                user=request.user,
                decision_id=data.get("decision"),
                review_item_id=data.get("review_item"),
                cause_id=data["cause"],
                impact_id=data["impact"],
                corrective_action_id=data["corrective_action"],
                note=data["note"],
            )
        except labels.LabelError as error:
            raise _api_error(error) from None
        label = self.get_queryset().get(pk=label.pk)
        return Response(ErrorLabelSerializer(label).data, status=status.HTTP_201_CREATED)


def _api_error(error: labels.LabelError) -> exceptions.APIException:
    if error.status == 400 and error.field:
        invalid = exceptions.ValidationError({error.field: [error.message]})
        # The API's error body takes its code from here: keep the service's code.
        invalid.default_code = error.code
        return invalid
    exception = exceptions.APIException(detail=error.message, code=error.code)
    exception.status_code = error.status
    return exception
