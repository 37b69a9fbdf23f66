from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from monitoring.views import health
from omsguard.api_docs import ApiDocsView
from omsguard.api_errors import api_not_found
from omsguard.views import favicon, home

urlpatterns = [
    path("", home, name="home"),
    path("healthz", health, name="health"),
    # Browsers ask for /favicon.ico on pages without an icon link, such as the admin's.
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("webhooks/", include("orders.webhook_urls")),
    path("queue/", include("reviews.urls")),
    # Customers answer address confirmation emails here, without an account.
    path("confirm/", include("reviews.confirm_urls")),
    path("orders/", include("orders.urls")),
    path("catalog/", include("catalog.urls")),
    path("guardrails/", include("guardrails.urls")),
    path("dashboard/", include("monitoring.dashboard_urls")),
    path("alerts/", include("monitoring.alert_urls")),
    path("rollouts/", include("guardrails.rollout_urls")),
    path("labels/", include("reviews.label_urls")),
    path("feedback/", include("reviews.feedback_urls")),
    path("", include("monitoring.metrics_urls")),
    path("api/v1/", include("omsguard.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/", api_not_found),
]

if settings.OMSGUARD_BENCH_ENDPOINTS:
    from omsguard.bench_views import bench_insert_row, bench_store_body

    urlpatterns.append(path("bench/store-body/", bench_store_body, name="bench-store-body"))
    urlpatterns.append(path("bench/insert-row/", bench_insert_row, name="bench-insert-row"))
