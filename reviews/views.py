"""The review queue page and its one-click HTMX decisions."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors, services
from .models import ReviewItem, ReviewKind

QUEUE_PAGE_SIZE = 25
# Ids an accept may carry, passed on to the kind's accept handler, with their error labels.
ACCEPT_ID_CHOICES = {"sku_id": "SKU id", "service_id": "carrier service id"}


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


@login_required
def queue(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("reviews.view_reviewitem"):
        return render(request, "reviews/forbidden.html", status=403)

    kind = request.GET.get("kind") or None
    if kind not in ReviewKind.values:
        kind = None
    items = selectors.review_queue_open(kind=kind)
    page = Paginator(items, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))

    return render(
        request,
        "reviews/queue.html",
        {
            "page": page,
            "open_count": page.paginator.count,
            "kind": kind,
            "kinds": ReviewKind.choices,
            "may_decide": request.user.has_perm(services.DECIDE_PERMISSION),
        },
    )


@require_POST
@htmx_login_required
def item_accept(request: HttpRequest, item_id: int) -> HttpResponse:
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
        lambda: services.review_item_accept(
            item_id=item_id,
            user=request.user,
            **choice,
            note=request.POST.get("note", "")[:2000],
        ),
    )


@require_POST
@htmx_login_required
def item_reject(request: HttpRequest, item_id: int) -> HttpResponse:
    return _decide(
        request,
        lambda: services.review_item_reject(
            item_id=item_id, user=request.user, note=request.POST.get("note", "")[:2000]
        ),
    )


def _decide(request: HttpRequest, decide: Callable[[], ReviewItem]) -> HttpResponse:
    try:
        item = decide()
    except services.ReviewError as error:
        return _flash(request, error.status, error.message, code=error.code)

    also_resolved = ReviewItem.objects.filter(
        pk__in=(item.decision or {}).get("also_resolves", [])
    ).select_related("order")
    return render(
        request,
        "reviews/_item_decided.html",
        {
            "item": item,
            "also_resolved": also_resolved,
            "open_count": selectors.review_open_count(),
        },
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
