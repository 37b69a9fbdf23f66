"""The threshold calibration page: the reliability curve of an action, the threshold that meets
the target precision, and the button that stores it as a draft policy version.

Ops managers only (guardrails.add_policyversion). The chart is an inline SVG drawn here, so the
page needs no JavaScript.
"""

import logging
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from catalog.models import Channel

from .backtest import MAX_DAYS as BACKTEST_MAX_DAYS
from .backtest_admin import BACKTEST_PERMISSION, DEFAULT_DAYS
from .models import ActionType, PolicyVersion
from .threshold_calibration import (
    CREATE_PERMISSION,
    CalibrationError,
    Curve,
    calibration_draft_get_or_create,
    calibration_suggest,
)

logger = logging.getLogger(__name__)

TEMPLATE = "guardrails/calibration.html"


class CalibrationForm(forms.Form):
    """The action and channel to calibrate; an empty channel means all channels."""

    action = forms.ChoiceField(label="Action")
    channel = forms.ChoiceField(label="Channel", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [
            (code, f"{name} ({code})")
            for code, name in ActionType.objects.filter(is_active=True).values_list("code", "name")
        ]
        self.fields["channel"].choices = [("", "All channels")] + [
            (code, code)
            for code in Channel.objects.filter(is_active=True)
            .order_by("code")
            .values_list("code", flat=True)
        ]


@login_required
@permission_required(CREATE_PERMISSION, raise_exception=True)
def calibration_page(request: HttpRequest) -> HttpResponse:
    """Show the curve and the suggestion for the action and channel in the query string."""
    form = CalibrationForm(request.GET or None)
    status = 200
    result = None
    if form.is_bound:
        if form.is_valid():
            result = calibration_suggest(
                action_code=form.cleaned_data["action"],
                channel_code=form.cleaned_data["channel"] or None,
            )
        else:
            status = 400
    return _page(
        request,
        form,
        result,
        status=status,
        draft=_draft_from(request.GET),
        draft_existed=request.GET.get("existing") == "1",
    )


@require_POST
@login_required
@permission_required(CREATE_PERMISSION, raise_exception=True)
def calibration_draft(request: HttpRequest) -> HttpResponse:
    """Store the suggestion as a draft version, then show the page with links to backtest it."""
    form = CalibrationForm(request.POST)
    if not form.is_valid():
        return _page(request, form, None, status=400)
    action_code = form.cleaned_data["action"]
    channel_code = form.cleaned_data["channel"] or None

    try:
        draft, created = calibration_draft_get_or_create(
            action_code=action_code, channel_code=channel_code, user=request.user
        )
    except CalibrationError as error:
        result = calibration_suggest(action_code=action_code, channel_code=channel_code)
        return _page(request, form, result, status=error.status, error=error.message)
    except ValidationError as error:
        # The live version no longer passes validation: show why instead of failing.
        logger.warning(
            "calibration draft failed validation",
            extra={"action": action_code, "channel": channel_code, "errors": error.messages},
        )
        result = calibration_suggest(action_code=action_code, channel_code=channel_code)
        return _page(request, form, result, status=409, error=" ".join(error.messages))

    params = {"action": action_code, "channel": channel_code or "", "draft": draft.pk}
    if not created:
        params["existing"] = "1"
    query = urlencode(params)
    return HttpResponseRedirect(f"{reverse('guardrails:calibration')}?{query}")


def _page(
    request: HttpRequest,
    form: CalibrationForm,
    result: dict | None,
    *,
    status: int,
    draft: PolicyVersion | None = None,
    draft_existed: bool = False,
    error: str = "",
) -> HttpResponse:
    chart = None
    if result is not None:
        chart = reliability_chart_svg(
            result["curve"],
            current=result["current_threshold"],
            suggested=result["suggestion"].threshold,
        )
    context = {
        "form": form,
        "result": result,
        "chart": chart,
        "draft": draft,
        "draft_existed": draft_existed,
        "error": error,
        "may_backtest": request.user.is_staff and request.user.has_perm(BACKTEST_PERMISSION),
        "backtest_days": DEFAULT_DAYS,
        "backtest_max_days": BACKTEST_MAX_DAYS,
    }
    return render(request, TEMPLATE, context, status=status)


def _draft_from(params) -> PolicyVersion | None:
    """Return the draft named in the query string after a POST created it, else None."""
    value = params.get("draft", "")
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return (
        PolicyVersion.objects.select_related("policy__action", "policy__channel")
        .filter(pk=int(value), published_at__isnull=True)
        .first()
    )


# --- The chart -----------------------------------------------------------------------------

WIDTH = 360
HEIGHT = 260
MARGIN_LEFT = 58
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 34
AXIS_TICKS = (Decimal("0"), Decimal("0.25"), Decimal("0.5"), Decimal("0.75"), Decimal("1"))
COLOUR_AXIS = "#c8c8c8"
COLOUR_DIAGONAL = "#8a8a8a"
COLOUR_CURVE = "#1f5fa8"
COLOUR_CURRENT = "#b35900"
COLOUR_SUGGESTED = "#2e7d32"


def reliability_chart_svg(
    curve: Curve, *, current: Decimal | None, suggested: Decimal | None
) -> SafeString:
    """Draw the observed acceptance rate against mean confidence per bin, with the diagonal.

    Empty bins are left out. A point's area grows with its bin's count. Vertical lines mark
    the current threshold (dashed) and the suggested one (solid) when they are set.
    """
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM

    def x(value: Decimal) -> str:
        return _n(left + float(value) * (right - left))

    def y(value: Decimal) -> str:
        return _n(bottom - float(value) * (bottom - top))

    filled = [row for row in curve.bins if row.count]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart reliability" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(_chart_summary(curve, current, suggested))}">'
    ]
    parts += _chart_axes(x, y, left, right, top, bottom)
    parts.append(
        f'<line x1="{x(Decimal(0))}" y1="{y(Decimal(0))}" x2="{x(Decimal(1))}" '
        f'y2="{y(Decimal(1))}" stroke="{COLOUR_DIAGONAL}" stroke-dasharray="3 3">'
        "<title>Perfect calibration: acceptance rate equals confidence</title></line>"
    )
    for value, label, colour, dash in (
        (current, "Current threshold", COLOUR_CURRENT, ' stroke-dasharray="6 4"'),
        (suggested, "Suggested threshold", COLOUR_SUGGESTED, ""),
    ):
        if value is not None:
            parts.append(
                f'<line x1="{x(value)}" y1="{_n(top)}" x2="{x(value)}" y2="{_n(bottom)}" '
                f'stroke="{colour}" stroke-width="2"{dash}>'
                f"<title>{escape(f'{label}: {value}')}</title></line>"
            )
    if len(filled) > 1:
        steps = " ".join(f"{x(row.mean_confidence)},{y(row.acceptance_rate)}" for row in filled)
        parts.append(f'<polyline points="{steps}" fill="none" stroke="{COLOUR_CURVE}"/>')
    biggest = max((row.count for row in filled), default=1)
    for row in filled:
        radius = 2.5 + 4 * (row.count / biggest) ** 0.5
        hover = (
            f"{row.lower} to {row.upper}: {row.accepted} of {row.count} accepted "
            f"({row.acceptance_rate}), mean confidence {row.mean_confidence}"
        )
        parts.append(
            f'<circle cx="{x(row.mean_confidence)}" cy="{y(row.acceptance_rate)}" '
            f'r="{_n(radius)}" fill="{COLOUR_CURVE}"><title>{escape(hover)}</title></circle>'
        )
    if not filled:
        parts.append(
            f'<text x="{_n((left + right) / 2)}" y="{_n((top + bottom) / 2)}" '
            'text-anchor="middle">No reviewed decisions</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


def _chart_axes(x, y, left: float, right: float, top: float, bottom: float) -> list[str]:
    parts = [f'<g font-size="10" fill="#555" stroke="{COLOUR_AXIS}">']
    for tick in AXIS_TICKS:
        parts.append(
            f'<line x1="{_n(left)}" y1="{y(tick)}" x2="{_n(right)}" y2="{y(tick)}"/>'
            f'<text x="{_n(left - 5)}" y="{y(tick)}" dy="0.32em" text-anchor="end" '
            f'stroke="none">{tick * 100:.0f} %</text>'
            f'<text x="{x(tick)}" y="{_n(bottom + 13)}" text-anchor="middle" '
            f'stroke="none">{tick}</text>'
        )
    parts.append(
        f'<text x="{_n((left + right) / 2)}" y="{_n(bottom + 28)}" text-anchor="middle" '
        'stroke="none">Confidence</text>'
        f'<text transform="rotate(-90)" x="{_n(-(top + bottom) / 2)}" y="12" '
        'text-anchor="middle" stroke="none">Accepted</text></g>'
    )
    return parts


def _chart_summary(curve: Curve, current: Decimal | None, suggested: Decimal | None) -> str:
    """Describe the chart in words for screen readers."""
    text = (
        f"Reliability of {curve.action_code}: {curve.accepted} of {curve.reviewed} reviewed "
        f"decisions accepted in {sum(1 for row in curve.bins if row.count)} confidence bins"
    )
    text += f"; current threshold {current}" if current is not None else "; no current threshold"
    text += f"; suggested threshold {suggested}" if suggested is not None else ""
    return text + "."


def _n(number: float | str) -> str:
    """Format a coordinate with at most one decimal, so the markup stays short and stable."""
    text = f"{float(number):.1f}"
    return text[:-2] if text.endswith(".0") else text
