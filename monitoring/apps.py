from django.apps import AppConfig
from django.conf import settings


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from .metrics import metrics_networks_parse
        from .webhook_guard import SETTING_NAME, notify_networks_parse

        # Fail at startup, naming the bad entry, rather than on the first scrape or alert.
        metrics_networks_parse(settings.OMSGUARD_METRICS_ALLOWED_NETWORKS)
        notify_networks_parse(getattr(settings, SETTING_NAME, ()))
