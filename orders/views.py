from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from . import selectors


@login_required
@permission_required("orders.view_order", raise_exception=True)
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    order = selectors.order_get_with_history(order_id=order_id)
    if order is None:
        raise Http404("No such order.")
    raw_body = bytes(order.delivery.body).decode("utf-8", errors="replace")
    return render(request, "orders/order_detail.html", {"order": order, "raw_body": raw_body})
