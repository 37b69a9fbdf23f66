from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GuardrailsConfig(AppConfig):
    name = "guardrails"

    def ready(self) -> None:
        from .config_cache import stamp_triggers_reinstall

        post_migrate.connect(
            stamp_triggers_reinstall, sender=self, dispatch_uid="guardrails.stamp_triggers"
        )
