"""Forms of versions and canaries: the admin add forms and the canary page's actions.

The admin add forms save through the rollouts service as the last step of validation, after
every field and model check has passed. The service validates a version or a canary as a
whole (a new label, a draft candidate, one policy version per policy) and saves it in the
same step. Its errors become form errors, and nothing is saved when it raises.
"""

import json
from decimal import Decimal

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from . import rollouts
from .models import Canary, PolicyVersion, Version, VersionStatus

SHARE_HELP = (
    "Share of orders sent to the candidate, from 0.01 to 0.05 (1 to 5 %), with at most "
    "4 decimal places."
)
DAYS_HELP = f"How many days the canary runs, 1 to {rollouts.MAX_DAYS}."
RESUME_DAYS_HELP = (
    f"Run this many more days from now, 1 to {rollouts.MAX_DAYS}; needed once the run is over."
)


class ConfigField(forms.JSONField):
    """Django's JSONField, showing a lone surrogate again as the escape it was typed as.

    Django redisplays the value with ensure_ascii=False, and a lone surrogate (U+D800 to
    U+DFFF outside a pair) cannot be encoded as UTF-8, so the page that reports it as an
    error would fail with a 500.
    """

    def prepare_value(self, value):
        text = super().prepare_value(value)
        try:
            text.encode()
        except UnicodeEncodeError:
            return json.dumps(value, cls=self.encoder)
        return text


class VersionAddForm(forms.ModelForm):
    """Record a new version as a draft through `rollouts.version_create`."""

    # Set by the admin on the class it builds for each request.
    user: AbstractBaseUser | None = None

    class Meta:
        model = Version
        fields = ["kind", "subject", "label", "action", "changelog", "config", "policy_versions"]
        field_classes = {"config": ConfigField}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A rule set holds only draft policy versions, because published ones already judge
        # every decision and cannot be a candidate.
        self.fields["policy_versions"].queryset = PolicyVersion.objects.filter(
            published_at__isnull=True
        ).select_related("policy__action", "policy__channel")
        self.version: Version | None = None

    def _get_validation_exclusions(self) -> set[str]:
        # version_create checks that the label is new, with the message the API gives. The
        # form field still checks its length.
        return super()._get_validation_exclusions() | {"label"}

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        data = self.cleaned_data
        try:
            self.version = rollouts.version_create(
                kind=data["kind"],
                subject=data["subject"],
                label=data["label"],
                changelog=data["changelog"],
                user=self.user,
                action=data.get("action"),
                config=data.get("config") or {},
                policy_versions=tuple(data.get("policy_versions") or ()),
            )
        except rollouts.RolloutError as error:
            _add_service_error(self, error)


class CanaryStartForm(forms.ModelForm):
    """Start a canary of a draft version through `rollouts.canary_start`."""

    user: AbstractBaseUser | None = None

    # Any text: the service gives the one message of the share's rule, as the API does,
    # instead of the model field's digit counts.
    share = forms.CharField(initial="0.05", help_text=SHARE_HELP)
    # The service checks these bounds again; here they become form errors before it runs.
    days = forms.IntegerField(
        min_value=1, max_value=rollouts.MAX_DAYS, initial=14, help_text=DAYS_HELP
    )
    min_orders_per_arm = forms.IntegerField(
        min_value=1,
        max_value=rollouts.MAX_MIN_ORDERS_PER_ARM,
        initial=1000,
        help_text="Orders each arm needs before the rollback rule judges, "
        f"1 to {rollouts.MAX_MIN_ORDERS_PER_ARM:,}; fewer is inconclusive.",
    )
    max_exception_increase_pp = forms.DecimalField(
        max_digits=6,
        decimal_places=3,
        # 0.001 is the smallest value above 0 at 3 decimal places.
        min_value=Decimal("0.001"),
        max_value=rollouts.MAX_EXCEPTION_INCREASE_PP,
        initial=Decimal("0.100"),
        help_text="Roll back when the candidate's fulfilment exception rate exceeds the "
        "control's by more than this many percentage points: more than 0 and at most "
        f"{rollouts.MAX_EXCEPTION_INCREASE_PP}.",
    )

    class Meta:
        model = Canary
        fields = [
            "name",
            "candidate",
            "share",
            "shadow",
            "action",
            "channel",
            "exclude_priority_skus",
            "days",
            "min_orders_per_arm",
            "max_exception_increase_pp",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["candidate"].queryset = Version.objects.filter(
            status=VersionStatus.DRAFT
        ).select_related("action")
        self.fields["candidate"].help_text = "A draft version; it becomes the candidate arm."
        self.fields["name"].required = False
        self.fields["name"].help_text = "Empty names the canary after its candidate."
        self.canary: Canary | None = None

    def _get_validation_exclusions(self) -> set[str]:
        # canary_start checks the share, with the message the API gives.
        return super()._get_validation_exclusions() | {"share"}

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        data = self.cleaned_data
        try:
            self.canary = rollouts.canary_start(
                candidate_id=data["candidate"].pk,
                user=self.user,
                name=data.get("name") or "",
                share=data["share"],
                shadow=data.get("shadow", False),
                action=data.get("action"),
                channel=data.get("channel"),
                exclude_priority_skus=data.get("exclude_priority_skus", False),
                days=data["days"],
                min_orders_per_arm=data["min_orders_per_arm"],
                max_exception_increase_pp=data["max_exception_increase_pp"],
            )
        except rollouts.RolloutError as error:
            _add_service_error(self, error)


def _add_service_error(form: forms.Form, error: "rollouts.RolloutError") -> None:
    # The service names the argument at fault; the candidate arrives as `candidate_id`.
    field = (error.field or "").removesuffix("_id")
    form.add_error(field if field in form.fields else None, error.message)


# --- The canary page's actions ---------------------------------------------------------------


class ShareForm(forms.Form):
    # Any text: the service checks the share, so the page and the API give the same message.
    share = forms.CharField(help_text=SHARE_HELP)
    note = forms.CharField(max_length=2000, required=False)


class PauseForm(forms.Form):
    reason = forms.CharField(max_length=2000, help_text="Why the canary pauses.")


class NoteForm(forms.Form):
    """A note the action records; stopping and promoting need one, resuming does not."""

    note = forms.CharField(max_length=2000)


class ResumeForm(forms.Form):
    note = forms.CharField(max_length=2000, required=False)
    # The service checks again that a canary whose run is over gets a value.
    days = forms.IntegerField(
        required=False, min_value=1, max_value=rollouts.MAX_DAYS, help_text=RESUME_DAYS_HELP
    )
