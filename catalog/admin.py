from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from orders.channel_holds import ChannelHoldError, channel_orders_hold, channel_orders_release

from .forms import SkuImportForm
from .models import (
    Channel,
    ChannelSkuMapping,
    ImportJob,
    ListingConstraint,
    Sku,
)
from .services import (
    MappingConflict,
    catalog_admin_change_record,
    import_job_create,
    mapping_save_and_resolve,
)
from .sku_import.reader import COLUMNS
from .views import IMPORT_PERMISSION


class ChannelForm(forms.ModelForm):
    # strip=False keeps the secret byte-exact: leading or trailing spaces are part of it.
    webhook_secret = forms.CharField(
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The channel's webhook signing secret. Leave blank to keep the current one.",
    )
    # Square signs the URL exactly as configured, so the scheme is never guessed.
    notification_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=Channel._meta.get_field("notification_url").help_text,
    )

    class Meta:
        model = Channel
        fields = ["kind", "code", "name", "webhook_secret", "notification_url", "is_active"]

    def clean_webhook_secret(self) -> str:
        secret = self.cleaned_data["webhook_secret"]
        if secret == "" and self.instance.pk:
            return self.instance.webhook_secret
        return secret


class AuditedAdminMixin:
    """Audit every admin create, update and delete (field names only, never values)."""

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        catalog_admin_change_record(
            instance=obj,
            actor=request.user,
            verb="updated" if change else "created",
            changed=form.changed_data,
        )

    def delete_model(self, request, obj) -> None:
        catalog_admin_change_record(instance=obj, actor=request.user, verb="deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            catalog_admin_change_record(instance=obj, actor=request.user, verb="deleted")
        super().delete_queryset(request, queryset)


# Changed only through the hold and release actions, which audit and release the orders.
ORDER_HOLD_FIELDS = ("orders_held", "orders_held_reason", "orders_held_at")
VIEW_ONLY_CHANNEL_FIELDS = (
    "kind",
    "code",
    "name",
    "secret_status",
    "notification_url",
    "last_signature_failure",
    "is_active",
    *ORDER_HOLD_FIELDS,
)


class ChannelActionForm(helpers.ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=300,
        label="Reason",
        help_text="Why the orders are held or released; shown on every held order.",
    )


@admin.register(Channel)
class ChannelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = ChannelForm
    action_form = ChannelActionForm
    list_display = ["code", "kind", "name", "is_active", "orders_held", "created_at"]
    list_filter = ["kind", "is_active", "orders_held"]
    search_fields = ["code", "name"]
    actions = ["hold_orders", "release_orders"]

    def get_fields(self, request, obj=None) -> list[str]:
        # A read-only view would print every field's value, the signing secret included, so
        # people who may not change the channel see only whether a secret is set.
        if obj is not None and not self.has_change_permission(request, obj):
            return [*VIEW_ONLY_CHANNEL_FIELDS]
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        if obj is not None and not self.has_change_permission(request, obj):
            return [*VIEW_ONLY_CHANNEL_FIELDS]
        return [
            *super().get_readonly_fields(request, obj),
            "last_signature_failure",
            *ORDER_HOLD_FIELDS,
        ]

    @admin.display(description="Webhook secret")
    def secret_status(self, obj: Channel) -> str:
        return "set (hidden)" if obj.webhook_secret else "not set"

    @admin.action(description="Hold new orders", permissions=["change"])
    def hold_orders(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        reason = request.POST.get("reason", "").strip()
        reason = reason or f"Held from the admin by {request.user.get_username()}"
        for channel in queryset.order_by("pk"):
            self._hold_change(request, channel_orders_hold, channel=channel, reason=reason)

    @admin.action(description="Release held orders", permissions=["change"])
    def release_orders(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        note = request.POST.get("reason", "").strip()
        note = note or f"Released from the admin by {request.user.get_username()}"
        for channel in queryset.order_by("pk"):
            self._hold_change(request, channel_orders_release, channel=channel, note=note)

    def _hold_change(self, request: HttpRequest, change, *, channel: Channel, **text) -> None:
        try:
            channel = change(channel=channel, user=request.user, **text)
        except ChannelHoldError as error:
            self.message_user(request, str(error), messages.WARNING)
            return
        if channel.orders_held:
            message = f"New and updated orders of {channel.code} are now held."
        else:
            message = (
                f"Released {channel.code}. Its orders held only for the channel are ready; "
                "orders with other hold reasons stay held for those."
            )
        self.message_user(request, message, messages.SUCCESS)


class ListingConstraintInline(admin.TabularInline):
    model = ListingConstraint
    extra = 0
    fields = ["channel", "kind", "note"]


@admin.register(Sku)
class SkuAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["code", "title", "category", "price", "currency", "is_active", "is_priority"]
    list_filter = ["is_active", "is_priority", "category", "currency"]
    search_fields = ["code", "title", "normalized_title"]
    readonly_fields = ["normalized_title", "created_at", "updated_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "code",
                    "title",
                    "normalized_title",
                    "category",
                    "is_active",
                    "is_priority",
                ]
            },
        ),
        ("Price", {"fields": ["price", "cost", "currency"]}),
        (
            "Variant and shipping",
            {"fields": ["attributes", "weight_grams", ("length_mm", "width_mm", "height_mm")]},
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ListingConstraintInline]
    change_list_template = "catalog/admin/sku_change_list.html"

    def save_formset(self, request, form, formset, change) -> None:
        # Deleting clears the primary key, so deletions are audited first.
        for deleted_form in formset.deleted_forms:
            if deleted_form.instance.pk is not None:
                catalog_admin_change_record(
                    instance=deleted_form.instance, actor=request.user, verb="deleted"
                )
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            catalog_admin_change_record(instance=obj, actor=request.user, verb="created")
        for obj, fields in formset.changed_objects:
            catalog_admin_change_record(
                instance=obj, actor=request.user, verb="updated", changed=fields
            )

    def get_urls(self):
        import_url = path(
            "import/", self.admin_site.admin_view(self.import_view), name="catalog_sku_import"
        )
        return [import_url, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {**(extra_context or {}), "may_import": _may_import(request)}
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Show the upload form, and turn a valid upload into a queued job shown on its own page."""
        if not _may_import(request):
            raise PermissionDenied

        if request.method == "POST":
            form = SkuImportForm(request.POST, request.FILES)
        else:
            form = SkuImportForm()
        if form.is_bound and form.is_valid():
            upload = form.cleaned_data["file"]
            job = import_job_create(
                file=upload,
                file_name=upload.name,
                created_by=request.user,
                default_channel=form.cleaned_data["channel"],
            )
            return redirect("catalog:import_job", job_id=job.pk)

        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import SKUs",
            "form": form,
            "columns": COLUMNS,
        }
        return TemplateResponse(request, "catalog/admin/sku_import.html", context)


def _may_import(request: HttpRequest) -> bool:
    return request.user.has_perm(IMPORT_PERMISSION)


@admin.register(ChannelSkuMapping)
class ChannelSkuMappingAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["channel", "id_kind", "external_id", "sku", "created_at"]
    list_filter = ["channel", "id_kind"]
    search_fields = ["external_id", "sku__code"]
    list_select_related = ["channel", "sku"]
    autocomplete_fields = ["sku"]

    def save_model(self, request, obj, form, change) -> None:
        # mapping_create, which this calls for new mappings, audits; so does a remap.
        saved = mapping_save_and_resolve(mapping=obj, actor=request.user, reason="admin")
        obj.pk = saved.pk

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The form reports taken identifiers (ChannelSkuMapping.validate_constraints), but not
        # one that someone maps a moment later. The service then raises MappingConflict, the
        # admin's transaction rolls back, and the form page is shown again with the conflict.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except MappingConflict as conflict:
            self.message_user(request, str(conflict), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(ListingConstraint)
class ListingConstraintAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["channel", "kind", "sku", "note", "created_at"]
    list_filter = ["channel", "kind"]
    search_fields = ["sku__code", "note"]
    list_select_related = ["channel", "sku"]
    autocomplete_fields = ["sku"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "file_name",
        "created_by",
        "status",
        "total_rows",
        "created_count",
        "updated_count",
        "unchanged_count",
        "error_count",
        "job_page",
    ]
    list_filter = ["status"]
    search_fields = ["file_name", "file_sha256"]
    list_select_related = ["created_by"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Progress and errors")
    def job_page(self, job: ImportJob) -> str:
        return format_html('<a href="{}">open</a>', reverse("catalog:import_job", args=[job.pk]))
