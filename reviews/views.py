"""The review queue page and its one-click HTMX decisions."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import selectors, services
from .models import ReviewItem, ReviewKind

QUEUE_PAGE_SIZE = 25


def htmx_login_required(view: Callable) -> Callable:
    """Like login_required, but tells htmx to load the login page instead of swapping it in."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated and request.htmx:
            from django.contrib.auth.views import redirect_to_login

            login_url = redirect_to_login(request.htmx.current_url or request.path).url
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
    sku_id = request.POST.get("sku_id") or None
    if sku_id is not None and not sku_id.isdigit():
        return _flash(request, 400, f"Invalid SKU id {sku_id!r}.")
    return _decide(
        request,
        lambda: services.review_item_accept(
            item_id=item_id,
            user=request.user,
            **({"sku_id": int(sku_id)} if sku_id else {}),
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
