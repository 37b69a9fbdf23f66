"""Every choice filter of the REST API keeps all values of a repeated parameter.

django-filter's ChoiceFilter keeps only the last of `?verdict=a&verdict=b` without a word, so
a client believes it gets both. The lists use omsguard.api_filters.MultipleChoiceFilter
instead; this walks every API view so a new list cannot bring the silent kind back.
"""

import django_filters
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from omsguard.api_filters import MultipleChoiceFilter


def _api_views(patterns, prefix: str = "") -> list[tuple[str, type]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found.extend(_api_views(pattern.url_patterns, route))
        elif isinstance(pattern, URLPattern) and route.startswith("api/"):
            view = getattr(pattern.callback, "cls", None)
            if view is not None:
                found.append((route, view))
    return found


def _filtersets() -> dict[str, type]:
    filtersets = {}
    for _route, view in _api_views(get_resolver().url_patterns):
        filterset = getattr(view, "filterset_class", None)
        if filterset is not None:
            filtersets[filterset.__name__] = filterset
    return filtersets


def test_walk_finds_api_lists():
    names = set(_filtersets())

    assert {"DecisionFilter", "DeliveryFilter", "StockEventFilter"} <= names, names


@pytest.mark.parametrize("filterset", sorted(_filtersets().items()), ids=lambda item: item[0])
def test_choice_filters_take_several_values(filterset):
    _, filterset_class = filterset
    single = [
        name
        for name, declared in filterset_class.base_filters.items()
        # A ModelChoiceFilter (a foreign key by id) is a ChoiceFilter too, but not a choice.
        if isinstance(declared, django_filters.ChoiceFilter)
        and not isinstance(declared, MultipleChoiceFilter | django_filters.ModelChoiceFilter)
    ]

    assert single == [], f"{filterset_class.__name__}: use MultipleChoiceFilter for {single}"
