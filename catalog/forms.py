from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from .models import Channel

ALLOWED_EXTENSIONS = (".csv", ".xlsx")


class SkuImportForm(forms.Form):
    file = forms.FileField(
        help_text="A CSV file (UTF-8, comma, semicolon or tab separated) or an XLSX workbook."
    )
    channel = forms.ModelChoiceField(
        queryset=Channel.objects.order_by("code"),
        required=False,
        empty_label="(none: every mapping row names its channel)",
        help_text="Channel for mapping rows whose channel cell is empty.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith(ALLOWED_EXTENSIONS):
            raise forms.ValidationError(
                "Upload a .csv or .xlsx file; %(name)s is neither.",
                code="invalid_extension",
                params={"name": upload.name},
            )
        limit = settings.OMSGUARD_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                "The file is %(size)s; the limit is %(limit)s. Split it into smaller files.",
                code="file_too_large",
                params={"size": filesizeformat(upload.size), "limit": filesizeformat(limit)},
            )
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.", code="empty_file")
        return upload
