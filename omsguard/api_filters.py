"""Query-parameter filters shared by the REST API's list endpoints.

django-filter's own NumberFilter and BooleanFilter are lenient in ways that mislead a client.
A NumberFilter on an id takes "1.5" or "1e300", and the second overflows the database's
integer. A BooleanFilter treats "yes" or "flase" as no filter at all, so the client gets every
row. These reject such values with a 400 naming the parameter instead. IsoDateTimeFilter
rejects a time that does not exist in UTC, which SQLite could not compare, and names the
unencoded `+` of an offset. MultipleChoiceFilter keeps every value of a repeated parameter, where
django-filter's ChoiceFilter silently keeps only the last one.
"""

import re
from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField
from django_filters.fields import MultipleChoiceField as FilterMultipleChoiceField
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, filters

from .query_params import reject_repeated_parameters

# The largest id that PostgreSQL's bigint and SQLite's INTEGER can hold.
MAX_ID = 2**63 - 1


class IdField(forms.IntegerField):
    """A database id from 1 to MAX_ID. Its one error message names the kind of id and the value.

    forms.IntegerField has three messages ("Enter a whole number." and the two bounds), and none
    of them names the parameter as an id or shows the value that was sent.
    """

    default_error_messages = {
        "invalid_id": "Enter %(noun)s id, a whole number from 1 to %(max)s; got %(value)s.",
    }

    def __init__(self, *, noun: str = "an", **kwargs) -> None:
        self.noun = noun
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def clean(self, value):
        try:
            return super().clean(value)
        except ValidationError as error:
            # The bound validators raise a list of errors, which has no code of its own.
            codes = {each.code for each in error.error_list}
            if not codes <= {"invalid", "min_value", "max_value"}:
                raise
            text = str(value)
            raise ValidationError(
                self.error_messages["invalid_id"],
                code="invalid_id",
                params={
                    "noun": self.noun,
                    "max": MAX_ID,
                    # Shortened, because the whole value comes back in the 400's message.
                    "value": repr(text[:40]) + ("..." if len(text) > 40 else ""),
                },
            ) from None


# NumberFilter's schema type is "number" with no bounds, so generated clients could send 1.5 or 0.
@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_ID})
class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number the id column can hold, so a huge one is a 400.

    The error names the id after `field_name`: `order_id` gives "Enter an order id, ...".
    """

    field_class = IdField

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("noun", _id_noun(kwargs.get("field_name")))
        super().__init__(**kwargs)


def _id_noun(field_name: str | None) -> str:
    """Return the id's name with its article: "order_id" gives "an order", None gives "an"."""
    if not field_name:
        return "an"
    name = field_name.removesuffix("_id").replace("__", " ").replace("_", " ")
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name}"


class StrictBooleanField(forms.NullBooleanField):
    """A boolean as true or false (or 1 or 0, in any case). Empty means no filter, others fail."""

    widget = forms.TextInput

    def to_python(self, value):
        if value is None or value == "":
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise ValidationError("Use true or false.", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    """A boolean filter that rejects values other than true and false with a 400."""

    field_class = StrictBooleanField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time that exists in UTC, where every database compares it.

    An offset can move a value such as 9999-12-31T23:59:59-14:00 past the year 9999 in UTC,
    which Python's datetime cannot hold; SQLite's backend raised OverflowError for it. The
    value is returned in UTC, because PostgreSQL rejects offsets beyond +-15:59 (such as
    +17:38, which Python accepts) with a DataError.
    """

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date and time, such as 2026-03-01T09:00:00Z.",
        "outside_utc": "Enter a date and time between 0001-01-01 and 9999-12-31 in UTC.",
        "unencoded_plus": (
            "The + of the time zone offset arrived as a space, because an unencoded + in a "
            "query string means a space. Send it as %%2B, as in %(example)s."
        ),
    }

    def to_python(self, value):
        try:
            parsed = super().to_python(value)
        except ValidationError:
            self._raise_if_unencoded_plus(value)
            raise
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["outside_utc"], code="outside_utc") from None

    def _raise_if_unencoded_plus(self, value: object) -> None:
        """Raise a clear error for a time whose `+` offset was sent unencoded.

        Only a value that parses once its last space is a `+` gets this error, so a time like
        "2026-03-01 09:00" (a space between date and time) is never mistaken for one. The
        value is rejected rather than read with the `+`: a client that sends `+` raw sends it
        raw in every parameter, and a text filter would then silently search for a space.
        """
        if not isinstance(value, str):
            return
        head, space, offset = value.strip().rpartition(" ")
        if not space or not re.fullmatch(r"\d{2}(:?\d{2})?", offset):
            return
        try:
            super().to_python(f"{head}+{offset}")
        except ValidationError:
            return
        raise ValidationError(
            self.error_messages["unencoded_plus"],
            code="unencoded_plus",
            # With a T, because a space between date and time would need encoding too.
            params={"example": f"{head.replace(' ', 'T')}%2B{offset}"},
        )


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """django-filter's IsoDateTimeFilter that rejects a time outside the UTC years 1 to 9999."""

    field_class = UtcIsoDateTimeField


class RepeatedChoiceField(FilterMultipleChoiceField):
    """Choices from a repeated parameter. An empty value is left out, so `?status=` filters
    nothing, as for the single-choice filters."""

    default_error_messages = {
        "invalid_choice": "%(value)s is not a valid choice. Use one of: %(choices)s.",
    }

    def to_python(self, value) -> list[str]:
        return [item for item in super().to_python(value) if item != ""]

    def validate(self, value: list[str]) -> None:
        for item in value:
            if not self.valid_value(item):
                raise ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={
                        # Shortened, because the whole value comes back in the 400's message.
                        "value": repr(item[:40]) + ("..." if len(item) > 40 else ""),
                        "choices": ", ".join(str(key) for key, _label in self.choices),
                    },
                )


class MultipleChoiceFilter(django_filters.MultipleChoiceFilter):
    """A choice filter that keeps the rows matching any of its values.

    `?outcome=failed&outcome=dead_letter` keeps both outcomes, as one SQL IN. Use it only for
    a column of the row or of a to-one relation, because it adds no DISTINCT, which a to-many
    relation would need.
    """

    field_class = RepeatedChoiceField

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("distinct", False)
        super().__init__(**kwargs)

    def filter(self, qs: QuerySet, value: list[str]) -> QuerySet:
        if not value:
            return qs
        # Sorted, so the same values always give the same SQL.
        return self.get_method(qs)(**{f"{self.field_name}__in": sorted(set(value))})


REPEATED_ORDERING_MESSAGE = "Give ordering once, with its fields separated by commas."


class OrderingFilter(filters.OrderingFilter):
    """DRF's OrderingFilter that rejects an unknown field with a 400 instead of dropping it.

    DRF leaves out every term it cannot use and falls back to the default order, so
    `?ordering=-totl` returns rows in an order the client did not ask for, without a word.
    The schema lists the accepted values where the view names its ordering fields.
    """

    def get_ordering(self, request, queryset, view):
        if len(request.query_params.getlist(self.ordering_param)) > 1:
            raise exceptions.ValidationError({self.ordering_param: [REPEATED_ORDERING_MESSAGE]})
        return super().get_ordering(request, queryset, view)

    def remove_invalid_fields(self, queryset, fields, view, request) -> list[str]:
        valid = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        unknown = [term for term in fields if term.removeprefix("-") not in valid]
        if unknown:
            message = _ordering_message(unknown[0], valid)
            raise exceptions.ValidationError({self.ordering_param: [message]})
        return fields

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        names = getattr(view, "ordering_fields", None)
        if isinstance(names, list | tuple):
            choices = [term for name in names for term in (name, f"-{name}")]
            # A pattern, not an enum: the value may be several comma-separated keys.
            key = "-?(" + "|".join(re.escape(name) for name in names) + ")"
            for parameter in parameters:
                parameter["description"] = (
                    f"Comma-separated sort keys; a leading - sorts descending. "
                    f"One of: {', '.join(choices)}."
                )
                parameter["schema"] = {"type": "string", "pattern": f"^{key}(,{key})*$"}
        return parameters


def _ordering_message(term: str, valid: list[str]) -> str:
    quoted = repr(term[:40]) + ("..." if len(term) > 40 else "")
    if not valid:
        return f"{quoted} is not a field this list can be sorted by."
    return (
        f"{quoted} is not a field this list can be sorted by. Use one of: "
        f"{', '.join(valid)}, each optionally with a leading - for descending order."
    )


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend that rejects a repeated single-value parameter with a 400.

    django-filter reads the last of `?channel=a&channel=b`, so the client gets one channel's
    rows while asking for two. Only a MultipleChoiceFilter takes several values.
    """

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is not None:
            single_value = [
                name
                for name, declared in filterset.filters.items()
                if not isinstance(declared, django_filters.MultipleChoiceFilter)
            ]
            reject_repeated_parameters(request.query_params, single_value)
        return super().filter_queryset(request, queryset, view)
