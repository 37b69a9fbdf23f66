"""Admin for versions and canaries.

Both are written only through `guardrails.rollouts`, so every change has its audit entry and,
for canaries, its event. The add forms call the service and stored rows are read-only. A
version is activated by a list action that takes a note. Canaries are operated on their page
under /rollouts/, which the admin links to.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import rollouts
from .models import Canary, CanaryEvent, Version
from .rollout_forms import CanaryStartForm, VersionAddForm
from .rollout_views import admin_change_url, error_label_url

OPERATE_PERMISSION = "guardrails.operate_canary"
ACTIVATE_PERMISSION = "guardrails.change_version"

# How many fixed labels the version page lists; the rest are counted.
FIXED_LABELS_SHOWN = 50


class VersionActionForm(ActionForm):
    note = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Why you activate the selected version; recorded with the change.",
    )


def _linked(url: str, text: str) -> str:
    return format_html('<a href="{}">{}</a>', url, text) if url else text


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = [
        "subject",
        "label",
        "kind",
        "action",
        "status",
        "created_at",
        "activated_at",
    ]
    list_filter = ["kind", "status", "action"]
    list_select_related = ["action"]
    search_fields = ["subject", "label", "changelog"]
    filter_horizontal = ["policy_versions"]
    action_form = VersionActionForm
    actions = ["activate"]
    readonly_fields = [
        "kind",
        "subject",
        "label",
        "action",
        "status",
        "changelog",
        "config",
        "policy_version_list",
        "created_by",
        "created_at",
        "activated_at",
        "retired_at",
        "page_link",
        "fixed_failures",
    ]

    def get_form(self, request: HttpRequest, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = VersionAddForm
        form = super().get_form(request, obj, **kwargs)
        # modelform_factory builds a new class per call, so the user stays with this request.
        form.user = request.user
        return form

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return list(VersionAddForm.Meta.fields)
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else []

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTIVATE_PERMISSION)

    def save_model(self, request: HttpRequest, obj: Version, form, change: bool) -> None:
        # VersionAddForm stored the version while cleaning; the admin logs and redirects to obj.
        _adopt(obj, form.version)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        return None

    def construct_change_message(self, request, form, formsets, add=False):
        return [{"added": {}}]

    @admin.action(description="Activate the selected version", permissions=["activate"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Version]) -> None:
        note = request.POST.get("note", "").strip()
        if not note:
            self.message_user(
                request, "Enter a note in the Note field before you activate.", messages.ERROR
            )
            return
        if queryset.count() != 1:
            self.message_user(
                request,
                "Select exactly one version: activating retires the active one of its subject.",
                messages.ERROR,
            )
            return

        version = queryset.get()
        try:
            rollouts.version_activate(version_id=version.pk, user=request.user, note=note)
        except rollouts.RolloutError as error:
            self.message_user(
                request, f"{version} was not activated: {error.message}", messages.ERROR
            )
            return
        self.message_user(request, f"Activated {version}.", messages.SUCCESS)

    @admin.display(description="policy versions")
    def policy_version_list(self, version: Version) -> str:
        rows = version.policy_versions.select_related("policy__action", "policy__channel")
        if not rows:
            return "-"
        return format_html_join(
            ", ",
            "{}",
            (
                (
                    _linked(
                        admin_change_url("admin:guardrails_policyversion_change", row.pk), str(row)
                    ),
                )
                for row in rows
            ),
        )

    @admin.display(description="page")
    def page_link(self, version: Version) -> str:
        url = reverse("rollouts:version", args=[version.pk])
        return format_html('<a href="{}">Open the version page with its canaries</a>', url)

    @admin.display(description="failures it fixed")
    def fixed_failures(self, version: Version) -> str:
        labels = list(
            version.fixed_labels.select_related("cause", "impact", "decision", "review_item")[
                :FIXED_LABELS_SHOWN
            ]
        )
        fixes = list(version.fix_items.all())
        if not labels and not fixes:
            return "No labelled failure or backlog entry names this version as its fix."

        label_rows = format_html_join(
            "",
            "<li>{}: {} ({})</li>",
            ((_label_link(label), label.cause, label.impact) for label in labels),
        )
        fix_rows = format_html_join(
            "",
            "<li>{} <span>({})</span></li>",
            (
                (
                    _linked(admin_change_url("admin:reviews_fixitem_change", fix.pk), fix.title),
                    fix.get_status_display(),
                )
                for fix in fixes
            ),
        )
        return format_html(
            "<p>Labelled failures: {}</p><ul>{}</ul><p>Backlog entries: {}</p><ul>{}</ul>",
            version.fixed_labels.count(),
            label_rows,
            len(fixes),
            fix_rows,
        )


def _label_link(label) -> str:
    return _linked(error_label_url(label, staff=True), str(label))


class CanaryEventInline(admin.TabularInline):
    model = CanaryEvent
    extra = 0
    fields = ["created_at", "kind", "detail", "data", "actor"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Canary)
class CanaryAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "candidate",
        "control",
        "share_percent",
        "shadow",
        "status",
        "started_at",
        "ends_at",
        "comparison_link",
    ]
    list_filter = ["status", "shadow", "candidate__kind"]
    list_select_related = ["candidate", "control"]
    search_fields = ["name", "candidate__subject", "candidate__label"]
    inlines = [CanaryEventInline]
    readonly_fields = [
        "name",
        "candidate",
        "control",
        "action",
        "channel",
        "share",
        "shadow",
        "exclude_priority_skus",
        "days",
        "min_orders_per_arm",
        "max_exception_increase_pp",
        "status",
        "started_at",
        "ends_at",
        "ended_at",
        "ended_by",
        "end_reason",
        "last_evaluated_at",
        "created_by",
        "created_at",
        "comparison_link",
    ]

    def get_form(self, request: HttpRequest, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = CanaryStartForm
        form = super().get_form(request, obj, **kwargs)
        form.user = request.user
        return form

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return list(CanaryStartForm.Meta.fields)
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj):
        return self.inlines if obj is not None else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and request.user.has_perm(OPERATE_PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Canary, form, change: bool) -> None:
        # CanaryStartForm started the canary while cleaning.
        _adopt(obj, form.canary)

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        return None

    def construct_change_message(self, request, form, formsets, add=False):
        return [{"added": {}}]

    @admin.display(description="share", ordering="share")
    def share_percent(self, canary: Canary) -> str:
        return f"{canary.share * 100:.2f} %"

    @admin.display(description="comparison")
    def comparison_link(self, canary: Canary) -> str:
        if canary.pk is None:
            return "-"
        url = reverse("rollouts:canary", args=[canary.pk])
        return format_html('<a href="{}">Compare the arms</a>', url)


def _adopt(obj, stored) -> None:
    """Make the admin's unsaved instance the row a service stored, for its log and redirect."""
    obj.__dict__.update({key: value for key, value in stored.__dict__.items() if key != "_state"})
    obj._state.adding = False
    obj._state.db = stored._state.db
