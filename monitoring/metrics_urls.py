from django.urls import path

from .metrics import metrics

app_name = "metrics"
urlpatterns = [path("metrics", metrics, name="metrics")]
