from django.contrib import admin

from .models import ReviewItem


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "order", "created_at", "decided_by", "decided_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["order", "order__channel", "decided_by"]
    raw_id_fields = [
        "order",
        "order_line",
        "delivery",
        "decided_by",
        "assignee",
        "known_answer",
    ]
    show_full_result_count = False
    readonly_fields = [field.name for field in ReviewItem._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


from . import confirmation_admin, fix_admin, known_answer_admin, label_admin  # noqa: E402, F401
