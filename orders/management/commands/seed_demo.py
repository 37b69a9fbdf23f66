import time
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind
from catalog.services import channel_upsert
from omsguard.celery import app as celery_app
from orders.demo import (
    DEMO_LOCATIONS,
    demo_catalog_load,
    demo_mappings_create,
    demo_stock_load,
    shopify_samples_replay,
)
from orders.demo_channels import (
    DEMO_SQUARE_SECRET,
    DEMO_WOO_SECRET,
    demo_channels_load,
    demo_square_url,
)
from orders.models import (
    CarrierCodeMapping,
    CarrierService,
    ChannelApiGrant,
    Delivery,
    DeliveryOutcome,
)

DEMO_CHANNEL = "demo-shop"
DEMO_SECRET = "demo-shopify-webhook-secret"  # noqa: S105 - printed for the demo on purpose

# (user name, password, group, staff, superuser)
DEMO_USERS = [
    ("agent", "agent-demo-pass", "cs_agent", False, False),
    ("manager", "manager-demo-pass", "cs_manager", True, False),
    ("ops", "ops-demo-pass", "ops_manager", True, False),
    ("integration", None, "integration", False, False),
    ("admin", "admin-demo-pass", None, True, True),
]


class Command(BaseCommand):
    help = (
        "Load the demo catalog, a Shopify channel and demo users, then replay the sample "
        "Shopify deliveries through the real webhook. Then add 120 days of invented order "
        "history and its KPI rollups for the dashboard, and evaluate the alert rules once. "
        "Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off (creates users with known passwords).",
        )
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Skip the 120 days of invented order history behind the KPI dashboard, and "
            "the versions, canaries, error labels, fixes and known answers built on it.",
        )

    def handle(self, *args, force: bool, no_history: bool, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users with published passwords; it runs only with DEBUG=1 "
                "(or pass --force on a throwaway database)."
            )

        sku_count = demo_catalog_load()
        channel, _ = channel_upsert(
            kind=ChannelKind.SHOPIFY,
            code=DEMO_CHANNEL,
            secret=DEMO_SECRET,
            name="Demo Shopify store",
        )
        mapping_count = demo_mappings_create(channel=channel)
        self.stdout.write(f"Catalog: {sku_count} SKUs, {mapping_count} mappings on {channel.code}.")
        from guardrails.demo import demo_carrier_rates_load

        rates_added = demo_carrier_rates_load()
        self.stdout.write(
            f"Carriers: {CarrierService.objects.count()} services, "
            f"{CarrierCodeMapping.objects.count()} carrier code mappings, "
            f"{rates_added} demo rates added."
        )
        stock_applied = demo_stock_load()
        self.stdout.write(
            f"Stock: {len(DEMO_LOCATIONS)} locations, {stock_applied} stock events applied."
        )
        # The demo has no warehouse feed, so new orders get a stale_stock flag once the
        # counts pass their TTL. The README's demo section gives the details.
        self.stdout.write(
            f"  The stock counts are stale {settings.OMSGUARD_STOCK_TTL_SECONDS} s after they "
            "were posted, and orders reserved on them get a stale_stock flag. "
            "manage.py refresh_demo_stock posts them again (--every 60 keeps them fresh)."
        )

        token = self._create_users()

        self.stdout.write("Replaying samples/shopify/ through /webhooks/shopify/demo-shop/:")
        for result in shopify_samples_replay(channel=channel):
            status = result.response.get("status") or result.response.get("error", {}).get("code")
            self.stdout.write(f"  {result.status_code} {status:<9} {result.file}")
        self._load_other_channels()
        self._grant_demo_channels()
        self._propose_demo_decisions()
        # After the demo proposals, so that the history's decisions cannot change their
        # verdicts (breakers and the autonomy gate read recent decisions).
        if not no_history:
            self._load_history()
            self._load_feedback_loop()
            self._evaluate_alerts()

        self.stdout.write("")
        self.stdout.write("Demo logins:")
        for username, password, group, _, _ in DEMO_USERS:
            if password:
                self.stdout.write(f"  {username:<9} / {password:<18} {group or 'superuser'}")
        self.stdout.write(f"  API token of 'integration': {token}")
        self.stdout.write(f"  Shopify webhook secret of {DEMO_CHANNEL}: {DEMO_SECRET}")
        self.stdout.write(f"  WooCommerce webhook secret of demo-woo: {DEMO_WOO_SECRET}")
        self.stdout.write(
            f"  Square signature key of demo-square: {DEMO_SQUARE_SECRET} "
            f"(notification URL {demo_square_url()})"
        )

    def _load_other_channels(self) -> None:
        for code, results in demo_channels_load().items():
            statuses = [result.response.get("status", "error") for result in results]
            self.stdout.write(
                f"Channel {code}: {len(results)} deliveries "
                f"({statuses.count('accepted')} accepted, {statuses.count('duplicate')} duplicate)."
            )

    def _grant_demo_channels(self) -> None:
        # An integration reads and writes only the channels granted to it.
        user = get_user_model().objects.get(username="integration")
        for channel in Channel.objects.filter(code__startswith="demo-"):
            ChannelApiGrant.objects.get_or_create(user=user, channel=channel)

    def _propose_demo_decisions(self) -> None:
        from guardrails.demo import demo_decisions_replay

        self._wait_for_worker()
        results = demo_decisions_replay(token=Token.objects.get(user__username="integration"))
        if not results:
            return
        self.stdout.write("AI proposals through /api/v1/decisions/:")
        for result in results:
            self.stdout.write(
                f"  {result.status_code} {result.verdict:<19} {result.action} on "
                f"{result.order_number} ({result.note})"
            )

    def _load_history(self) -> None:
        from monitoring.demo import HistoryStaff, demo_history_load, demo_history_rolled_up
        from monitoring.rollups import kpi_rollups_refresh

        users = get_user_model().objects.in_bulk(["agent", "manager", "ops"], field_name="username")
        staff = HistoryStaff(agent=users["agent"], manager=users["manager"], ops=users["ops"])
        result = demo_history_load(staff=staff)
        if result.created:
            counts = ", ".join(
                f"{count} {name.replace('_', ' ')}" for name, count in result.counts.items()
            )
            self.stdout.write(
                f"History: {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d %H:%M}, {counts} "
                f"({result.seconds:.1f} s)."
            )
        elif demo_history_rolled_up(start=result.start):
            self.stdout.write("History: already loaded.")
            return
        else:
            self.stdout.write("History: already loaded, but its KPI rollups are missing.")

        began = time.monotonic()
        rows = kpi_rollups_refresh(since=result.start, until=result.end)
        self.stdout.write(f"KPI rollups: {rows} rows ({time.monotonic() - began:.1f} s).")

    def _load_feedback_loop(self) -> None:
        """Add versions, canaries, error labels, fixes and known answers on top of the history."""
        from monitoring.demo import HistoryStaff
        from reviews.feedback_demo import demo_canary_running, demo_feedback_load

        users = get_user_model().objects.in_bulk(["agent", "manager", "ops"], field_name="username")
        staff = HistoryStaff(agent=users["agent"], manager=users["manager"], ops=users["ops"])
        began = time.monotonic()
        counts = demo_feedback_load(staff=staff)
        canary = demo_canary_running()
        state = _canary_state(canary) if canary is not None else "no canary running"
        if not counts:
            self.stdout.write(f"Feedback loop: already loaded; {state}.")
            return
        self.stdout.write(
            f"Feedback loop: {counts['versions']} versions, {counts['canaries']} canaries "
            f"({state}), {counts['error_labels']} error labels, {counts['fix_items']} fixes, "
            f"{counts['known_answers']} known answers with {counts['known_answer_items']} "
            f"known-answer items ({time.monotonic() - began:.1f} s)."
        )

    def _evaluate_alerts(self) -> None:
        """Evaluate the alert rules once, so /alerts/ shows what the history raised.

        Celery beat does this every minute; the SQLite demo often runs without beat.
        """
        from monitoring.alerting import alert_rules_evaluate
        from monitoring.management.commands.evaluate_alerts import evaluation_report

        for line in evaluation_report(alert_rules_evaluate()):
            self.stdout.write(line)

    def _wait_for_worker(self, timeout_seconds: float = 60) -> None:
        """With a real broker, wait until the worker has processed the replayed deliveries.

        The demo proposals need the orders those deliveries create. With tasks run in-process
        there is nothing to wait for.
        """
        if celery_app.conf.task_always_eager:
            return
        self.stdout.write("Waiting for the Celery worker to process the deliveries...")
        deadline = time.monotonic() + timeout_seconds
        while Delivery.objects.filter(outcome=DeliveryOutcome.RECEIVED).exists():
            if time.monotonic() > deadline:
                self.stdout.write("  still unprocessed; is the worker running?")
                return
            time.sleep(0.5)

    def _create_users(self) -> str:
        user_model = get_user_model()
        for username, password, group, staff, superuser in DEMO_USERS:
            user, _ = user_model.objects.get_or_create(username=username)
            user.is_staff = staff
            user.is_superuser = superuser
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
            if group:
                user.groups.set([Group.objects.get(name=group)])
        token, _ = Token.objects.get_or_create(user=user_model.objects.get(username="integration"))
        return token.key


def _canary_state(canary) -> str:
    """Describe the demo canary's last evaluation in words, for the summary line."""
    evaluation = canary.last_evaluation or {}
    control, candidate = evaluation.get("control", {}), evaluation.get("candidate", {})
    orders = candidate.get("orders", 0) + control.get("orders", 0)
    return (
        f"canary of {canary.candidate} {canary.get_status_display().lower()} with "
        f"{candidate.get('orders', 0):,} of {orders:,} orders, judged "
        f"{evaluation.get('outcome', 'not yet')}: exception rates {_percent(candidate)} "
        f"against {_percent(control)}"
    )


def _percent(arm: dict) -> str:
    rate = arm.get("fulfilment_exception_rate")
    return "n/a" if rate is None else f"{Decimal(rate) * 100:.2f} %"
