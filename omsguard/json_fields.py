"""DRF fields that take JSON values only in their own type.

DRF's own fields convert: IntegerField reads "6" and 6.0 as 6, BooleanField reads "yes" as
true. An API whose documentation gives each field's JSON type uses these instead, so a
client that sends the wrong type learns it at once rather than having the value guessed.
"""

import re

from rest_framework import serializers
from rest_framework.settings import api_settings


class StrictIntegerField(serializers.IntegerField):
    """An integer that must arrive as a JSON number without a fraction: never "5", 5.0 or true."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A boolean that must arrive as JSON true or false: never "yes", "true" or 1."""

    default_error_messages = {"invalid": "A JSON boolean (true or false) is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """Text that must arrive as a JSON string: never a number, which DRF would turn into text."""

    default_error_messages = {"invalid": "A JSON string is required."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Unicode bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
# They change the order in which the text after them is displayed, so "Main St 12" can show
# as a different address or name. Arabic and Hebrew letters carry their own direction, so
# right-to-left names and addresses display correctly without them and are accepted.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def bidi_controls_in(value: str) -> list[str]:
    """Return the code points ("U+202E") of the bidirectional controls in value, each once."""
    found = dict.fromkeys(f"U+{ord(char):04X}" for char in BIDI_CONTROLS.findall(value))
    return list(found)


class DisplayTextField(StrictCharField):
    """Text people read, such as a name or an address line: no bidirectional controls."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        controls = bidi_controls_in(value)
        if controls:
            raise serializers.ValidationError(
                f"Contains Unicode bidirectional control characters ({', '.join(controls)}), "
                "which can make the text display in another order. Remove them."
            )
        return value


class ExactFieldsMixin:
    """Reject object keys the serializer has no field for, naming each one.

    DRF drops unknown keys silently, so a misspelt optional field ("in_store_pikup") would
    change nothing and the client would never know. The unknown keys are reported together
    with the errors of the known fields, nested serializers included.
    """

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        unknown_errors = {name: [UNKNOWN_FIELD] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if not unknown_errors:
                raise
            raise serializers.ValidationError(
                _as_field_errors(error.detail) | unknown_errors
            ) from None
        if unknown_errors:
            raise serializers.ValidationError(unknown_errors)
        return value


UNKNOWN_FIELD = "Unknown field; this format has no field of that name."


def _as_field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return dict(detail)
    return {api_settings.NON_FIELD_ERRORS_KEY: detail}
