"""Error labelling pages: the labels panels of review items and of an order's decisions.

The review item page and the order page each include a small slot that loads its panel with
htmx, so those pages run no extra queries. A panel lists the labels and, for users who may
label, a form of three taxonomy choices and a note. Posting the form returns the panel again:
with the new label, or with the form's errors in place. Without JavaScript the slot links to
the same panel as a page of its own, and the form posts back to it.

The JSONL export of labelled examples is downloaded from here too.
"""

import logging

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from guardrails.models import Decision
from guardrails.services import LABEL_PERMISSION
from orders.models import Order

from . import labels
from .export import ExportError, export_filters, labelled_examples_jsonl
from .models import LabelKind, LabelTerm, ReviewItem
from .views import htmx_login_required

logger = logging.getLogger(__name__)

VIEW_ITEM_PERMISSION = "reviews.view_reviewitem"
VIEW_DECISION_PERMISSION = "guardrails.view_decision"


class ErrorLabelForm(forms.Form):
    """Three choices from the taxonomy and a note; the service checks the terms again."""

    cause = forms.TypedChoiceField(coerce=int)
    impact = forms.TypedChoiceField(coerce=int)
    corrective_action = forms.TypedChoiceField(coerce=int, label="Corrective action")
    note = forms.CharField(
        required=False,
        max_length=labels.NOTE_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What went wrong, for the weekly review. Leave out customer details.",
    )

    def __init__(self, *args, choices: dict[str, list[LabelTerm]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The choices are fetched once per request, so more forms on a page run no more queries.
        for field, kind in labels.TERM_FIELDS.items():
            self.fields[field].choices = [("", "---------")] + [
                (term.pk, _term_choice_label(term)) for term in choices[kind]
            ]


def _term_choice_label(term: LabelTerm) -> str:
    if term.kind == LabelKind.IMPACT:
        return f"{term.name} (weight {term.weight})"
    return term.name


# --- Review items -------------------------------------------------------------------------


@require_GET
@htmx_login_required
def item_labels(request: HttpRequest, item_id: int) -> HttpResponse:
    """Render a review item's labels panel: a fragment for htmx, a page otherwise."""
    if not request.user.has_perm(VIEW_ITEM_PERMISSION):
        return _forbidden(request, "You do not have permission to see review items.")
    item = ReviewItem.objects.filter(pk=item_id).first()
    if item is None:
        return _not_found(request, f"Review item #{item_id} does not exist.")

    panel = _item_panel(request, item)
    if request.htmx:
        return render(request, "reviews/labels/_item_card.html", {"panel": panel})
    return render(request, "reviews/labels/item_page.html", {"item": item, "panel": panel})


@require_POST
@htmx_login_required
def item_label_add(request: HttpRequest, item_id: int) -> HttpResponse:
    """Add a label to a review item from the panel's form and return the panel again."""
    if not request.user.has_perm(VIEW_ITEM_PERMISSION):
        return _forbidden(request, "You do not have permission to see review items.")
    # Checked before the form is validated, so a user without the permission gets 403 for any
    # input.
    if not request.user.has_perm(labels.ADD_PERMISSION):
        return _forbidden(request, "You do not have permission to label review items.")
    item = ReviewItem.objects.filter(pk=item_id).first()
    if item is None:
        return _not_found(request, f"Review item #{item_id} does not exist.")

    choices = labels.label_term_choices()
    form = ErrorLabelForm(request.POST, choices=choices, prefix=f"item-{item.pk}")
    page_url = reverse("labels:item", args=[item.pk])
    return _label_add(
        request,
        form=form,
        add=lambda data: labels.error_label_add(user=request.user, review_item_id=item.pk, **data),
        panel=lambda form: _item_panel(request, item, form=form, choices=choices),
        page=lambda panel: render(
            request, "reviews/labels/item_page.html", {"item": item, "panel": panel}, status=400
        ),
        page_url=page_url,
    )


def _item_panel(
    request: HttpRequest,
    item: ReviewItem,
    *,
    form: ErrorLabelForm | None = None,
    choices: dict | None = None,
) -> dict:
    may_label = request.user.has_perm(labels.ADD_PERMISSION)
    if may_label and form is None:
        choices = choices or labels.label_term_choices()
        form = ErrorLabelForm(choices=choices, prefix=f"item-{item.pk}")
    return {
        "key": f"item-{item.pk}",
        "target": "review item",
        "labels": labels.error_labels_for_review_item(review_item_id=item.pk),
        "form": form if may_label else None,
        "post_url": reverse("labels:item_add", args=[item.pk]),
    }


# --- Decisions on the order page ------------------------------------------------------------


@require_GET
@htmx_login_required
def order_decisions(request: HttpRequest, order_id: int) -> HttpResponse:
    """Render an order's AI decisions, each with its labels and (if allowed) a label form."""
    if not request.user.has_perm(VIEW_DECISION_PERMISSION):
        if request.htmx:
            # The order page loads this for everyone who may see the order: show nothing.
            return HttpResponse("")
        return _forbidden(request, "You do not have permission to see decisions.")
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return _not_found(request, f"Order {order_id} does not exist.")

    decisions = list(
        Decision.objects.filter(order_id=order.pk)
        .select_related("action", "labelled_by")
        .order_by("-created_at", "-id")
    )
    by_decision = labels.error_labels_by_decision(decision_ids=[d.pk for d in decisions])
    may_label = request.user.has_perm(LABEL_PERMISSION)
    choices = labels.label_term_choices() if may_label and decisions else {}
    for decision in decisions:
        decision.labels_panel = _decision_panel(
            decision, labels_list=by_decision.get(decision.pk, []), choices=choices
        )

    context = {"order": order, "decisions": decisions}
    if request.htmx:
        return render(request, "reviews/labels/_order_decisions.html", context)
    return render(request, "reviews/labels/order_page.html", context)


@require_POST
@htmx_login_required
def decision_label_add(request: HttpRequest, decision_id: int) -> HttpResponse:
    """Add a label to a decision from its form, and return the decision's panel again."""
    if not request.user.has_perm(VIEW_DECISION_PERMISSION):
        return _forbidden(request, "You do not have permission to see decisions.")
    # Checked before the form is validated, so a user without the permission gets 403 for any
    # input.
    if not request.user.has_perm(LABEL_PERMISSION):
        return _forbidden(request, "You do not have permission to label decisions.")
    decision = Decision.objects.select_related("action").filter(pk=decision_id).first()
    if decision is None:
        return _not_found(request, f"Decision {decision_id} does not exist.")

    choices = labels.label_term_choices()
    form = ErrorLabelForm(request.POST, choices=choices, prefix=f"decision-{decision.pk}")

    def panel(form: ErrorLabelForm | None) -> dict:
        decision.refresh_from_db(fields=["outcome"])
        return _decision_panel(
            decision,
            labels_list=labels.error_labels_for_decision(decision_id=decision.pk),
            choices=choices if request.user.has_perm(LABEL_PERMISSION) else {},
            form=form,
        )

    def page(panel: dict) -> HttpResponse:
        decision.labels_panel = panel
        context = {"order": decision.order, "decisions": [decision]}
        return render(request, "reviews/labels/order_page.html", context, status=400)

    return _label_add(
        request,
        form=form,
        add=lambda data: labels.error_label_add(user=request.user, decision_id=decision.pk, **data),
        panel=panel,
        page=page,
        page_url=reverse("labels:order_decisions", args=[decision.order_id]),
    )


def _decision_panel(
    decision: Decision,
    *,
    labels_list: list,
    choices: dict,
    form: ErrorLabelForm | None = None,
) -> dict:
    # Empty choices mean the user may not label decisions.
    if choices and form is None:
        form = ErrorLabelForm(choices=choices, prefix=f"decision-{decision.pk}")
    return {
        "key": f"decision-{decision.pk}",
        "target": "decision",
        "decision": decision,
        "labels": labels_list,
        "form": form if choices else None,
        "post_url": reverse("labels:decision_add", args=[decision.pk]),
    }


# --- Posting a label ------------------------------------------------------------------------


def _label_add(request: HttpRequest, *, form, add, panel, page, page_url: str) -> HttpResponse:
    """Validate the form, add the label and respond with the panel (htmx) or a redirect."""
    if form.is_valid():
        try:
            data = form.cleaned_data
            add(
                {
                    "cause_id": data["cause"],
                    "impact_id": data["impact"],
                    "corrective_action_id": data["corrective_action"],
                    "note": data["note"],
                }
            )
        except labels.LabelForbidden as error:
            return _forbidden(request, error.message)
        except labels.LabelError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            if not request.htmx:
                return redirect(page_url)
            return render(
                request,
                "reviews/labels/_panel_saved.html",
                {"panel": panel(None), "message": "Error label saved."},
            )

    invalid_panel = panel(form)
    if not request.htmx:
        return page(invalid_panel)
    response = render(
        request, "reviews/labels/_panel_invalid.html", {"panel": invalid_panel}, status=400
    )
    # The page's htmx config swaps 400 responses into #flash, and these headers override it.
    response["HX-Retarget"] = f"#labels-{invalid_panel['key']}"
    response["HX-Reswap"] = "outerHTML"
    return response


# --- Export ---------------------------------------------------------------------------------


@require_GET
@login_required
def export_jsonl(request: HttpRequest) -> HttpResponse:
    """Stream the labelled examples as JSONL; `since`, `until` (YYYY-MM-DD) and `action` filter.

    `until` is inclusive: the whole day counts. Each filter takes one value.
    """
    if not request.user.has_perm(labels.EXPORT_PERMISSION):
        return HttpResponse(
            "You do not have permission to export labelled examples.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    try:
        since, until, action_code = export_filters(request.GET)
        lines = labelled_examples_jsonl(since=since, until=until, action_code=action_code)
    except ExportError as error:
        return HttpResponse(
            f"{error.field}: {error.message}\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )

    logger.info(
        "labelled examples exported",
        extra={
            "user": request.user.pk,
            "since": str(since),
            "until": str(until),
            "action": action_code or "",
        },
    )
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="labelled-examples.jsonl"'
    return response


# --- Error responses ----------------------------------------------------------------------------


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    if request.htmx:
        return _flash(request, 403, message, "forbidden")
    return render(request, "reviews/labels/message_page.html", {"message": message}, status=403)


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    if request.htmx:
        return _flash(request, 404, message, "not_found")
    return render(request, "reviews/labels/message_page.html", {"message": message}, status=404)


def _flash(request: HttpRequest, status: int, message: str, code: str) -> HttpResponse:
    return render(
        request,
        "reviews/_flash.html",
        {"message": message, "code": code, "level": "error"},
        status=status,
    )
