"""The audit log: every automated or human decision, with who, when, why and before/after."""

from django.conf import settings
from django.db import models

from orders.models import ActorKind


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Audit entries are append-only and cannot be updated.")

    def delete(self):
        raise TypeError("Audit entries are append-only and cannot be deleted.")


class AuditEntry(models.Model):
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    actor_label = models.CharField(
        max_length=200, help_text="User name, or the system component that acted."
    )
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=100)
    reason = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args, **kwargs) -> None:
        # NOTE: this only stops the application's own code. A database-level guard (a trigger
        # or revoked UPDATE/DELETE grants) is still missing.
        if self.pk is not None:
            raise TypeError("Audit entries are append-only and cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Audit entries are append-only and cannot be deleted.")
