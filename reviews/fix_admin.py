"""Admin of the fixes backlog: a list with an overdue filter, and edits through reviews.fixes.

Adding and changing go through `fix_item_create` and `fix_item_update`, so each change is
checked the same way as on the backlog page and leaves an audit entry. Linking labels to
a fix happens on the weekly review page; here the labels are only shown.
"""

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from . import fixes
from .feedback import OPEN_FIX_STATUSES
from .models import FixItem, LabelKind, LabelTerm

# Fields the change form edits; the rest of a fix is fixed once it is created.
CHANGE_FIELDS = ["status", "owner", "due_on", "fixed_by_version", "resolution"]
ADD_FIELDS = [
    "title",
    "description",
    "action",
    "model_name",
    "model_version",
    "cause",
    "owner",
    "due_on",
]
LABELS_SHOWN = 20


class FixItemForm(forms.ModelForm):
    """Check owner, due date and resolution the way the fix services do, as form errors."""

    class Meta:
        model = FixItem
        fields = [*ADD_FIELDS, *CHANGE_FIELDS]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "owner" in self.fields:
            # The current owner stays selectable even after losing the role.
            owner_ids = [user.pk for user in fixes.owner_choices()] + [self.instance.owner_id]
            self.fields["owner"].queryset = self.fields["owner"].queryset.filter(pk__in=owner_ids)
            self.fields[
                "owner"
            ].help_text = "An ops or CS manager. An owner can be replaced but not removed."
        if "cause" in self.fields:
            self.fields["cause"].queryset = LabelTerm.objects.filter(kind=LabelKind.CAUSE)
        if "due_on" in self.fields and self.instance.pk is None:
            self.fields["due_on"].required = False
            self.fields["due_on"].help_text = "Empty: the fix due days from today."
        if "fixed_by_version" in self.fields:
            self.fields["fixed_by_version"].help_text = (
                "Also recorded on every label of the fix. Empty it to remove the version from "
                "the fix and its labels."
            )

    def clean(self) -> dict:
        data = super().clean()
        due_on = data.get("due_on")
        if due_on and (self.instance.pk is None or due_on != self.instance.due_on):
            self._check("due_on", fixes.check_due_on, due_on)
        owner = data.get("owner")
        if owner is not None and owner.pk != self.instance.owner_id:
            self._check("owner", fixes.owner_resolve, owner)
        if "status" in data and data["status"] != self.instance.status:
            self._check(
                "resolution",
                lambda: fixes.check_resolution(
                    status=data["status"], resolution=data.get("resolution") or ""
                ),
            )
        return data

    def _check(self, field: str, check, *args) -> None:
        try:
            check(*args)
        except fixes.FixError as error:
            self.add_error(error.field or field, error.message)


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Overdue"), ("no", "Not overdue")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        overdue = Q(status__in=OPEN_FIX_STATUSES, due_on__lt=timezone.localdate())
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


@admin.register(FixItem)
class FixItemAdmin(admin.ModelAdmin):
    form = FixItemForm
    list_display = ["title", "status", "priority", "owner", "due_on", "is_overdue", "label_count"]
    list_filter = ["status", OverdueFilter, "owner"]
    list_select_related = ["owner"]
    search_fields = ["title", "model_name", "model_version"]
    ordering = ["-priority", "due_on", "id"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(label_total=Count("labels"))

    def get_fields(self, request: HttpRequest, obj: FixItem | None = None) -> list[str]:
        if obj is None:
            return ADD_FIELDS
        return [*self.get_readonly_fields(request, obj), *CHANGE_FIELDS]

    def get_readonly_fields(self, request: HttpRequest, obj: FixItem | None = None) -> list[str]:
        if obj is None:
            return []
        return [
            *ADD_FIELDS[:6],
            "priority",
            "labels",
            "created_by",
            "created_at",
            "done_at",
        ]

    def has_delete_permission(self, request: HttpRequest, obj: FixItem | None = None) -> bool:
        # Labels and the audit log refer to fixes; close one as won't fix instead.
        return False

    @admin.display(boolean=True, description="Overdue")
    def is_overdue(self, obj: FixItem) -> bool:
        return obj.status in OPEN_FIX_STATUSES and obj.due_on < timezone.localdate()

    @admin.display(description="Labels", ordering="label_total")
    def label_count(self, obj: FixItem) -> int:
        return obj.label_total

    @admin.display(description="Labels")
    def labels(self, obj: FixItem) -> str:
        ids = list(obj.labels.order_by("pk").values_list("pk", flat=True)[: LABELS_SHOWN + 1])
        if not ids:
            return "None"
        text = ", ".join(f"#{label_id}" for label_id in ids[:LABELS_SHOWN])
        return text + (" and more" if len(ids) > LABELS_SHOWN else "")

    def save_model(self, request: HttpRequest, obj: FixItem, form, change: bool) -> None:
        data = form.cleaned_data
        if change:
            version = data.get("fixed_by_version")
            fix = fixes.fix_item_update(
                fix_id=obj.pk,
                user=request.user,
                status=data["status"],
                owner=data.get("owner"),
                due_on=data.get("due_on"),
                resolution=data.get("resolution") or "",
                fixed_by_version_id=version.pk if version else None,
                clear_fixed_by_version=version is None and "fixed_by_version" in form.changed_data,
            )
        else:
            fix = fixes.fix_item_create(
                user=request.user,
                title=data["title"],
                description=data.get("description") or "",
                action=data.get("action"),
                model_name=data.get("model_name") or "",
                model_version=data.get("model_version") or "",
                cause=data.get("cause"),
                owner=data.get("owner"),
                due_on=data.get("due_on"),
            )
        # The service saved its own copy; the admin's messages and redirect need this one.
        obj.pk = fix.pk
        obj.refresh_from_db()
