"""The rows the bad-parameters suite lists: a short demo history and one row of the rest.

The history brings orders, deliveries, review items, decisions, fulfilment facts and stock
counts; the feedback demo brings versions, canaries, labels and fixes. Users get no password
(the suite logs in with force_login), which keeps password hashing out of the seed.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from catalog.models import Channel, ChannelKind, ImportJob, ImportStatus, Sku
from guardrails.breakers import breaker_report_degradation
from guardrails.defaults import default_policies_load
from guardrails.models import BreakerScope, Decision
from inventory.models import Location, StockEventKind
from inventory.services import StockEventInput, stock_event_record
from monitoring.alerting import alert_rules_evaluate
from monitoring.demo import HistoryStaff, demo_history_load
from monitoring.models import Alert
from monitoring.rollups import kpi_rollups_refresh
from orders.carrier_reference import carrier_reference_load
from reviews.confirmations import address_confirmation_token
from reviews.feedback_demo import demo_feedback_load
from reviews.labels import error_label_add
from reviews.models import AddressConfirmation, LabelTerm, ReviewItem
from tests.conftest import ensure_role_groups

# A short history that still brings a few returns, fulfilment exceptions and fixes.
HISTORY_DAYS = 20
HISTORY_DAILY_ORDERS = (10, 14)


class CertainOnlyDraw:
    """Sampling draws that sample only at a rate of 1, as the autouse fixtures of the tests."""

    def random(self) -> float:
        return 0.999999


def seed() -> None:
    """Write a few rows of everything the pages list, on top of a short demo history."""
    ensure_role_groups()
    default_policies_load()
    carrier_reference_load()
    for code, price in (("TEE-BLK-M", "19.99"), ("TEE-WHT-M", "19.99"), ("MUG-NVY", "14.00")):
        Sku.objects.create(code=code, title=code.title(), price=price, cost="5.00", currency="USD")
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="demo-shop", webhook_secret="secret")
    Channel.objects.create(kind=ChannelKind.AMAZON, code="demo-amazon")
    Location.objects.create(code="WH-MAIN", name="Main warehouse", kind="warehouse")
    staff = HistoryStaff(
        agent=_user("agent", "cs_agent"),
        manager=_user("manager", "cs_manager"),
        ops=_user("ops", "ops_manager"),
    )
    _user("admin", None, is_superuser=True)

    history = demo_history_load(staff=staff, days=HISTORY_DAYS, daily_orders=HISTORY_DAILY_ORDERS)
    kpi_rollups_refresh(since=history.start, until=history.end)
    demo_feedback_load(staff=staff)
    alert_rules_evaluate()

    breaker_report_degradation(
        scope=BreakerScope.CHANNEL, key="demo-shop", detail="Upstream slow.", user=staff.ops
    )
    Alert.objects.create(
        severity="actionable",
        source="bad-parameters",
        dedup_key="bad-parameters:1",
        title="An alert to open",
        owner_group="ops_manager",
        runbook="1. Open the breaker.",
    )
    stock_event_record(
        data=StockEventInput(
            source="bad-parameters",
            event_id="stock-1",
            sku=Sku.objects.order_by("pk").first(),
            location=Location.objects.get(code="WH-MAIN"),
            kind=StockEventKind.ABSOLUTE,
            quantity=20,
            version=1,
        )
    )
    terms = {term.kind: term for term in LabelTerm.objects.order_by("pk")}
    error_label_add(
        user=staff.ops,
        decision_id=Decision.objects.order_by("pk").first().pk,
        cause_id=terms["cause"].pk,
        impact_id=terms["impact"].pk,
        corrective_action_id=terms["corrective_action"].pk,
    )
    item = ReviewItem.objects.filter(order__isnull=False).order_by("-status", "pk").first()
    AddressConfirmation.objects.create(
        review_item=item,
        order=item.order,
        email="ada@example.com",
        proposed_address=ADDRESS,
        nonce=CONFIRMATION_NONCE,
        expires_at=timezone.now() + timedelta(days=1),
    )
    ImportJob.objects.create(
        file="imports/bad-parameters.csv",
        file_name="bad-parameters.csv",
        file_sha256="0" * 64,
        status=ImportStatus.FAILED,
    )


CONFIRMATION_NONCE = "bad-parameters-confirmation"
ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


def confirmation_token() -> str:
    confirmation = AddressConfirmation.objects.get(nonce=CONFIRMATION_NONCE)
    return address_confirmation_token(confirmation)


def _user(username: str, group: str | None, *, is_superuser: bool = False):
    user = get_user_model().objects.create_user(
        username=username, is_staff=True, is_superuser=is_superuser
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user
