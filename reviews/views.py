"""The review queue pages and their one-click HTMX decisions, revisions and claims.

Pages: the landing page (a card per queue kind, the disagreement rates, the user's claims and
the open items), a list per kind, and one item's page with its context. Decisions return
the decided item's fragment plus out-of-band updates of the open counts and, on the item
page, of its status line. Errors (400, 403, 404, 409) return with a one-line fragment that
the page's htmx config swaps into `#flash`. A 409 sent from the item page also carries the
item's current status line and card out of band, because the item or its order changed since
the page loaded.
"""

import logging
from collections.abc import Callable, Iterable
from functools import wraps
from urllib.parse import urlsplit

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from guardrails.disagreement import disagreement_rates

from . import selectors, services
from .forms import revise_form_for
from .models import ReviewItem, ReviewKind

logger = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 25
# Ids an accept may carry, passed on to the kind's accept handler, with their error labels.
ACCEPT_ID_CHOICES = {"sku_id": "SKU id", "service_id": "carrier service id"}
# The path segment of the list that shows every kind.
ALL_KINDS = "all"
NOTE_MAX_LENGTH = 2000
# Revision fields of review_item_revise's errors that the revise form names differently.
REVISION_FORM_FIELDS = {"sku_id": "sku"}


def htmx_login_required(view: Callable) -> Callable:
    """Like login_required, but tells htmx to load the login page instead of swapping it in."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated and request.htmx:
            from django.contrib.auth.views import redirect_to_login

            # Come back to the page the request came from, never to the POST-only endpoint.
            next_url = request.htmx.current_url_abs_path or reverse("reviews:queue")
            login_url = redirect_to_login(next_url).url
            return HttpResponseClientRedirect(login_url)
        return login_required(view)(request, *args, **kwargs)

    return wrapper


def queue_viewer_required(view: Callable) -> Callable:
    """Login, then the queue's view permission; without it the page explains who to ask."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm("reviews.view_reviewitem"):
            return render(request, "reviews/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


# --- Pages ------------------------------------------------------------------------------------


@queue_viewer_required
def queue(request: HttpRequest) -> HttpResponse:
    """Render the landing page: a card per queue, disagreement rates, claims and open items."""
    kind = request.GET.get("kind") or None
    if kind not in ReviewKind.values:
        kind = None
    summary = selectors.review_queue_summary_cached()
    context = _list_context(request, kind=kind, params=request.GET, summary=summary)

    _, claimed = selectors.review_queue_items(params=QueryDict("assignee=me"), user=request.user)
    # The claims list shows only the item and its order, and planning the queue's eight joins
    # took longer than running the query.
    claimed = claimed.select_related(None).select_related("order")
    context |= {
        "disagreement": disagreement_rates(),
        "claimed": list(claimed[:QUEUE_PAGE_SIZE]),
        "is_landing": True,
    }
    return render(request, "reviews/queue.html", context)


@queue_viewer_required
def queue_kind(request: HttpRequest, kind: str) -> HttpResponse:
    """Render the open items of one queue (`all` for every queue) with filters and pages."""
    if kind != ALL_KINDS and kind not in ReviewKind.values:
        return render(
            request,
            "reviews/not_found.html",
            {"message": f"There is no review queue {kind!r}."},
            status=404,
        )

    params = request.GET.copy()
    if kind != ALL_KINDS:
        params["kind"] = kind
    selected = kind if kind != ALL_KINDS else None
    summary = selectors.review_queue_summary_cached()
    context = _list_context(request, kind=selected, params=params, summary=summary)
    context |= {
        "kind_label": ReviewKind(selected).label if selected else "All queues",
    }
    return render(request, "reviews/queue_list.html", context)


@queue_viewer_required
def item_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    """Render one item with its diff, why it is here, the lines with stock and its events."""
    item = selectors.review_item_for_page(item_id=item_id)
    if item is None:
        return render(
            request,
            "reviews/not_found.html",
            {"message": f"Review item #{item_id} does not exist."},
            status=404,
        )

    item_context = selectors.review_item_context(item=item)
    _rows_prepare([item], request.user)
    summary = selectors.review_queue_summary_cached()
    return render(
        request,
        "reviews/item.html",
        {
            "item": item,
            "ctx": item_context,
            "summary": summary,
            "open_count": summary.open,
            "may_decide": item.may_decide,
        },
    )


def _list_context(
    request: HttpRequest, *, kind: str | None, params: QueryDict, summary: selectors.QueueSummary
) -> dict:
    """Build the filter form, the page of open items and the counts of the list pages."""
    filterset, items = selectors.review_queue_items(params=params, user=request.user)
    if kind is not None:
        # An invalid filter returns the whole queue, but a kind's page never shows other kinds.
        items = items.filter(kind=kind)
    page = selectors.review_queue_page(
        items,
        number=request.GET.get("page"),
        per_page=QUEUE_PAGE_SIZE,
        count=_summary_count(filterset, summary, kind),
    )
    _rows_prepare(page.object_list, request.user)

    # The pager's links keep the filters, and the kind when the path does not carry it.
    link_params = request.GET.copy()
    link_params.pop("page", None)
    return {
        "page": page,
        "filterset": filterset,
        "filter_errors": filterset.form.errors if filterset.is_bound else {},
        "summary": summary,
        "matching_count": page.paginator.count,
        "open_count": summary.open,
        "kind": kind,
        "kinds": ReviewKind.choices,
        "link_query": link_params.urlencode(),
        "may_decide": request.user.has_perm(services.DECIDE_PERMISSION),
    }


def _summary_count(filterset, summary: selectors.QueueSummary, kind: str | None) -> int | None:
    """Return the list's item count from the summary when only the kind narrows it, else None.

    This saves a COUNT over every open item on the unfiltered pages. An invalid filter falls
    back to the whole queue (of the page's kind), so the summary counts it too.
    """
    if filterset.is_valid():
        cleaned = filterset.form.cleaned_data
        narrowing = [name for name in cleaned if name not in ("kind", "sort")]
        if any(cleaned[name] not in (None, "") for name in narrowing):
            return None
        kind = cleaned.get("kind") or kind
    if kind is None:
        return summary.open
    return summary.open_of(kind)


def _rows_prepare(items: Iterable[ReviewItem], user) -> None:
    """Attach what each row needs: the user's right to decide it, staleness, the revise form.

    The right to decide depends only on the user and the item's approver and escalation
    roles, so one check per pair of roles keeps the page's query count independent of its size.
    """
    may_decide_by_roles: dict[tuple[str, str], bool] = {}
    for item in items:
        roles = (item.approver_group, item.escalated_to)
        if roles not in may_decide_by_roles:
            may_decide_by_roles[roles] = services.review_item_may_decide(item, user)
        item.may_decide = item.is_open and may_decide_by_roles[roles]
        # Only an open item can be stale, because its own decision may have changed the order.
        item.stale = item.is_open and selectors.review_item_is_stale(item)
        item.may_approve = item.may_decide and not item.stale
        item.revise_form = revise_form_for(item) if item.may_approve else None


# --- Decisions ---------------------------------------------------------------------------


@require_POST
@htmx_login_required
def item_accept(request: HttpRequest, item_id: int) -> HttpResponse:
    if error := _note_too_long(request):
        return error
    choice = {}
    for name, label in ACCEPT_ID_CHOICES.items():
        value = request.POST.get(name) or None
        if value is None:
            continue
        # Ids beyond 18 digits would overflow PostgreSQL's bigint and fail the query.
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            return _flash(request, 400, f"Invalid {label} {value!r}.")
        choice[name] = int(value)
    return _decide(
        request,
        item_id,
        lambda: services.review_item_accept(
            item_id=item_id,
            user=request.user,
            **choice,
            note=_note(request),
        ),
    )


@require_POST
@htmx_login_required
def item_reject(request: HttpRequest, item_id: int) -> HttpResponse:
    if error := _note_too_long(request):
        return error
    return _decide(
        request,
        item_id,
        lambda: services.review_item_reject(
            item_id=item_id, user=request.user, note=_note(request)
        ),
    )


@require_POST
@htmx_login_required
def item_revise(request: HttpRequest, item_id: int) -> HttpResponse:
    """Accept the item with the reviewer's corrected value, stored beside the AI's proposal.

    An invalid form comes back in place of the form, with the field errors and a flash line.
    """
    item = selectors.review_item_for_page(item_id=item_id)
    if item is None:
        return _flash(request, 404, f"Review item #{item_id} does not exist.", code="not_found")
    # The role check comes before the form, so a refused user never sees field errors.
    try:
        services.review_item_check_may_decide(item, request.user)
    except services.ReviewError as error:
        return _review_error(request, item_id, error)
    if error := _note_too_long(request):
        return error
    form = revise_form_for(item, data=request.POST)
    if form is None:
        return _flash(
            request,
            400,
            f"Items of kind {item.get_kind_display()} cannot be revised; accept or reject it.",
            code="not_revisable",
        )
    if not form.is_valid():
        return _revise_form_invalid(request, item, form)

    try:
        revised = services.review_item_revise(
            item_id=item_id, user=request.user, revision=form.revision(), note=_note(request)
        )
    except services.ReviewError as error:
        if error.code != "invalid_revision":
            return _review_error(request, item_id, error)
        # The service checks the value against the order, so its error belongs on the form.
        field = REVISION_FORM_FIELDS.get(error.field, error.field)
        form.add_error(field if field in form.fields else None, error.message)
        return _revise_form_invalid(request, item, form)
    return _decided(request, revised)


def _revise_form_invalid(request: HttpRequest, item: ReviewItem, form) -> HttpResponse:
    item.revise_form = form
    response = render(
        request,
        "reviews/_revise_form_invalid.html",
        {"item": item, "form": form, "open": True},
        status=400,
    )
    # The page's htmx config swaps 400 responses into #flash, and these headers override it.
    response["HX-Retarget"] = f"#revise-{item.pk}"
    response["HX-Reswap"] = "outerHTML"
    return response


def _decide(request: HttpRequest, item_id: int, decide: Callable[[], ReviewItem]) -> HttpResponse:
    try:
        item = decide()
    except services.ReviewError as error:
        return _review_error(request, item_id, error)
    return _decided(request, item)


def _review_error(request: HttpRequest, item_id: int, error: services.ReviewError) -> HttpResponse:
    """Log the failed request and render the error's flash line, plus the item on a 409.

    A 409 means that someone else decided or claimed the item, or that its order changed, so
    the status line and the card the item page loaded with are out of date. A 409 sent from
    the item page carries both out of band, rendered from the item as it is now. A decided
    item's card has no buttons left, a claimed one names who claimed it, and one whose order
    changed shows the stale-order note without the approve buttons.
    """
    _review_error_log(request, item_id, error)
    if error.status != 409 or not _sent_from_item_page(request, item_id):
        return _flash(request, error.status, error.message, code=error.code)
    item = selectors.review_item_for_page(item_id=item_id)
    if item is None:
        return _flash(request, error.status, error.message, code=error.code)
    _rows_prepare([item], request.user)
    return render(
        request,
        "reviews/_conflict.html",
        {
            "message": error.message,
            "code": error.code,
            "level": "error",
            "item": item,
            "ctx": {"stale": item.stale},
        },
        status=error.status,
    )


def _review_error_log(request: HttpRequest, item_id: int, error: services.ReviewError) -> None:
    """Log a failed decision or claim request with its ids and error code, never its message.

    The message names other users, so it stays out of the log. A 409 is an expected outcome of
    two reviewers working the same queue, and a 404 of an old or edited link (INFO). A 400 or a
    403 means that the page offered something the user may not do or sent a value it should
    not have (WARNING).
    """
    level = logging.INFO if error.status in (404, 409) else logging.WARNING
    logger.log(
        level,
        "review request failed",
        extra={
            "review_item": item_id,
            "user": request.user.pk,
            "status": error.status,
            "code": error.code,
            "field": error.field,
        },
    )


def _decided(request: HttpRequest, item: ReviewItem) -> HttpResponse:
    """Render the decided item's fragment with out-of-band updates of the open counts."""
    also_resolved = ReviewItem.objects.filter(
        pk__in=(item.decision or {}).get("also_resolves", [])
    ).select_related("order")
    # Count afresh, so the reviewer's own decision is counted at once.
    summary = selectors.review_queue_summary_cached(fresh=True)
    return render(
        request,
        "reviews/_item_decided.html",
        {
            "item": item,
            "also_resolved": also_resolved,
            "open_count": summary.open,
            "summary": summary,
            # Only an htmx response carries the out-of-band count updates. The item page
            # includes the same fragment and would show them as loose numbers.
            "oob_counts": True,
            "on_item_page": _sent_from_item_page(request, item.pk),
        },
    )


def _sent_from_item_page(request: HttpRequest, item_id: int) -> bool:
    """Return whether htmx sent the decision from the item's page, whose status line changes too.

    A list page has no status line, and htmx logs an error for an out-of-band swap that finds
    no target, so only the item page gets one.
    """
    current_url = request.htmx.current_url or ""
    return urlsplit(current_url).path == reverse("reviews:item", args=[item_id])


# --- Claims ------------------------------------------------------------------------------


@require_POST
@htmx_login_required
def item_claim(request: HttpRequest, item_id: int) -> HttpResponse:
    return _claim_change(
        request, item_id, lambda: services.review_item_claim(item_id=item_id, user=request.user)
    )


@require_POST
@htmx_login_required
def item_release(request: HttpRequest, item_id: int) -> HttpResponse:
    return _claim_change(
        request,
        item_id,
        lambda: services.review_item_release(item_id=item_id, user=request.user),
    )


def _claim_change(
    request: HttpRequest, item_id: int, change: Callable[[], ReviewItem]
) -> HttpResponse:
    try:
        item = change()
    except services.ReviewError as error:
        return _review_error(request, item_id, error)
    item.may_decide = services.review_item_may_decide(item, request.user)
    return render(request, "reviews/_claim.html", {"item": item})


# --- Small fragments ---------------------------------------------------------------------


def _note(request: HttpRequest) -> str:
    return request.POST.get("note", "")


def _note_too_long(request: HttpRequest) -> HttpResponse | None:
    """Return a 400 flash when the decision note is over the limit, else None."""
    length = len(_note(request))
    if length <= NOTE_MAX_LENGTH:
        return None
    return _flash(
        request,
        400,
        f"The note is {length} characters long, but the maximum is {NOTE_MAX_LENGTH}. "
        "Shorten it and try again.",
        code="note_too_long",
    )


def _flash(request: HttpRequest, status: int, message: str, code: str = "") -> HttpResponse:
    """A small message fragment; the page's htmx config swaps 4xx fragments into #flash."""
    return render(
        request,
        "reviews/_flash.html",
        {"message": message, "code": code, "level": "error"},
        status=status,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF rejection: a small fragment for htmx requests, a full page otherwise."""
    if getattr(request, "htmx", False):
        return render(
            request,
            "reviews/_flash.html",
            {
                "message": (
                    "Your session's security token has expired. Reload the page and try again."
                ),
                "code": "csrf_failed",
                "level": "error",
                "reload": True,
            },
            status=403,
        )
    return render(request, "403_csrf.html", {"reason": reason}, status=403)
