import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import selectors
from .history_export import (
    HistoryRangeError,
    history_csv_lines,
    history_json_chunks,
    history_range_parse,
)
from .masking import mask_personal_data, mask_text, may_view_pii
from .models import Order

logger = logging.getLogger(__name__)

EXPORT_PERMISSION = "orders.export_history"
REVERT_PERMISSION = "guardrails.revert_decision"


@login_required
@permission_required("orders.view_order", raise_exception=True)
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.order_get_with_history(order_id=order_id)
    if order is None:
        raise Http404("No such order.")
    raw_body = bytes(order.delivery.body).decode("utf-8", errors="replace")
    return render(request, "orders/order_detail.html", {"order": order, "raw_body": raw_body})


@login_required
@permission_required("orders.view_order", raise_exception=True)
def order_history(request: HttpRequest, order_id: int) -> HttpResponse:
    order = _order_or_404(order_id)
    mask = not may_view_pii(request.user)
    entries = selectors.order_history(order=order)
    rows = [_history_row(entry, mask=mask) for entry in entries]
    context = {
        "order": order,
        "rows": rows,
        "masked": mask,
        "may_revert": request.user.has_perm(REVERT_PERMISSION),
        "may_export": request.user.has_perm(EXPORT_PERMISSION),
    }
    return render(request, "orders/order_history.html", context)


@login_required
@permission_required(EXPORT_PERMISSION, raise_exception=True)
def order_history_json(request: HttpRequest, order_id: int) -> HttpResponse:
    order = _order_or_404(order_id)
    entries = selectors.order_history(order=order)
    chunks = history_json_chunks(
        entries, mask=not may_view_pii(request.user), header={"order": order.pk}
    )
    _log_export(request, order=order.pk, count=len(entries))
    return HttpResponse("".join(chunks), content_type="application/json")


@login_required
@permission_required(EXPORT_PERMISSION, raise_exception=True)
def order_history_csv(request: HttpRequest, order_id: int) -> HttpResponse:
    order = _order_or_404(order_id)
    entries = selectors.order_history(order=order)
    lines = history_csv_lines(entries, mask=not may_view_pii(request.user))
    response = HttpResponse("".join(lines), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-{order.pk}-history.csv"'
    _log_export(request, order=order.pk, count=len(entries))
    return response


@login_required
@permission_required(EXPORT_PERMISSION, raise_exception=True)
def order_history_export(request: HttpRequest) -> HttpResponse:
    """Stream the history of every order for a date range of at most 31 days."""
    try:
        export = history_range_parse(request.GET)
    except HistoryRangeError as error:
        return JsonResponse(error.errors, status=400)

    entries = selectors.order_history_between(start=export.start, end=export.end)
    mask = not may_view_pii(request.user)
    if export.format == "csv":
        body = history_csv_lines(entries, mask=mask)
        content_type = "text/csv; charset=utf-8"
    else:
        header = {"from": export.start.isoformat(), "to": export.end.isoformat()}
        body = history_json_chunks(entries, mask=mask, header=header)
        content_type = "application/json"
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    _log_export(request, start=export.start.isoformat(), end=export.end.isoformat())
    return response


@login_required
@require_POST
def order_history_revert(request: HttpRequest, order_id: int, decision_id: int) -> HttpResponse:
    """Revert an applied decision from the history page; the service checks the permission."""
    from guardrails.models import Decision
    from guardrails.services import DecisionError, decision_revert

    if not Decision.objects.filter(pk=decision_id, order_id=order_id).exists():
        raise Http404("No such decision on this order.")
    note = request.POST.get("note", "").strip() or "Reverted from the order history."
    try:
        decision_revert(decision_id=decision_id, user=request.user, note=note)
    except DecisionError as error:
        if error.status == 403:
            return HttpResponse(error.message, status=403)
        messages.error(request, f"Decision #{decision_id} was not reverted: {error.message}")
    else:
        messages.success(request, f"Decision #{decision_id} reverted.")
    return HttpResponseRedirect(reverse("orders:history", args=[order_id]))


def _order_or_404(order_id: int) -> Order:
    order = Order.objects.select_related("channel").filter(pk=order_id).first()
    if order is None:
        raise Http404("No such order.")
    return order


def _history_row(entry: selectors.HistoryEntry, *, mask: bool) -> dict:
    """The entry with its JSON fields masked when needed, for the template."""
    if not mask:
        return {"entry": entry, "summary": entry.summary, **_json_fields(entry)}
    masked = {name: mask_personal_data(value) for name, value in _json_fields(entry).items()}
    return {"entry": entry, "summary": mask_text(entry.summary), **masked}


def _json_fields(entry: selectors.HistoryEntry) -> dict:
    return {"before": entry.before, "after": entry.after, "facts": entry.facts, "data": entry.data}


def _log_export(request: HttpRequest, **extra) -> None:
    logger.info("order history exported", extra={"user": request.user.pk, **extra})
