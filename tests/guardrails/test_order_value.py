"""The order value that limits and value bands compare: the sent total, or the lines if larger.

A new user sent one line of 3 x 500.00 with a total of 15.00: the order was only flagged for
the mismatch, and a substitution on it would have been judged as one on a 15.00 order.
"""

from decimal import Decimal

import pytest

from guardrails.engine import evaluate, rules_from_version
from guardrails.facts import order_facts
from guardrails.models import Policy, Verdict
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401
from tests.guardrails.test_engine import _facts

pytestmark = pytest.mark.django_db


def _rules():
    version = Policy.objects.get(action__code="substitute_sku", channel__isnull=True).live_version
    return rules_from_version(version)


def test_value_uses_larger_lines(order):
    order.total = Decimal("15.00")
    line = order.lines.get()
    line.quantity, line.unit_price = 3, Decimal("500.00")
    line.save()
    order.save()

    facts = order_facts(order)

    assert facts["total"] == "15.00"
    assert facts["value"] == "1500.00"


def test_value_uses_larger_total(order):
    # Read back: the column keeps more places than USD has ("24.990").
    order.refresh_from_db()

    facts = order_facts(order)

    assert (facts["total"], facts["value"]) == ("24.99", "24.99")


def test_bands_compare_the_value_not_the_sent_total(default_policies):
    low_total = _facts(order={"total": "15.00", "value": "1500.00"})

    evaluation = evaluate(rules=_rules(), facts=low_total)

    # The default substitution policy queues orders of 1,000 USD and more for a person.
    assert evaluation.verdict == Verdict.QUEUED_FOR_REVIEW
    assert evaluation.verdict != evaluate(rules=_rules(), facts=_facts()).verdict


def test_facts_stored_before_value_existed_use_the_total(default_policies):
    evaluation = evaluate(rules=_rules(), facts=_facts(order={"total": "1000.00"}))

    assert evaluation.verdict == Verdict.QUEUED_FOR_REVIEW
