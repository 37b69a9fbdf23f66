"""The default error taxonomy as a fixture, for tests of labelling and the weekly review.

Import it into a test module or a conftest, then ask for `label_taxonomy` in a test:
`from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401`. The same fixture is
importable as `label_taxonomy`, though then ruff reports each test argument as F811.
"""

import importlib

import pytest
from django.apps import apps as django_apps

from reviews.models import LabelTerm

_MIGRATION = importlib.import_module("reviews.migrations.0010_label_taxonomy_and_roles")


@pytest.fixture(name="label_taxonomy")
def label_taxonomy_fixture(db) -> dict[str, dict[str, LabelTerm]]:
    """The default label terms by kind and code, e.g. `label_taxonomy["impact"]["chargeback"]`.

    A transactional test flushes the data migration's rows, so load them again when missing.
    """
    _MIGRATION.load_label_taxonomy(django_apps, None)

    terms: dict[str, dict[str, LabelTerm]] = {}
    for term in LabelTerm.objects.all():
        terms.setdefault(term.kind, {})[term.code] = term
    return terms


label_taxonomy = label_taxonomy_fixture
