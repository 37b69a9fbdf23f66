"""Backtest report text: whole sentences per fired rule, and a checked --examples."""

import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from guardrails.backtest import backtest_run, fired_summary
from guardrails.models import BacktestRun

from .backtest_fixtures import live_version, version_copy

# The HISTORY decisions and the frozen clock of the backtest tests.
from .test_backtest import APPLIED_TO_QUEUED, frozen_now, history  # noqa: F401

pytestmark = pytest.mark.django_db

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def draft_two_limits(default_policies):
    """Item price under 20 and confidence above 0.99: the replayed examples fail both."""
    return version_copy(
        live_version("substitute_sku"),
        item_price_under=Decimal("20"),
        confidence_above=Decimal("0.99"),
    )


def test_fired_summary_joins_whole_sentences():
    fired = [
        {"message": "Item price USD 22.00 is not under 20.000."},
        {"message": "Confidence 0.95 is not above 0.9900"},
    ]

    assert fired_summary(fired) == (
        "Item price USD 22.00 is not under 20.000. Confidence 0.95 is not above 0.9900."
    )
    assert fired_summary([]) == ""


@pytest.mark.usefixtures("history", "frozen_now")
def test_command_examples_read_as_sentences(draft_two_limits):
    out = StringIO()

    call_command("backtest_policy", "--version", str(draft_two_limits.pk), stdout=out)
    text = out.getvalue()

    assert ".;" not in text
    assert "is not under 20.00. Confidence" in text


@pytest.mark.usefixtures("history", "frozen_now")
def test_report_page_examples_read_as_sentences(client, ops, draft_two_limits):
    run = backtest_run(version=draft_two_limits, days=30)
    client.force_login(ops)

    page = client.get(reverse("admin:guardrails_backtestrun_change", args=[run.pk]))

    html = " ".join(page.content.decode().split())
    assert run.report["by_transition"][APPLIED_TO_QUEUED]["examples"]
    assert ".;" not in html
    assert "is not under 20.00. Confidence" in html


@pytest.mark.parametrize("value", ["-1", "many"])
def test_command_rejects_bad_examples(draft_two_limits, value):
    with pytest.raises(CommandError) as raised:
        call_command("backtest_policy", "--version", str(draft_two_limits.pk), "--examples", value)

    assert "--examples" in str(raised.value)
    assert not BacktestRun.objects.exists()


def test_command_line_exits_2_on_negative_examples():
    result = subprocess.run(
        [sys.executable, "manage.py", "backtest_policy", "--version", "1", "--examples", "-1"],
        cwd=PROJECT,
        env={"DEBUG": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "argument --examples: must be 0 or more, not -1" in result.stderr
    assert "Traceback" not in result.stderr
