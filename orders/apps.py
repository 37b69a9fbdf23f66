from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        from omsguard.ratelimit import rate_limit_settings_check

        # Fail at start-up, naming the bad setting, rather than on the first webhook.
        rate_limit_settings_check()
