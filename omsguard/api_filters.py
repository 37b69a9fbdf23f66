"""Query-parameter filters shared by the REST API's list endpoints.

django-filter's own NumberFilter and BooleanFilter are lenient in ways that mislead a client.
A NumberFilter on an id takes "1.5" or "1e300", and the second overflows the database's
integer. A BooleanFilter treats "yes" or "flase" as no filter at all, so the client gets every
row. These reject such values with a 400 naming the parameter instead. IsoDateTimeFilter
rejects a time that does not exist in UTC, which SQLite could not compare.
"""

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

# The largest id that PostgreSQL's bigint and SQLite's INTEGER can hold.
MAX_ID = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number the id column can hold, so a huge one is a 400."""

    field_class = forms.IntegerField

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


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
        "outside_utc": "Enter a date and time between 0001-01-01 and 9999-12-31 in UTC.",
    }

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(self.error_messages["outside_utc"], code="outside_utc") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """django-filter's IsoDateTimeFilter that rejects a time outside the UTC years 1 to 9999."""

    field_class = UtcIsoDateTimeField
