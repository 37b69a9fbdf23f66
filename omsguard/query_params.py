"""Reject a query parameter given more than once where it takes one value.

Django's QueryDict.get() returns the last value of `?days=7&days=30`, and a DRF serializer
that reads a QueryDict does the same for every field that is not a list. The response then
covers 30 days while the client may have meant 7, and nothing reports it. These helpers turn such
a request into a 400 that names the parameter. Parameters that take several values (a list
field, or a MultipleChoiceFilter on the REST API's lists) are left alone.
"""

from collections.abc import Iterable, Mapping

from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.relations import ManyRelatedField
from rest_framework.request import Request


def repeated_message(name: str, count: int) -> str:
    """Return the error for `name` given `count` times."""
    return f"{name} takes one value but was given {count} times. Give it once."


def repeated_parameter_errors(params: Mapping, names: Iterable[str]) -> dict[str, list[str]]:
    """Return an error per name in `names` that `params` carries more than once.

    `params` is a QueryDict (request.GET or a DRF request's query_params). A plain dict, such
    as a parsed JSON body, has one value per key, so it never has a repeated parameter.
    """
    getlist = getattr(params, "getlist", None)
    if getlist is None:
        return {}
    errors = {}
    for name in names:
        count = len(getlist(name))
        if count > 1:
            errors[name] = [repeated_message(name, count)]
    return errors


def reject_repeated_parameters(params: Mapping, names: Iterable[str]) -> None:
    """Raise DRF's ValidationError, a 400, naming each of `names` given more than once."""
    errors = repeated_parameter_errors(params, names)
    if errors:
        raise serializers.ValidationError(errors)


def takes_several_values(field: serializers.Field) -> bool:
    """Return whether a serializer field reads every value of a repeated parameter.

    DRF reads these three field classes from a QueryDict with getlist().
    """
    return isinstance(
        field, serializers.ListField | serializers.MultipleChoiceField | ManyRelatedField
    )


class SingleValueQueryMixin:
    """Serializer mixin for query parameters: a repeated one-value parameter is a 400.

    The repeat is reported with the errors of the other fields. For a repeated field it
    replaces the field's own error, because that error was about the last value only.
    """

    def to_internal_value(self, data):
        names = [
            name
            for name, field in self.fields.items()
            if not field.read_only and not takes_several_values(field)
        ]
        repeated = repeated_parameter_errors(data, names)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if not repeated or not isinstance(error.detail, dict):
                raise
            raise serializers.ValidationError(dict(error.detail) | repeated) from None
        if repeated:
            raise serializers.ValidationError(repeated)
        return value


class QuerySerializer(SingleValueQueryMixin, serializers.Serializer):
    """Base class of serializers that read `request.query_params`."""


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation that rejects a repeated `format` parameter with a 400.

    When the 400 itself is rendered, DRF negotiates again and falls back to the view's first
    renderer if this raises, which is JSON on the API's views.
    """

    def select_renderer(self, request: Request, renderers: list, format_suffix=None):
        reject_repeated_parameters(request.query_params, [self.settings.URL_FORMAT_OVERRIDE])
        return super().select_renderer(request, renderers, format_suffix)
