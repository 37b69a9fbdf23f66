"""The KPI dashboard and a KPI's drill-down, for ops managers, CS managers and leadership.

An invalid `days` or `channel` parameter falls back to the default (30 days, all channels)
with a notice on the page, never an error. An htmx request that targets the cards area
gets only that area back.
"""

from collections.abc import Callable
from functools import cached_property, wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET

from catalog.models import Channel
from omsguard.databases import reporting_database
from omsguard.db_cursors import statements_unprepared

from . import dashboard, drilldown
from .charts import value_format
from .kpis import COUNTERS, KPIS, Kpi
from .selectors import KpiValue, kpi_counters

DASHBOARD_PERMISSION = "monitoring.view_dashboard"
RECORDS_PAGE_SIZE = 25
# A records list counts at most this many records and pages through only those, because
# an exact count of a million shipments takes longer than the rest of the page.
RECORDS_COUNT_LIMIT = 10_000
# The element the period and channel controls swap, and the template that renders it.
BODY_TARGET = "dashboard-body"
DIMENSION_MAX_LENGTH = 100


def dashboard_viewer_required(view: Callable) -> Callable:
    """Require a login and the dashboard permission; a user without it gets a page naming
    whom to ask.

    The view runs its report queries unprepared (statements_unprepared explains why).
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            return render(request, "monitoring/dashboard/forbidden.html", status=403)
        with statements_unprepared(reporting_database()):
            return view(request, *args, **kwargs)

    return wrapper


@require_GET
@dashboard_viewer_required
def index(request: HttpRequest) -> HttpResponse:
    """Render every KPI's card in its group, and the 90-day goals against the baseline."""
    filters = _filters(request.GET)
    data = dashboard.dashboard_read(days=filters["days"], channel=filters["channel"])
    context = {**filters, "dashboard": data, "period_choices": dashboard.PERIOD_DAYS}

    if request.htmx and request.htmx.target == BODY_TARGET:
        return render(request, "monitoring/dashboard/_body.html", context)
    return render(request, "monitoring/dashboard/index.html", context)


@require_GET
@dashboard_viewer_required
def kpi_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Render one KPI: its definition, its split by channel and dimension, and its records."""
    kpi = KPIS.get(slug)
    if kpi is None:
        return render(
            request,
            "monitoring/dashboard/not_found.html",
            {"message": f"There is no KPI {slug!r}."},
            status=404,
        )

    filters = _filters(request.GET)
    dimension = request.GET.get("dimension", "").strip()
    if dimension and not kpi.dimension_label:
        filters["notices"].append("This KPI has no breakdown to filter by. Showing all records.")
        dimension = ""
    elif len(dimension) > DIMENSION_MAX_LENGTH:
        filters["notices"].append(
            f"The {kpi.dimension_label} filter is longer than {DIMENSION_MAX_LENGTH} characters. "
            "Showing all records."
        )
        dimension = ""
    breakdown = dashboard.kpi_breakdown(kpi, days=filters["days"], channel=filters["channel"])
    period = breakdown.period
    records = drilldown.drilldown_records(
        kpi,
        start=period.start,
        end=period.end,
        channel=filters["channel"],
        dimension=dimension or None,
        user=request.user,
        expected=breakdown.card.current.sample,
    )
    sections = [
        _section_page(section, request.GET, number)
        for number, section in enumerate(records.sections, start=1)
    ]
    if dimension and not any(section["page"].paginator.count for section in sections):
        # The filter stays, because the value may be valid and merely absent from the period.
        filters["notices"].append(
            f"No records with {kpi.dimension_label.lower()} {dimension[:40]!r} in this period."
        )

    link_params = QueryDict(mutable=True)
    link_params["days"] = str(filters["days"])
    if filters["channel"]:
        link_params["channel"] = filters["channel"]
    context = {
        **filters,
        "kpi": kpi,
        "formula": dashboard.kpi_formula(kpi),
        "counters": [COUNTERS[counter] for counter in sorted(kpi_counters(kpi.slug))],
        "breakdown": breakdown,
        "by_channel": _split_rows(kpi, breakdown.by_channel or [], key="code"),
        "by_dimension": _split_rows(kpi, breakdown.by_dimension, key="key"),
        "period": period,
        "records": records,
        "sections": sections,
        "dimension": dimension,
        "period_choices": dashboard.PERIOD_DAYS,
        "link_query": link_params.urlencode(),
    }
    return render(request, "monitoring/dashboard/kpi.html", context)


class CappedPaginator(Paginator):
    """A paginator over the first RECORDS_COUNT_LIMIT records only.

    The count query stops after one row more than that, so its cost does not grow with the
    period. Records past the limit are on no page, and the page shows that the list is
    longer.
    """

    @cached_property
    def counted(self) -> int:
        return self.object_list.order_by()[: RECORDS_COUNT_LIMIT + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self.counted, RECORDS_COUNT_LIMIT)

    @property
    def capped(self) -> bool:
        return self.counted > RECORDS_COUNT_LIMIT


def _filters(params: QueryDict) -> dict:
    """Read the requested period and channel, with defaults for invalid values and notices."""
    notices = []
    raw_days = params.get("days", "")
    days = dashboard.DEFAULT_PERIOD_DAYS
    if raw_days:
        if raw_days.isascii() and raw_days.isdigit() and int(raw_days) in dashboard.PERIOD_DAYS:
            days = int(raw_days)
        else:
            choices = ", ".join(str(choice) for choice in dashboard.PERIOD_DAYS)
            notices.append(f"Invalid period {raw_days!r}: use {choices} days. Showing {days} days.")

    channels = list(
        Channel.objects.using(reporting_database()).order_by("code").values_list("code", "name")
    )
    channel = params.get("channel", "") or None
    if channel is not None and channel not in {code for code, _name in channels}:
        notices.append(f"There is no channel {channel!r}. Showing all channels.")
        channel = None
    return {"days": days, "channel": channel, "channels": channels, "notices": notices}


def _split_rows(kpi: Kpi, values: list[tuple[str, KpiValue]], *, key: str) -> list[dict]:
    return [
        {key: name, "value": value_format(value.value, kpi.unit), "sample": value.sample}
        for name, value in values
    ]


def _section_page(section: drilldown.Section, params: QueryDict, number: int) -> dict:
    """Return one page of a section's records with the query strings of the pages around it.

    The first section pages with `page`, the others with `page2`, `page3`..., so each list
    keeps its place while another one moves.
    """
    page_param = "page" if number == 1 else f"page{number}"
    paginator = CappedPaginator(section.queryset, RECORDS_PAGE_SIZE)
    page = paginator.get_page(params.get(page_param))

    def query_for(page_number: int) -> str:
        link_params = params.copy()
        link_params[page_param] = str(page_number)
        return link_params.urlencode()

    return {
        "section": section,
        "page": page,
        "count_display": (
            f"more than {RECORDS_COUNT_LIMIT:,}" if paginator.capped else f"{paginator.count:,}"
        ),
        "rows": [section.row(record) for record in page.object_list],
        "previous_query": query_for(page.previous_page_number()) if page.has_previous() else "",
        "next_query": query_for(page.next_page_number()) if page.has_next() else "",
    }
