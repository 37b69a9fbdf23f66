from django.contrib import admin

from .models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Read-only: services raise and resolve alerts, so their history stays true."""

    list_display = ["title", "severity", "status", "owner_group", "occurrences", "created_at"]
    list_filter = ["status", "severity", "source", "owner_group"]
    search_fields = ["title", "dedup_key", "detail"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
