"""The landing page: each role starts where its work is."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponsePermanentRedirect, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_safe


@login_required
def home(request: HttpRequest) -> HttpResponseRedirect:
    """Send people who may only watch the KPIs to the dashboard, everyone else to the queue."""
    user = request.user
    if user.has_perm("monitoring.view_dashboard") and not user.has_perm("reviews.view_reviewitem"):
        return HttpResponseRedirect(reverse("dashboard:index"))
    return HttpResponseRedirect(reverse("reviews:queue"))


@require_safe
def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Redirect to the icon, under its hashed name in production."""
    return HttpResponsePermanentRedirect(static("omsguard/favicon.svg"))
