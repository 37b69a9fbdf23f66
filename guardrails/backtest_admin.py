"""Admin for backtests and shadow versions: the report pages and the PolicyVersion actions.

The actions (`run_backtest`, `run_in_shadow`, `stop_shadow`) are listed on the PolicyVersion
admin in guardrails/admin.py. They need the publish permission (the admin's
`has_publish_permission`, so other roles do not see them), and each checks its own permission
again, as the actions can be posted without the list page.
"""

import logging

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .backtest import MAX_DAYS, BacktestError, backtest_run, shadow_disagreements, shadow_start
from .backtest import shadow_stop as policy_shadow_stop
from .models import BacktestRun, PolicyVersion, ShadowEvaluation

logger = logging.getLogger(__name__)

BACKTEST_PERMISSION = "guardrails.add_backtestrun"
SHADOW_PERMISSION = "guardrails.publish_policyversion"
DEFAULT_DAYS = 30


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "policy_version",
        "days",
        "decisions_replayed",
        "verdicts_changed",
        "created_by",
    ]
    list_filter = ["policy_version__policy__action"]
    list_select_related = ["policy_version__policy__action", "policy_version__policy__channel"]
    fields = [
        "policy_version",
        "days",
        "decisions_replayed",
        "verdicts_changed",
        "created_by",
        "created_at",
        "report_html",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Runs are made by the PolicyVersion action or the backtest_policy command.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Report")
    def report_html(self, run: BacktestRun) -> SafeString:
        return render_to_string(
            "admin/guardrails/backtestrun/report.html", {"run": run, "report": run.report}
        )


@admin.register(ShadowEvaluation)
class ShadowEvaluationAdmin(admin.ModelAdmin):
    change_list_template = "admin/guardrails/shadowevaluation/change_list.html"
    list_display = [
        "created_at",
        "decision_link",
        "live_verdict",
        "verdict",
        "agrees",
        "policy_version",
    ]
    list_filter = ["agrees", "policy_version"]
    list_select_related = ["decision", "policy_version__policy__action"]
    readonly_fields = ["decision", "policy_version", "verdict", "agrees", "reasons", "created_at"]
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Decision", ordering="decision")
    def decision_link(self, evaluation: ShadowEvaluation) -> str:
        return f"#{evaluation.decision_id} (order {evaluation.decision.order_id})"

    @admin.display(description="Live verdict", ordering="decision__verdict")
    def live_verdict(self, evaluation: ShadowEvaluation) -> str:
        return evaluation.decision.get_verdict_display()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # With one version filtered, show its agree/disagree summary above the list.
        version_id = request.GET.get("policy_version__id__exact", "")
        # Anything but an id is left to the changelist, which redirects it to ?e=1.
        is_id = version_id.isascii() and version_id.isdigit() and len(version_id) <= 18
        version = PolicyVersion.objects.filter(pk=int(version_id)).first() if is_id else None
        extra_context = dict(extra_context or {})
        if version is not None:
            extra_context["shadow_version"] = version
            extra_context["shadow_summary"] = shadow_disagreements(version, DEFAULT_DAYS)
        return super().changelist_view(request, extra_context=extra_context)


@admin.action(description="Backtest against recorded decisions", permissions=["publish"])
def run_backtest(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PolicyVersion]
) -> HttpResponse | None:
    """Ask for the number of days, then replay the selected versions and show the report."""
    if not request.user.has_perm(BACKTEST_PERMISSION):
        raise PermissionDenied

    if "apply" not in request.POST:
        return _backtest_days_page(modeladmin, request, queryset, DEFAULT_DAYS, error="")
    days, error = _days_from(request.POST.get("days", ""))
    if error:
        return _backtest_days_page(modeladmin, request, queryset, DEFAULT_DAYS, error=error)

    runs = [backtest_run(version=version, days=days, user=request.user) for version in queryset]
    if len(runs) == 1:
        return HttpResponseRedirect(
            reverse("admin:guardrails_backtestrun_change", args=[runs[0].pk])
        )
    modeladmin.message_user(request, f"Ran {len(runs)} backtests over {days} days.")
    return HttpResponseRedirect(reverse("admin:guardrails_backtestrun_changelist"))


def _days_from(value: str) -> tuple[int, str]:
    try:
        days = int(value)
    except ValueError:
        return 0, f"Days: enter a whole number from 1 to {MAX_DAYS}, not {value!r}."
    if not 1 <= days <= MAX_DAYS:
        return 0, f"Days: must be between 1 and {MAX_DAYS}, not {days}."
    return days, ""


def _backtest_days_page(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[PolicyVersion],
    days: int,
    *,
    error: str,
) -> TemplateResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Backtest against recorded decisions",
        "opts": modeladmin.model._meta,
        "versions": queryset,
        "days": days,
        "max_days": MAX_DAYS,
        "error": error,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(
        request, "admin/guardrails/policyversion/backtest_days.html", context, status=200
    )


@admin.action(description="Run in shadow beside the live version", permissions=["publish"])
def run_in_shadow(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PolicyVersion]
) -> None:
    if not request.user.has_perm(SHADOW_PERMISSION):
        raise PermissionDenied

    for version in queryset.select_related("policy__action", "policy__channel"):
        if version.policy.shadow_version_id == version.pk:
            modeladmin.message_user(
                request, f"Nothing changed: {version} already runs in shadow.", messages.WARNING
            )
            continue
        try:
            shadow_start(version=version, user=request.user)
        except BacktestError as error:
            modeladmin.message_user(request, error.message, level=messages.ERROR)
            continue
        link = reverse("admin:guardrails_shadowevaluation_changelist")
        modeladmin.message_user(
            request,
            format_html(
                "Shadow started: {} now runs beside the live version; see <a "
                'href="{}?policy_version__id__exact={}">its evaluations</a>.',
                version,
                link,
                version.pk,
            ),
        )


@admin.action(description="Stop shadow", permissions=["publish"])
def stop_shadow(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[PolicyVersion]
) -> None:
    """Stop the shadow of each selected version's policy, if that version is the shadow."""
    if not request.user.has_perm(SHADOW_PERMISSION):
        raise PermissionDenied

    for version in queryset.select_related("policy"):
        if version.policy.shadow_version_id != version.pk:
            modeladmin.message_user(
                request, f"Not running in shadow: {version}.", level=messages.WARNING
            )
            continue
        policy_shadow_stop(policy=version.policy, user=request.user)
        modeladmin.message_user(request, f"Shadow stopped: {version} no longer runs in shadow.")


POLICY_VERSION_ACTIONS = [run_backtest, run_in_shadow, stop_shadow]
