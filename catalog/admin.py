from django import forms
from django.contrib import admin

from .models import Channel, ChannelSkuMapping, Sku


class ChannelForm(forms.ModelForm):
    # strip=False keeps the secret byte-exact: leading or trailing spaces are part of it.
    webhook_secret = forms.CharField(
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The channel's webhook signing secret. Leave blank to keep the current one.",
    )

    class Meta:
        model = Channel
        fields = ["kind", "code", "name", "webhook_secret", "is_active"]

    def clean_webhook_secret(self) -> str:
        secret = self.cleaned_data["webhook_secret"]
        if secret == "" and self.instance.pk:
            return self.instance.webhook_secret
        return secret


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["code", "kind", "name", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]


@admin.register(Sku)
class SkuAdmin(admin.ModelAdmin):
    list_display = ["code", "title", "category", "price", "currency", "is_active"]
    list_filter = ["is_active", "category", "currency"]
    search_fields = ["code", "title", "normalized_title"]
    readonly_fields = ["normalized_title", "created_at", "updated_at"]


@admin.register(ChannelSkuMapping)
class ChannelSkuMappingAdmin(admin.ModelAdmin):
    list_display = ["channel", "id_kind", "external_id", "sku", "created_at"]
    list_filter = ["channel", "id_kind"]
    search_fields = ["external_id", "sku__code"]
    list_select_related = ["channel", "sku"]
    autocomplete_fields = ["sku"]
