"""The alert pages: the list with filters, one alert's page, and its HTMX actions.

Seeing alerts needs monitoring.view_alert; acknowledging, silencing and remediating need
monitoring.change_alert, checked again by the services. An action responds to an htmx
request with the alert's refreshed main section and a flash line. Errors (400, 403, 404,
409) come back as a one-line fragment that the page's htmx config swaps into `#flash`.
"""

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from reviews.views import htmx_login_required

from . import services
from .models import SEVERITY_RANK, Alert, AlertRule, AlertStatus, Severity
from .remediation import remediation_label, remediation_target

logger = logging.getLogger(__name__)

VIEW_PERMISSION = "monitoring.view_alert"
PAGE_SIZE = 50
SILENCE_HOURS = (1, 4, 24)
STATES = ("open", "acknowledged", "silenced", "resolved")


def alert_viewer_required(view: Callable) -> Callable:
    """Require a login, then monitoring.view_alert; without it the page names who to ask."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            return render(request, "monitoring/alerts/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


# --- Pages -----------------------------------------------------------------------------------


@alert_viewer_required
def alert_list(request: HttpRequest) -> HttpResponse:
    """Render the alerts: open ones first, by severity and then newest; resolved ones after."""
    now = timezone.now()
    filters, errors = _filters_parse(request.GET)
    alerts = _alerts_filtered(filters, now=now)
    page = Paginator(alerts, PAGE_SIZE).get_page(request.GET.get("page"))
    for alert in page.object_list:
        alert.state = _state(alert, now)

    link_params = request.GET.copy()
    link_params.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "filter_errors": errors,
        "states": STATES,
        "severities": Severity.choices,
        "owners": _owners(),
        "rules": AlertRule.objects.order_by("name").values_list("pk", "name"),
        "open_counts": _open_counts(),
        "link_query": link_params.urlencode(),
    }
    return render(request, "monitoring/alerts/list.html", context, status=400 if errors else 200)


@alert_viewer_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Render one alert: its figures, scope, rule, runbook, history and notifications."""
    alert = _alert_for_page(alert_id)
    if alert is None:
        return render(
            request,
            "monitoring/alerts/not_found.html",
            {"message": f"Alert #{alert_id} does not exist."},
            status=404,
        )
    return render(request, "monitoring/alerts/detail.html", _detail_context(request, alert))


# --- Actions ---------------------------------------------------------------------------------


@require_POST
@htmx_login_required
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        lambda: services.alert_acknowledge(
            alert_id=alert_id, user=request.user, note=request.POST.get("note", "")
        ),
        "Acknowledged.",
    )


@require_POST
@htmx_login_required
def alert_silence(request: HttpRequest, alert_id: int) -> HttpResponse:
    hours = request.POST.get("hours", "")
    if not (hours.isascii() and hours.isdigit()) or int(hours) not in SILENCE_HOURS:
        return _flash(
            request,
            400,
            f"Invalid silence {hours!r}; choose 1, 4 or 24 hours.",
            code="invalid",
        )
    until = timezone.now() + timedelta(hours=int(hours))
    return _act(
        request,
        alert_id,
        lambda: services.alert_silence(
            alert_id=alert_id, user=request.user, until=until, note=request.POST.get("note", "")
        ),
        f"Silenced for {hours} hour{'s' if hours != '1' else ''}.",
    )


@require_POST
@htmx_login_required
def alert_unsilence(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        lambda: services.alert_unsilence(alert_id=alert_id, user=request.user),
        "Silence lifted.",
    )


@require_POST
@htmx_login_required
def alert_remediate(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        lambda: services.alert_remediate(alert_id=alert_id, user=request.user),
        "Remediation done.",
    )


def _act(
    request: HttpRequest, alert_id: int, action: Callable[[], Alert], done: str
) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        return _flash(request, 403, "You have no access to alerts.", code="forbidden")
    try:
        action()
    except services.AlertError as error:
        return _flash(request, error.status, error.message, code=error.code)

    if not request.htmx:
        return redirect("alerts:detail", alert_id=alert_id)
    alert = _alert_for_page(alert_id)
    context = _detail_context(request, alert) | {"flash": done}
    return render(request, "monitoring/alerts/_main.html", context)


def _flash(request: HttpRequest, status: int, message: str, code: str = "") -> HttpResponse:
    return render(
        request,
        "monitoring/alerts/_flash.html",
        {"message": message, "code": code, "level": "error"},
        status=status,
    )


# --- Reading ---------------------------------------------------------------------------------


def _filters_parse(params: QueryDict) -> tuple[dict, list[str]]:
    """Return the valid filters and a message per invalid one."""
    filters: dict = {}
    errors = []
    state = params.get("status", "")
    if state:
        if state in STATES:
            filters["status"] = state
        else:
            errors.append(f"status {state!r} is not one of {', '.join(STATES)}")
    severity = params.get("severity", "")
    if severity:
        if severity in Severity.values:
            filters["severity"] = severity
        else:
            errors.append(f"severity {severity!r} is not one of {', '.join(Severity.values)}")
    if params.get("owner"):
        filters["owner"] = params["owner"][:150]
    rule = params.get("rule", "")
    if rule:
        if rule.isascii() and rule.isdigit() and len(rule) <= 18:
            filters["rule"] = int(rule)
        else:
            errors.append(f"rule {rule[:30]!r} is not a rule id")
    return filters, errors


def _alerts_filtered(filters: dict, *, now) -> QuerySet[Alert]:
    alerts = Alert.objects.select_related("rule", "acknowledged_by")
    silenced = Q(silenced_until__gt=now)
    state = filters.get("status")
    if state == "resolved":
        alerts = alerts.filter(status=AlertStatus.RESOLVED)
    elif state == "silenced":
        alerts = alerts.filter(silenced, status=AlertStatus.OPEN)
    elif state == "acknowledged":
        alerts = alerts.filter(status=AlertStatus.OPEN, acknowledged_at__isnull=False).exclude(
            silenced
        )
    elif state == "open":
        alerts = alerts.filter(status=AlertStatus.OPEN, acknowledged_at__isnull=True).exclude(
            silenced
        )
    if "severity" in filters:
        alerts = alerts.filter(severity=filters["severity"])
    if "owner" in filters:
        alerts = alerts.filter(owner_group=filters["owner"])
    if "rule" in filters:
        alerts = alerts.filter(rule_id=filters["rule"])

    # Severity ranks only the open alerts; resolved ones follow, newest first.
    open_severity = Case(
        *[
            When(status=AlertStatus.OPEN, severity=severity, then=Value(rank))
            for severity, rank in SEVERITY_RANK.items()
        ],
        default=Value(-1),
        output_field=IntegerField(),
    )
    return alerts.annotate(open_severity=open_severity).order_by(
        "-open_severity", "-created_at", "-id"
    )


def _owners() -> list[str]:
    return list(
        Alert.objects.order_by("owner_group").values_list("owner_group", flat=True).distinct()
    )


def _open_counts() -> dict[str, int]:
    counts = Alert.objects.filter(status=AlertStatus.OPEN).aggregate(
        total=Count("pk"),
        **{severity: Count("pk", filter=Q(severity=severity)) for severity in Severity.values},
    )
    return counts


def _alert_for_page(alert_id: int) -> Alert | None:
    return (
        Alert.objects.select_related("rule", "acknowledged_by", "silenced_by")
        .filter(pk=alert_id)
        .first()
    )


def _detail_context(request: HttpRequest, alert: Alert) -> dict:
    now = timezone.now()
    alert.state = _state(alert, now)
    is_open = alert.status == AlertStatus.OPEN
    may_change = services.alert_may_change(request.user) and is_open
    rule = alert.rule
    return {
        "alert": alert,
        "figures": _figures(alert),
        "steps": _runbook_steps(alert.runbook),
        "remediation": {
            "label": remediation_label(rule=rule, alert=alert),
            "target": remediation_target(rule=rule, alert=alert),
        }
        if rule is not None
        else None,
        "events": alert.events.select_related("actor").order_by("created_at", "id"),
        "notifications": alert.notifications.select_related("target").order_by("created_at", "id"),
        "may_change": may_change,
        "is_silenced": services.alert_is_silenced(alert, now=now),
        "silence_hours": SILENCE_HOURS,
        "rule_admin": request.user.has_perm("monitoring.view_alertrule") and request.user.is_staff,
    }


def _state(alert: Alert, now) -> str:
    if alert.status == AlertStatus.RESOLVED:
        return "resolved"
    if services.alert_is_silenced(alert, now=now):
        return "silenced"
    if alert.acknowledged_at is not None:
        return "acknowledged"
    return "open"


def _runbook_steps(runbook: str) -> list[str]:
    """Return the runbook's lines without their numbers; the template numbers them again."""
    steps = []
    for line in runbook.splitlines():
        line = line.strip()
        if not line:
            continue
        number, dot, rest = line.partition(".")
        steps.append(rest.strip() if dot and number.isdigit() else line)
    return steps


# The figures that explain an alert first; the rest follow in name order.
FIGURE_ORDER = (
    "value",
    "unit",
    "comparison",
    "threshold",
    "deviation_percent",
    "change_percent",
    "baseline",
    "shares",
    "baseline_shares",
    "events",
    "sample",
    "window_start",
    "window_end",
    "window_hours",
    "baseline_start",
    "baseline_days",
    "evaluated_at",
)


def _figures(alert: Alert) -> list[tuple[str, str]]:
    """Return the alert's figures as label and text pairs, with nested ones (shares) flattened.

    PostgreSQL's jsonb does not keep the keys in the order they were written, so they are
    sorted here.
    """
    rank = {key: index for index, key in enumerate(FIGURE_ORDER)}
    data = alert.data or {}
    rows = []
    for key in sorted(data, key=lambda key: (rank.get(key, len(rank)), key)):
        value = data[key]
        if key in ("scope", "rule", "kpi"):
            continue
        if isinstance(value, dict):
            text = ", ".join(f"{name} {share}" for name, share in sorted(value.items()))
        else:
            text = str(value)
        rows.append((key.replace("_", " "), text))
    return rows
