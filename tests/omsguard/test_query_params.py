"""The shared check that a one-value query parameter is given once."""

from django.http import QueryDict
from rest_framework import serializers

from omsguard.query_params import QuerySerializer, repeated_parameter_errors


class ExampleQuerySerializer(QuerySerializer):
    days = serializers.IntegerField(required=False)
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    kinds = serializers.MultipleChoiceField(choices=["a", "b"], required=False)


def test_repeated_errors_name_each_repeat():
    params = QueryDict("days=1&days=2&since=x&until=y&until=z&until=w")

    errors = repeated_parameter_errors(params, ["days", "since", "until"])

    assert errors == {
        "days": ["days takes one value but was given 2 times. Give it once."],
        "until": ["until takes one value but was given 3 times. Give it once."],
    }


def test_serializer_rejects_repeated_single_value():
    query = ExampleQuerySerializer(data=QueryDict("days=7&days=30"))

    assert not query.is_valid()
    assert query.errors == {"days": ["days takes one value but was given 2 times. Give it once."]}


def test_serializer_keeps_list_fields_repeatable():
    query = ExampleQuerySerializer(data=QueryDict("days=7&tags=x&tags=y&kinds=a&kinds=b"))

    assert query.is_valid(), query.errors
    assert query.validated_data == {"days": 7, "tags": ["x", "y"], "kinds": ["a", "b"]}


def test_serializer_reads_json_body_unchanged():
    query = ExampleQuerySerializer(data={"days": 7})

    assert query.is_valid(), query.errors
    assert query.validated_data == {"days": 7}
