from django.urls import path

from . import alert_views

app_name = "alerts"
urlpatterns = [
    path("", alert_views.alert_list, name="list"),
    path("<int:alert_id>/", alert_views.alert_detail, name="detail"),
    path("<int:alert_id>/acknowledge/", alert_views.alert_acknowledge, name="acknowledge"),
    path("<int:alert_id>/silence/", alert_views.alert_silence, name="silence"),
    path("<int:alert_id>/unsilence/", alert_views.alert_unsilence, name="unsilence"),
    path("<int:alert_id>/remediate/", alert_views.alert_remediate, name="remediate"),
]
