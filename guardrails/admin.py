"""Admin for the audit log, the action catalog and policies.

Stored policy versions are read-only. An ops manager "edits" a policy by adding a version:
the add form is prefilled from the latest version (`?policy=<id>`), validated as a whole
with its bands, and saved through `guardrails.policies`, which numbers and audits it.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from omsguard.money import money_format

from .backtest_admin import POLICY_VERSION_ACTIONS
from .forms import GuardrailSettingsForm
from .models import (
    ActionType,
    AuditEntry,
    Decision,
    GuardrailSettings,
    Policy,
    PolicyBand,
    PolicyVersion,
)
from .policies import (
    BAND_FIELDS,
    RULE_FIELDS,
    policy_rules_problems,
    policy_version_create,
    policy_version_publish,
)
from .sampling import sampling_rates_recompute
from .services import audit_record

PUBLISH_PERMISSION = "guardrails.publish_policyversion"


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_label", "action", "target_type", "target_id", "reason"]
    list_filter = ["action", "actor_kind", "target_type"]
    search_fields = ["target_id", "actor_label", "reason"]
    readonly_fields = [field.name for field in AuditEntry._meta.fields]
    raw_id_fields = ["actor"]
    list_select_related = ["actor"]
    show_full_result_count = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    """Decisions are the engine's record: read-only here, reverted and labelled through the API."""

    list_display = [
        "id",
        "created_at",
        "action",
        "order",
        "channel",
        "verdict",
        "confidence",
        "model_name",
        "model_version",
        "applied_at",
        "reverted_at",
        "outcome",
    ]
    list_filter = ["verdict", "outcome", "review_outcome", "action"]
    search_fields = ["model_name", "model_version"]
    list_select_related = ["action", "order", "channel"]
    raw_id_fields = [
        "order",
        "proposed_by",
        "policy_version",
        "review_item",
        "reverted_by",
        "labelled_by",
        "canary",
    ]
    readonly_fields = [field.name for field in Decision._meta.fields]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ActionType)
class ActionTypeAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "risk_tier", "review_kind", "has_applier", "is_active"]
    list_filter = ["risk_tier", "is_active"]
    search_fields = ["code", "name"]
    fields = [
        "code",
        "name",
        "description",
        "risk_tier",
        "review_kind",
        "has_applier",
        "holds_order_while_queued",
        "is_active",
    ]
    # Codes and appliers are fixed by the code that carries actions out; ops tune the rest.
    readonly_fields = [
        "code",
        "name",
        "description",
        "review_kind",
        "has_applier",
        "holds_order_while_queued",
    ]

    def save_model(self, request, obj: ActionType, form, change: bool) -> None:
        # The risk tier and is_active change what the engine allows, so they are audited.
        changed = [name for name in form.changed_data if name in form.cleaned_data]
        super().save_model(request, obj, form, change)
        audit_record(
            action="action_type.changed",
            target_type="guardrails.actiontype",
            target_id=obj.code,
            actor=request.user,
            reason="Changed in the admin.",
            before={name: form.initial.get(name) for name in changed},
            after={name: form.cleaned_data[name] for name in changed},
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PolicyVersionHistoryInline(admin.TabularInline):
    model = PolicyVersion
    fk_name = "policy"
    verbose_name = "version"
    verbose_name_plural = "version history"
    fields = [
        "version_link",
        "mode",
        "approver_group",
        "limits_summary",
        "published_at",
        "created_by",
        "created_at",
        "changelog",
    ]
    readonly_fields = fields
    ordering = ["-number"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="version")
    def version_link(self, version: PolicyVersion) -> str:
        url = reverse("admin:guardrails_policyversion_change", args=[version.pk])
        state = "" if version.published_at else " (draft)"
        return format_html('<a href="{}">v{}{}</a>', url, version.number, state)

    @admin.display(description="limits")
    def limits_summary(self, version: PolicyVersion) -> str:
        return limits_summary(version)


def _plain_decimal(value: Decimal) -> str:
    """Write a stored decimal without its padding zeros: 0.9200 as 0.92, 1.0000 as 1."""
    return format(value.normalize(), "f")


def limits_summary(version: PolicyVersion | None) -> str:
    """Summarize a version's limits in one line, e.g. "item < USD 25.00, confidence > 0.92"."""
    if version is None:
        return "-"
    currency = version.limits_currency
    parts = []
    if version.order_value_under is not None:
        parts.append(f"order < {currency} {money_format(version.order_value_under, currency)}")
    if version.item_price_under is not None:
        parts.append(f"item < {currency} {money_format(version.item_price_under, currency)}")
    if version.confidence_above is not None:
        parts.append(f"confidence > {_plain_decimal(version.confidence_above)}")
    if version.require_fresh_stock:
        parts.append("fresh stock")
    bands = version.bands.count()
    if bands:
        parts.append(f"{bands} band{'s' if bands > 1 else ''}")
    return ", ".join(parts) or "-"


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["action", "scope", "live_number", "live_mode", "live_limits", "shadow_version"]
    list_filter = ["action", "channel", "live_version__mode"]
    list_select_related = ["action", "channel", "live_version", "shadow_version"]
    search_fields = ["action__code", "action__name", "channel__code"]
    inlines = [PolicyVersionHistoryInline]

    def get_readonly_fields(self, request, obj=None):
        # Action and channel fix what a policy is about; the versions are changed by adding one.
        if obj is None:
            return ["new_version_link"]
        return ["action", "channel", "live_version", "shadow_version", "new_version_link"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["action", "channel"]
        return ["action", "channel", "live_version", "shadow_version", "new_version_link"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: Policy, form, change: bool) -> None:
        # Only adding reaches here with data: a stored policy's fields are read-only.
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(
                action="policy.created",
                target_type="guardrails.Policy",
                target_id=obj.pk,
                actor=request.user,
                reason="Added in the admin.",
                after={
                    "action": obj.action.code,
                    "channel": obj.channel.code if obj.channel_id else None,
                },
            )

    def response_add(self, request, obj, post_url_continue=None):
        # A new policy has no rules yet; go straight to writing its first version.
        return HttpResponseRedirect(_new_version_url(obj))

    @admin.display(description="channel", ordering="channel__code")
    def scope(self, policy: Policy) -> str:
        return policy.channel.code if policy.channel_id else "all channels"

    @admin.display(description="live version")
    def live_number(self, policy: Policy):
        return f"v{policy.live_version.number}" if policy.live_version_id else "-"

    @admin.display(description="mode")
    def live_mode(self, policy: Policy) -> str:
        return policy.live_version.get_mode_display() if policy.live_version_id else "-"

    @admin.display(description="limits")
    def live_limits(self, policy: Policy) -> str:
        return limits_summary(policy.live_version)

    @admin.display(description="edit")
    def new_version_link(self, policy: Policy) -> str:
        return format_html(
            '<a href="{}">Edit: create a new version from the latest one</a>',
            _new_version_url(policy),
        )


def _new_version_url(policy: Policy) -> str:
    return f"{reverse('admin:guardrails_policyversion_add')}?policy={policy.pk}"


class PolicyVersionForm(forms.ModelForm):
    publish_now = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Make this version live on save. Leave unticked to keep a draft to test first.",
    )

    class Meta:
        model = PolicyVersion
        fields = ["policy", *RULE_FIELDS, "changelog"]

    def _post_clean(self) -> None:
        super()._post_clean()
        # The band formset validates the version and its bands together and reports version
        # problems on this form; it finds the form through the unsaved instance.
        self.instance._admin_form = self


class PolicyBandForm(forms.ModelForm):
    class Meta:
        model = PolicyBand
        fields = list(BAND_FIELDS)

    def has_changed(self) -> bool:
        # Bands prefilled from the previous version are saved even when left untouched.
        return bool(self.initial) or super().has_changed()


class PolicyBandFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        version_form = getattr(self.instance, "_admin_form", None)
        if version_form is None or version_form.errors or any(form.errors for form in self.forms):
            return

        bands = self.band_rows()
        rules = {name: version_form.cleaned_data.get(name) for name in RULE_FIELDS}
        policy = version_form.cleaned_data["policy"]
        problems = policy_rules_problems(action=policy.action, rules=rules, bands=bands)
        if not problems:
            self.instance._bands = bands
            return

        band_forms = [form for form in self.forms if self._is_kept(form)]
        for key, messages_ in problems.items():
            if key.startswith("bands."):
                _, index, field_name = key.split(".", 2)
                for message in messages_:
                    band_forms[int(index)].add_error(field_name, message)
            else:
                for message in messages_:
                    version_form.add_error(key, message)
        raise ValidationError("The policy has errors; see the messages on its fields above.")

    def band_rows(self) -> list[dict]:
        return [
            {name: form.cleaned_data.get(name) for name in BAND_FIELDS}
            for form in self.forms
            if self._is_kept(form)
        ]

    def _is_kept(self, form) -> bool:
        return bool(form.cleaned_data) and not form.cleaned_data.get("DELETE")


class PolicyBandInline(admin.TabularInline):
    model = PolicyBand
    form = PolicyBandForm
    formset = PolicyBandFormSet
    fields = list(BAND_FIELDS)
    extra = 1
    verbose_name = "value band"
    verbose_name_plural = "value bands (tried top to bottom; the first match replaces the limits)"

    class Media:
        css = {"all": ["omsguard/admin-policy-bands.css"]}

    def get_extra(self, request, obj=None, **kwargs) -> int:
        if obj is not None:
            return 0
        return len(_prefill_bands(request)) + 1

    def has_add_permission(self, request, obj=None) -> bool:
        # Bands are added only with a new version, never to a stored one.
        return obj is None and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    form = PolicyVersionForm
    inlines = [PolicyBandInline]
    list_display = [
        "policy",
        "number",
        "mode",
        "approver_group",
        "published_at",
        "created_by",
        "created_at",
    ]
    list_filter = ["policy__action", "policy__channel", "mode"]
    list_select_related = ["policy__action", "policy__channel", "approver_group", "created_by"]
    search_fields = ["policy__action__code", "changelog"]
    autocomplete_fields = ["policy"]
    actions = ["publish_drafts", *POLICY_VERSION_ACTIONS]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["policy", *RULE_FIELDS, "changelog", "publish_now"]
        return [
            "policy",
            "number",
            *RULE_FIELDS,
            "changelog",
            "created_by",
            "created_at",
            "published_at",
            "published_by",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        if _policy_id(request) is None:
            # The policy's autocomplete widget looks its initial value up as an id, and any
            # other value raised ValueError.
            initial.pop("policy", None)
        latest = _latest_version(request)
        if latest is not None:
            for name in RULE_FIELDS:
                initial[name] = getattr(latest, f"{name}_id", None) or getattr(latest, name)
        return initial

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, PolicyBandInline) and obj is not None and obj.pk is None:
            kwargs["initial"] = _prefill_bands(request)
        return kwargs

    def save_model(self, request, obj, form, change) -> None:
        # Reached only for a new version: stored versions have no change permission.
        data = form.cleaned_data
        if data.get("publish_now") and not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied
        version = policy_version_create(
            policy=data["policy"],
            user=request.user,
            changelog=data["changelog"],
            bands=getattr(obj, "_bands", []),
            **{name: data.get(name) for name in RULE_FIELDS},
        )
        if data.get("publish_now"):
            version = policy_version_publish(version=version, user=request.user)

        # The admin logs and redirects to `obj`; make it the stored version.
        obj.__dict__.update(
            {key: value for key, value in version.__dict__.items() if key != "_state"}
        )
        obj._state.adding = False
        obj._state.db = version._state.db

    def save_related(self, request, form, formsets, change) -> None:
        # policy_version_create stored the bands with the version.
        return None

    def construct_change_message(self, request, form, formsets, add=False):
        return [{"added": {}}]

    @admin.action(description="Publish the selected drafts", permissions=["publish"])
    def publish_drafts(self, request: HttpRequest, queryset: QuerySet[PolicyVersion]) -> None:
        versions = queryset.select_related("policy__action", "policy__channel").order_by("number")
        published, skipped = [], []
        for version in versions:
            if version.published_at is not None:
                skipped.append(str(version))
                continue
            try:
                published.append(str(policy_version_publish(version=version, user=request.user)))
            except ValidationError as error:
                # E.g. the draft belongs to a rule-set canary, whose promotion publishes it.
                self.message_user(
                    request, f"{version} not published: {' '.join(error.messages)}", messages.ERROR
                )

        if published:
            self.message_user(
                request,
                f"Published {len(published)} draft{pluralize(published)}: {', '.join(published)}.",
                messages.SUCCESS,
            )
        if skipped:
            # Publishing a published version again would change nothing.
            self.message_user(
                request,
                f"Skipped {len(skipped)} version{pluralize(skipped)} already published: "
                f"{', '.join(skipped)}.",
                messages.WARNING,
            )

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PUBLISH_PERMISSION)


def _policy_id(request: HttpRequest) -> int | None:
    """Return the add page's `?policy=` when it is an id, else None."""
    value = request.GET.get("policy", "")
    # isdigit() alone accepts "²", which int() rejects; 18 digits always fit a bigint.
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return int(value)


def _latest_version(request: HttpRequest) -> PolicyVersion | None:
    policy_id = _policy_id(request)
    if policy_id is None:
        return None
    return (
        PolicyVersion.objects.filter(policy_id=policy_id)
        .prefetch_related("bands")
        .order_by("-number")
        .first()
    )


def _prefill_bands(request: HttpRequest) -> list[dict]:
    if request.method != "GET":
        # A posted form carries the bands themselves; prefilled copies would shadow deletions.
        return []
    latest = _latest_version(request)
    if latest is None:
        return []
    return [{name: getattr(band, name) for name in BAND_FIELDS} for band in latest.bands.all()]


@admin.register(GuardrailSettings)
class GuardrailSettingsAdmin(admin.ModelAdmin):
    form = GuardrailSettingsForm
    readonly_fields = ["updated_at"]

    def save_model(self, request, obj: GuardrailSettings, form, change: bool) -> None:
        changed = [name for name in form.changed_data if name in form.cleaned_data]
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                action="guardrail_settings.changed",
                target_type="guardrail_settings",
                target_id=obj.pk,
                actor=request.user,
                reason="Changed in the admin.",
                before={name: _json_value(form.initial.get(name)) for name in changed},
                after={name: _json_value(form.cleaned_data[name]) for name in changed},
            )
        if SAMPLING_FIELDS & set(changed):
            # The stored rates follow the settings at once, not at the next periodic run.
            sampling_rates_recompute()

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # One row: go straight to it.
        settings_row, _ = GuardrailSettings.objects.get_or_create(pk=1)
        return HttpResponseRedirect(
            reverse("admin:guardrails_guardrailsettings_change", args=[settings_row.pk])
        )


# Settings that change the audit sampling rate of every action.
SAMPLING_FIELDS = {
    "audit_sample_start_rate",
    "audit_sample_floor_rate",
    "audit_sample_target_disagreement",
    "audit_sample_min_reviews",
    "disagreement_window_days",
}


def _json_value(value: object) -> object:
    # Decimals are stored as text in the audit entry, so 0.05 keeps its exact digits.
    return str(value) if isinstance(value, Decimal) else value


from . import breaker_admin, rollout_admin, sampling_admin  # noqa: E402, F401
