"""Forms: the simulate page's hypothetical order and action, and the guardrail settings."""

from decimal import Decimal

from django import forms

from catalog.models import Channel
from omsguard.money import is_currency

from .models import ActionType, CustomerTier, GuardrailSettings, PolicyVersion
from .policies import MAX_DURATION_MINUTES
from .simulate import STOCK_FRESH, STOCK_NONE, STOCK_STALE, Scenario


class SimulateForm(forms.Form):
    action = forms.ModelChoiceField(
        queryset=ActionType.objects.filter(is_active=True), to_field_name="code"
    )
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.filter(is_active=True),
        to_field_name="code",
        required=False,
        help_text="Empty judges under the policy for all channels.",
    )
    order_value = forms.DecimalField(min_value=0, max_digits=14, decimal_places=3)
    currency = forms.CharField(max_length=3, initial="USD")
    item_price = forms.DecimalField(
        min_value=0,
        max_digits=14,
        decimal_places=3,
        required=False,
        help_text="Unit price of the item the action touches (substitutions).",
    )
    confidence = forms.DecimalField(min_value=0, max_value=1, max_digits=5, decimal_places=4)
    customer_tier = forms.ChoiceField(
        choices=[(CustomerTier.STANDARD, "Standard"), (CustomerTier.PRIORITY, "Priority")],
        initial=CustomerTier.STANDARD,
        required=False,
        help_text="Standard when left out.",
    )
    margin_rate = forms.DecimalField(
        min_value=0,
        max_value=1,
        max_digits=5,
        decimal_places=4,
        required=False,
        help_text="Order margin rate, 0 to 1; empty when unknown.",
    )
    pickup_to_ship = forms.BooleanField(
        required=False, label="In-store pickup rerouted to shipping"
    )
    listing_forbids = forms.BooleanField(required=False, label="A listing forbids the substitution")
    stock = forms.ChoiceField(
        choices=[
            (STOCK_FRESH, "Fresh snapshot"),
            (STOCK_STALE, "Stale snapshot"),
            (STOCK_NONE, "No snapshot"),
        ],
        initial=STOCK_FRESH,
        required=False,
        help_text="A fresh snapshot when left out.",
    )
    version = forms.IntegerField(
        required=False,
        min_value=1,
        label="Policy version id",
        help_text="A draft (or any version) to simulate under; empty uses the live version.",
    )

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].upper()
        if not is_currency(currency):
            raise forms.ValidationError(f"Unknown currency {currency!r}; use a code like USD.")
        return currency

    def clean_version(self) -> PolicyVersion | None:
        version_id = self.cleaned_data.get("version")
        if version_id is None:
            return None
        version = (
            PolicyVersion.objects.select_related("policy__action").filter(pk=version_id).first()
        )
        if version is None:
            raise forms.ValidationError(f"No policy version has id {version_id}.")
        return version

    def clean(self) -> dict:
        cleaned = super().clean()
        version, action = cleaned.get("version"), cleaned.get("action")
        if version is not None and action is not None and version.policy.action_id != action.pk:
            self.add_error("version", f"{version} is not a version of {action.code}.")
        return cleaned

    def scenario(self) -> Scenario:
        data = self.cleaned_data
        return Scenario(
            action=data["action"],
            channel=data["channel"],
            order_value=data["order_value"],
            currency=data["currency"],
            confidence=data["confidence"],
            item_price=data.get("item_price"),
            # A link may leave these out, as the command line may; the form's defaults apply.
            customer_tier=data["customer_tier"] or CustomerTier.STANDARD,
            margin_rate=data.get("margin_rate"),
            pickup_to_ship=data["pickup_to_ship"],
            listing_forbids=data["listing_forbids"],
            stock=data["stock"] or STOCK_FRESH,
        )


SIMULATE_EXAMPLE = {
    "action": "substitute_sku",
    "order_value": Decimal("40"),
    "currency": "USD",
    "item_price": Decimal("24.99"),
    "confidence": Decimal("0.93"),
}


# Fields of GuardrailSettings that count decisions, minutes or days: at least 1 each.
SETTINGS_COUNT_FIELDS = (
    "breaker_window_minutes",
    "breaker_min_decisions",
    "breaker_cool_down_minutes",
    "breaker_trial_decisions",
    "mix_baseline_days",
    "autonomy_window_days",
    "disagreement_window_days",
    "review_default_sla_minutes",
    "claim_minutes",
    "address_confirmation_hours",
    "calibration_min_reviews",
    "fix_due_days",
)
# Shares of decisions, 0 to 1 inclusive.
SETTINGS_SHARE_FIELDS = (
    "audit_sample_start_rate",
    "audit_sample_floor_rate",
    "audit_sample_target_disagreement",
    "known_answer_rate",
)
# Error rates: above 0 (a rate of 0 would trip on the first error) and at most 1.
SETTINGS_ERROR_RATE_FIELDS = ("breaker_error_rate", "autonomy_max_error_rate")


def _duration_max(name: str) -> tuple[int, str] | None:
    """Return the maximum of a duration field (one year) and its unit, or None for a count."""
    per_year = {"minutes": MAX_DURATION_MINUTES, "hours": 365 * 24, "days": 365}
    unit = name.rsplit("_", 1)[-1]
    return (per_year[unit], unit) if unit in per_year else None


class GuardrailSettingsForm(forms.ModelForm):
    """The admin form for the engine's numbers; it rejects values the checks cannot use."""

    class Meta:
        model = GuardrailSettings
        fields = [
            "breaker_window_minutes",
            "breaker_min_decisions",
            "breaker_error_rate",
            "breaker_cool_down_minutes",
            "breaker_trial_decisions",
            "mix_baseline_days",
            "mix_drift_factor",
            "confidence_collapse_drop",
            "autonomy_window_days",
            "autonomy_max_error_rate",
            "audit_sample_start_rate",
            "audit_sample_floor_rate",
            "audit_sample_target_disagreement",
            "audit_sample_min_reviews",
            "disagreement_window_days",
            "review_default_sla_minutes",
            "claim_minutes",
            "address_confirmation_hours",
            "known_answer_rate",
            "calibration_target_precision",
            "calibration_min_reviews",
            "fix_due_days",
        ]

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in SETTINGS_COUNT_FIELDS:
            value = cleaned.get(name)
            if value is not None and value < 1:
                self.add_error(name, f"Must be 1 or more, not {value}.")
            elif value is not None and _duration_max(name) and value > _duration_max(name)[0]:
                limit, unit = _duration_max(name)
                self.add_error(name, f"Must be at most {limit:,} {unit} (one year).")
        for name in SETTINGS_ERROR_RATE_FIELDS:
            value = cleaned.get(name)
            if value is not None and not Decimal(0) < value <= 1:
                self.add_error(name, f"Must be above 0 and at most 1 (1 is 100 %), not {value}.")

        drop = cleaned.get("confidence_collapse_drop")
        if drop is not None and not Decimal(0) <= drop < 1:
            self.add_error(
                "confidence_collapse_drop", f"Must be 0 or more and under 1, not {drop}."
            )
        for name in SETTINGS_SHARE_FIELDS:
            value = cleaned.get(name)
            if value is not None and not Decimal(0) <= value <= 1:
                self.add_error(name, f"Must be from 0 to 1 (1 is 100 %), not {value}.")
        start = cleaned.get("audit_sample_start_rate")
        floor = cleaned.get("audit_sample_floor_rate")
        if start is not None and floor is not None and floor > start:
            self.add_error(
                "audit_sample_floor_rate",
                f"The floor {floor} is above the start rate {start}; sampling could never adapt.",
            )
        if cleaned.get("audit_sample_target_disagreement") == 0:
            self.add_error(
                "audit_sample_target_disagreement", "Must be above 0: the rate scales by it."
            )

        precision = cleaned.get("calibration_target_precision")
        if precision is not None and not Decimal(0) < precision <= 1:
            self.add_error(
                "calibration_target_precision",
                f"Must be above 0 and at most 1 (0.98 is 98 %), not {precision}.",
            )

        factor = cleaned.get("mix_drift_factor")
        if factor is not None and factor <= 1:
            self.add_error(
                "mix_drift_factor",
                f"Must be over 1: a share at {factor} times its baseline is no drift.",
            )
        return cleaned
