"""The customer's address confirmation page: confirm the proposed address, or correct it.

No login: the signed token in the link is the credential. The POST forms carry Django's CSRF
token. Answers: 404 for a tampered or unknown link, 410 once it expired, 409 for a POST to a
link that was answered or settled already (a GET shows the same page with 200).
"""

import logging

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from omsguard.json_fields import bidi_controls_in

from . import confirmations
from .confirmations import (
    ConfirmationClosed,
    ConfirmationInvalid,
    ConfirmationNeedsCorrection,
    ConfirmationState,
)

logger = logging.getLogger(__name__)

TEMPLATES = "reviews/confirm"


class AddressCorrectionForm(forms.Form):
    """The fields a customer may correct, in Shopify's names."""

    name = forms.CharField(label="Full name", max_length=200)
    company = forms.CharField(label="Company (optional)", max_length=200, required=False)
    address1 = forms.CharField(label="Street and house number", max_length=300)
    address2 = forms.CharField(
        label="Apartment, suite, floor (optional)", max_length=300, required=False
    )
    city = forms.CharField(label="City", max_length=200)
    province_code = forms.CharField(
        label="State, province or region (optional)", max_length=100, required=False
    )
    zip = forms.CharField(label="Postcode", max_length=40, required=False)
    country_code = forms.RegexField(
        label="Country code (two letters, e.g. US)",
        regex=r"^[A-Za-z]{2}$",
        error_messages={"invalid": "Enter the two-letter country code, e.g. US or DE."},
    )

    def clean_country_code(self) -> str:
        return self.cleaned_data["country_code"].upper()

    def clean(self) -> dict:
        # An invisible control that reverses the text direction can make the address read
        # differently to the person who checks it, so the customer is asked to retype it.
        cleaned = super().clean()
        for name, value in list(cleaned.items()):
            controls = bidi_controls_in(value) if isinstance(value, str) else []
            if controls:
                self.add_error(
                    name,
                    "Contains invisible characters that change the text direction "
                    f"({', '.join(controls)}). Please type this field again without them.",
                )
        return cleaned

    @classmethod
    def initial_from(cls, address: dict) -> dict:
        initial = {name: address.get(name) or "" for name in cls.base_fields}
        if not initial["name"]:
            parts = (address.get("first_name"), address.get("last_name"))
            initial["name"] = " ".join(part for part in parts if part)
        return initial


@never_cache
@require_http_methods(["GET", "POST"])
def address_confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        confirmation = confirmations.address_confirmation_for_token(token)
    except ConfirmationInvalid:
        return render(request, f"{TEMPLATES}/invalid.html", status=404)

    state = confirmations.confirmation_state(confirmation)
    if state != ConfirmationState.OPEN:
        return _closed(request, confirmation, state)
    if request.method == "GET":
        form = AddressCorrectionForm(
            initial=AddressCorrectionForm.initial_from(confirmation.proposed_address)
        )
        return _page(request, confirmation, form, correcting=request.GET.get("correct") == "1")

    action = request.POST.get("action")
    if action == "confirm":
        return _confirm(request, token, confirmation)
    if action == "correct":
        return _correct(request, token, confirmation)
    form = AddressCorrectionForm(
        initial=AddressCorrectionForm.initial_from(confirmation.proposed_address)
    )
    return _page(request, confirmation, form, correcting=False, status=400)


def _confirm(request: HttpRequest, token: str, confirmation) -> HttpResponse:
    try:
        confirmations.address_confirmation_confirm(token=token)
    except ConfirmationInvalid:
        return render(request, f"{TEMPLATES}/invalid.html", status=404)
    except ConfirmationClosed as closed:
        return _closed(request, confirmation, closed.state)
    except ConfirmationNeedsCorrection:
        form = AddressCorrectionForm(
            initial=AddressCorrectionForm.initial_from(confirmation.proposed_address)
        )
        return _page(request, confirmation, form, correcting=True, status=400)
    return render(
        request,
        f"{TEMPLATES}/done.html",
        {
            "answer": "confirmed",
            "lines": confirmations.address_lines(confirmation.proposed_address),
        },
    )


def _correct(request: HttpRequest, token: str, confirmation) -> HttpResponse:
    form = AddressCorrectionForm(request.POST)
    if not form.is_valid():
        return _page(request, confirmation, form, correcting=True, status=400)
    try:
        outcome = confirmations.address_confirmation_correct(token=token, address=form.cleaned_data)
    except ConfirmationInvalid:
        return render(request, f"{TEMPLATES}/invalid.html", status=404)
    except ConfirmationClosed as closed:
        return _closed(request, confirmation, closed.state)
    return render(
        request,
        f"{TEMPLATES}/done.html",
        {
            "answer": "corrected",
            "applied": outcome.applied,
            "lines": confirmations.address_lines(outcome.confirmation.corrected_address),
        },
    )


def _page(
    request: HttpRequest, confirmation, form: AddressCorrectionForm, *, correcting: bool, status=200
) -> HttpResponse:
    item = confirmation.review_item
    proposed = confirmations.address_lines(confirmation.proposed_address)
    entered = confirmations.address_lines(confirmations.entered_address_for(item))
    proposal_valid = confirmations.proposal_is_valid(confirmation)
    context = {
        "proposal_valid": proposal_valid,
        "order_number": confirmation.order.order_number or confirmation.order_id,
        "proposed": proposed,
        "entered": entered if entered != proposed else [],
        "form": form,
        # An address that fails validation can only be corrected, not confirmed.
        "correcting": correcting or not proposal_valid,
        "expires_at": confirmation.expires_at,
    }
    return render(request, f"{TEMPLATES}/page.html", context, status=status)


def _closed(request: HttpRequest, confirmation, state: str) -> HttpResponse:
    if state == ConfirmationState.EXPIRED:
        return render(request, f"{TEMPLATES}/expired.html", status=410)
    status = 409 if request.method == "POST" else 200
    template = "answered.html" if state == ConfirmationState.ANSWERED else "settled.html"
    return render(
        request,
        f"{TEMPLATES}/{template}",
        {"order_number": confirmation.order.order_number or confirmation.order_id},
        status=status,
    )
