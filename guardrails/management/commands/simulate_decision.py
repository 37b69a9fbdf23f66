import json

from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError, CommandParser

from guardrails import facts as facts_module
from guardrails.appliers import applier_for, proposal_validate
from guardrails.forms import SimulateForm
from guardrails.services import DecisionError
from guardrails.simulate import scenario_facts, simulate
from orders.models import Order


class Command(BaseCommand):
    help = (
        "Judge one hypothetical order and proposed action under the live policy (or a given "
        "version) and print the verdict with every rule evaluated. Nothing is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--action", required=True, help="Action code, e.g. substitute_sku.")
        parser.add_argument("--channel", default="", help="Channel code; empty for all channels.")
        parser.add_argument("--order-value", help="Order total, e.g. 40.")
        parser.add_argument("--currency", default="USD", help="Order currency (default USD).")
        parser.add_argument("--item-price", default="", help="Unit price of the item, e.g. 24.99.")
        parser.add_argument("--confidence", required=True, help="Model confidence, 0 to 1.")

        parser.add_argument("--customer-tier", default="standard", choices=["standard", "priority"])
        parser.add_argument("--margin-rate", default="", help="Order margin rate, 0 to 1.")
        parser.add_argument(
            "--pickup-to-ship",
            action="store_true",
            help="An in-store pickup order would be shipped.",
        )
        parser.add_argument(
            "--listing-forbids", action="store_true", help="A listing forbids the substitution."
        )
        parser.add_argument("--stock", default="fresh", choices=["fresh", "stale", "none"])

        parser.add_argument(
            "--policy-version", type=int, help="Policy version id to judge under; default live."
        )
        parser.add_argument(
            "--order",
            type=int,
            dest="order_id",
            help="Use this real order's facts (value, currency, tier, margin, pickup).",
        )

        parser.add_argument(
            "--after",
            default="",
            help='With --order: the proposed change as JSON, e.g. \'{"line": 1, "sku": '
            '"TEE-BLK-L"}\', to gather every fact a live decision would see.',
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON.")

    def handle(self, *args, **options) -> None:
        order = self._order(options["order_id"])
        form = SimulateForm(self._form_data(options, order))
        if not form.is_valid():
            raise CommandError(_form_errors(form))

        scenario = form.scenario()
        facts = scenario_facts(scenario)
        if order is not None:
            facts = self._order_facts(order, form, facts, options["after"])
        result = simulate(
            action=scenario.action,
            channel=scenario.channel,
            facts=facts,
            version=form.cleaned_data["version"],
        )

        if options["as_json"]:
            output = {
                "version": result.version.pk if result.version else None,
                "evaluation": result.evaluation.as_dict(),
                "facts": result.facts,
            }
            self.stdout.write(json.dumps(output, indent=2, default=str))
            return
        self._print(result)

    def _order(self, order_id: int | None) -> Order | None:
        if order_id is None:
            return None
        order = Order.objects.select_related("channel").filter(pk=order_id).first()
        if order is None:
            raise CommandError(f"--order: no order has id {order_id}.")
        return order

    def _form_data(self, options: dict, order: Order | None) -> dict:
        data = {
            "action": options["action"],
            "channel": options["channel"],
            "order_value": options["order_value"] or "",
            "currency": options["currency"],
            "item_price": options["item_price"],
            "confidence": options["confidence"],
            "customer_tier": options["customer_tier"],
            "margin_rate": options["margin_rate"],
            "stock": options["stock"],
            "version": options["policy_version"] or "",
        }
        for flag in ("pickup_to_ship", "listing_forbids"):
            if options[flag]:
                data[flag] = "on"
        if order is not None:
            # The real order decides the channel, value and currency.
            data.update(
                channel=order.channel.code, order_value=str(order.total), currency=order.currency
            )
        return data

    def _order_facts(self, order: Order, form: SimulateForm, facts: dict, after: str) -> dict:
        facts_for_order = getattr(facts_module, "facts_for_order", None)
        order_facts = getattr(facts_module, "order_facts", None)
        if facts_for_order is None or order_facts is None:
            raise CommandError("--order needs guardrails.facts.facts_for_order and order_facts.")

        if not after:
            facts["order"] = order_facts(order)
            return facts
        try:
            proposal = json.loads(after)
        except json.JSONDecodeError as error:
            raise CommandError(f"--after is not valid JSON: {error}") from None
        if not isinstance(proposal, dict):
            raise CommandError("--after must be a JSON object.")
        if _contains_nul(proposal):
            # PostgreSQL cannot store or compare text with NUL characters.
            raise CommandError("--after must not contain NUL characters (\\u0000).")

        action = form.cleaned_data["action"]
        _proposal_check(order, action.code, proposal)
        try:
            return facts_for_order(
                order=order,
                action=action,
                before={},
                after=proposal,
                confidence=form.cleaned_data["confidence"],
                model_name="simulation",
                model_version="",
            )
        except (LookupError, ValueError, TypeError, ObjectDoesNotExist) as error:
            raise CommandError(f"--after does not fit order {order.pk}: {error}") from None

    def _print(self, result) -> None:
        evaluation = result.evaluation
        judged_by = str(result.version) if result.version else "no policy"
        self.stdout.write(f"Verdict: {evaluation.verdict} (judged by {judged_by})")
        if evaluation.band:
            self.stdout.write(f"Value band: {evaluation.band}")
        if evaluation.approver_group:
            self.stdout.write(
                f"Approver: {evaluation.approver_group}, "
                f"review SLA {evaluation.review_sla_minutes} min"
            )
        width = max((len(reason["rule"]) for reason in evaluation.reasons), default=4)
        for reason in evaluation.reasons:
            self.stdout.write(
                f"  {reason['outcome'].upper():<5}  {reason['rule']:<{width}}  {reason['message']}"
            )


def _proposal_check(order: Order, action_code: str, after: dict) -> None:
    """Check `after` as a live proposal would be checked; raise CommandError if it is unfit.

    The order's current state stands in for `before`, so only `after` is judged.
    """
    applier = applier_for(action_code)
    before = after
    if applier is not None:
        try:
            before = applier.current(order, after)
        except (DecisionError, LookupError, ValueError, TypeError, ObjectDoesNotExist):
            # `after` names no part of the order; the check below says what is wrong.
            before = after
    try:
        proposal_validate(action_code=action_code, order=order, before=before, after=after)
    except DecisionError as error:
        raise CommandError(f"--after: {error.message}") from None


def _contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _form_errors(form: SimulateForm) -> str:
    options = {"version": "policy-version"}
    lines = []
    for field, errors in form.errors.items():
        name = options.get(field, field.replace("_", "-"))
        lines.extend(f"--{name}: {error}" for error in errors)
    return "\n".join(lines)
