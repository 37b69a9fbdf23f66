"""Pages for ops and CS managers: policy coverage and the decision simulator."""

import logging

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .coverage import CHANNEL_POLICY, policy_coverage
from .forms import SIMULATE_EXAMPLE, SimulateForm
from .simulate import scenario_facts, simulate

logger = logging.getLogger(__name__)

VIEW_POLICY = "guardrails.view_policy"


@login_required
@permission_required(VIEW_POLICY, raise_exception=True)
def coverage(request: HttpRequest) -> HttpResponse:
    missing_only = request.GET.get("missing") == "1"
    rows = policy_coverage(missing_only=missing_only)
    return render(
        request,
        "guardrails/coverage.html",
        {
            "rows": rows,
            "missing_only": missing_only,
            "explicit_count": sum(row.source == CHANNEL_POLICY for row in rows),
        },
    )


@login_required
@permission_required(VIEW_POLICY, raise_exception=True)
def simulate_page(request: HttpRequest) -> HttpResponse:
    # The form is read from the query string: a simulation changes nothing, so it is a GET.
    form = SimulateForm(request.GET or None, initial=SIMULATE_EXAMPLE)
    result = None
    status = 200
    if form.is_bound:
        if form.is_valid():
            scenario = form.scenario()
            result = simulate(
                action=scenario.action,
                channel=scenario.channel,
                facts=scenario_facts(scenario),
                version=form.cleaned_data["version"],
            )
        else:
            status = 400
    return render(
        request, "guardrails/simulate.html", {"form": form, "result": result}, status=status
    )
