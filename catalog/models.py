"""Sales channels, the canonical SKU master, channel identifier mappings, per-channel listing
constraints, and the bulk SKU import jobs."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from omsguard.money import is_currency, money_round

from .normalize import normalize_title

# PostgreSQL's integer column, which PositiveIntegerField uses, ends here.
MAX_INTEGER = 2_147_483_647
NORMALIZED_TITLE_LENGTH = 300

# A shape check only; orders.models uses it. validate_currency also checks ISO 4217.
currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. USD.")


def validate_currency(value: str) -> None:
    if not is_currency(value):
        raise ValidationError(
            "%(value)s is not an ISO 4217 currency code; use one such as USD or EUR.",
            code="invalid_currency",
            params={"value": repr(value)},
        )


class ChannelKind(models.TextChoices):
    SHOPIFY = "shopify", "Shopify"
    WOOCOMMERCE = "woocommerce", "WooCommerce"
    SQUARE = "square", "Square POS"
    AMAZON = "amazon", "Amazon"
    EBAY = "ebay", "eBay"
    # Orders in OMS Guard's own format, e.g. from a custom connector or a file import.
    CANONICAL = "canonical", "Canonical format"


class Channel(models.Model):
    """One sales source with its own credentials, e.g. one Shopify store."""

    kind = models.CharField(max_length=32, choices=ChannelKind.choices)
    code = models.SlugField(
        max_length=64, unique=True, help_text="Used in webhook URLs: /webhooks/KIND/CODE/."
    )
    name = models.CharField(max_length=200, blank=True)
    # Stored exactly as given (no trimming, no re-encoding) because it is the HMAC key.
    webhook_secret = models.TextField(blank=True)
    notification_url = models.URLField(
        max_length=500,
        blank=True,
        help_text=(
            "Square only: the exact notification URL of the webhook subscription. Square signs "
            "this URL plus the body, so it must match, scheme and trailing slash included."
        ),
    )
    last_signature_failure = models.TextField(
        blank=True,
        editable=False,
        help_text="When and why the last webhook signature check failed, for setup problems.",
    )
    is_active = models.BooleanField(default=True)
    orders_held = models.BooleanField(
        default=False,
        help_text=(
            "Hold every new or updated order from this channel for a person, e.g. while an "
            "alert about the channel is investigated. Orders already held stay held."
        ),
    )
    orders_held_reason = models.CharField(
        max_length=300, blank=True, help_text="Why the channel's orders are held."
    )
    orders_held_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.code}"


def _dimension_field(name: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_INTEGER)],
        help_text=f"{name} of the packed item in millimetres.",
    )


class Sku(models.Model):
    """A canonical, sellable catalog item."""

    code = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=300)
    normalized_title = models.CharField(
        max_length=NORMALIZED_TITLE_LENGTH,
        editable=False,
        db_index=True,
        help_text="The title folded by catalog.normalize.normalize_title, for matching.",
    )
    attributes = models.JSONField(
        default=dict, blank=True, help_text='Variant attributes, e.g. {"colour": "Black"}.'
    )
    category = models.CharField(max_length=200, blank=True)
    price = models.DecimalField(
        max_digits=14, decimal_places=3, validators=[MinValueValidator(Decimal("0"))]
    )
    cost = models.DecimalField(
        max_digits=14,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
    )
    currency = models.CharField(
        max_length=3,
        validators=[validate_currency],
        help_text="ISO 4217 code of price and cost. The price is rounded to its minor unit.",
    )
    weight_grams = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_INTEGER)]
    )
    length_mm = _dimension_field("Length")
    width_mm = _dimension_field("Width")
    height_mm = _dimension_field("Height")
    is_active = models.BooleanField(default=True)
    # db_default too: the bulk import inserts SKUs with raw SQL that leaves this column out.
    is_priority = models.BooleanField(
        default=False,
        db_default=False,
        help_text="A SKU that matters most (a best seller, a promise to a customer). Canaries "
        "can leave orders that contain one on the active version.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"

    def __str__(self) -> str:
        return f"{self.code} {self.title}"

    def save(self, *args, **kwargs) -> None:
        self.set_derived_fields()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not isinstance(self.attributes, dict):
            raise ValidationError(
                {"attributes": 'Use a JSON object, e.g. {"colour": "Black", "size": "M"}.'},
                code="invalid_attributes",
            )
        for key, value in self.attributes.items():
            if not key.strip() or not isinstance(value, str | int | float | bool):
                raise ValidationError(
                    {"attributes": f"Attribute {key!r} needs a name and a text or number value."},
                    code="invalid_attributes",
                )
        self.set_derived_fields()

    def set_derived_fields(self) -> None:
        """Set the normalised title and round the price to the currency's minor unit.

        `save()` calls this. Bulk writes, which bypass `save()`, must call it themselves.
        """
        self.normalized_title = normalize_title(self.title)[:NORMALIZED_TITLE_LENGTH]
        if self.price is not None and is_currency(self.currency):
            self.price = money_round(Decimal(self.price), self.currency)


class ExternalIdKind(models.TextChoices):
    SKU = "sku", "Channel SKU"
    SHOPIFY_VARIANT = "shopify_variant", "Shopify variant id"
    AMAZON_ASIN = "amazon_asin", "Amazon ASIN"
    AMAZON_SELLER_SKU = "amazon_seller_sku", "Amazon SellerSKU"
    EBAY_LEGACY_ITEM = "ebay_legacy_item", "eBay legacy item id"
    POS_CATALOG_OBJECT = "pos_catalog_object", "POS catalog object id (Square)"


class ChannelSkuMapping(models.Model):
    """One channel identifier that stands for exactly one canonical SKU on that channel."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="mappings")
    id_kind = models.CharField(max_length=32, choices=ExternalIdKind.choices)
    external_id = models.CharField(max_length=200)
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="mappings")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "id_kind", "external_id"], name="mapping_unique_external_id"
            )
        ]
        verbose_name = "channel SKU mapping"

    def __str__(self) -> str:
        return f"{self.channel.code}:{self.id_kind}:{self.external_id} -> {self.sku.code}"

    def validate_constraints(self, exclude=None) -> None:
        """Report a taken identifier with the SKU it maps to, not Django's generic message."""
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError:
            existing = (
                ChannelSkuMapping.objects.filter(
                    channel_id=self.channel_id, id_kind=self.id_kind, external_id=self.external_id
                )
                .exclude(pk=self.pk)
                .select_related("channel", "sku")
                .first()
            )
            if existing is None or self.sku_id is None:
                raise
            if existing.sku_id == self.sku_id:
                raise ValidationError(
                    f"This identifier is already mapped to {existing.sku.code}.",
                    code="mapping_exists",
                ) from None
            raise ValidationError(
                mapping_conflict_message(existing, self.sku), code="mapping_conflict"
            ) from None

    def clean(self) -> None:
        from .identifiers import external_id_problem, id_kind_problem

        problem = external_id_problem(id_kind=self.id_kind, external_id=self.external_id)
        if problem:
            raise ValidationError({"external_id": problem[0].upper() + problem[1:] + "."})
        if self.channel_id is not None:
            problem = id_kind_problem(channel_kind=self.channel.kind, id_kind=self.id_kind)
            if problem:
                raise ValidationError({"id_kind": problem + "."})


def mapping_conflict_message(existing: ChannelSkuMapping, wanted: Sku) -> str:
    return (
        f"{existing.get_id_kind_display()} {existing.external_id!r} on channel "
        f"{existing.channel.code} is already mapped to {existing.sku.code}, not {wanted.code}."
    )


class ListingConstraintKind(models.TextChoices):
    NO_SUBSTITUTION = "no_substitution", "No substitution: ship exactly the ordered SKU"
    NOT_A_SUBSTITUTE = "not_a_substitute", "Not a substitute: never ship it in place of another"


class ListingConstraint(models.Model):
    """A rule a channel's listing sets for one SKU, or for every SKU when `sku` is empty.

    Marketplaces such as Amazon forbid shipping anything but the listed item, so the
    substitution recommender calls `catalog.selectors.listing_forbids` before proposing one.
    """

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="listing_constraints"
    )
    sku = models.ForeignKey(
        Sku,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="listing_constraints",
        help_text="Leave empty to apply the rule to every SKU sold on the channel.",
    )
    kind = models.CharField(max_length=32, choices=ListingConstraintKind.choices)
    note = models.CharField(max_length=500, blank=True, help_text="Why the listing forbids it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "sku", "kind"],
                condition=models.Q(sku__isnull=False),
                name="listing_constraint_unique_per_sku",
                violation_error_message="This SKU already has this constraint on the channel.",
            ),
            models.UniqueConstraint(
                fields=["channel", "kind"],
                condition=models.Q(sku__isnull=True),
                name="listing_constraint_unique_per_channel",
                violation_error_message="The channel already has this constraint for all SKUs.",
            ),
        ]
        indexes = [models.Index(fields=["channel", "kind"], name="listing_constraint_lookup")]

    def __str__(self) -> str:
        target = self.sku.code if self.sku_id else "every SKU"
        return f"{self.channel.code}: {self.get_kind_display()} ({target})"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportPhase(models.TextChoices):
    WAITING = "waiting", "Waiting for a worker"
    VALIDATING = "validating", "Validating rows"
    APPLYING = "applying", "Applying valid rows"
    DONE = "done", "Done"


def _import_upload_path(job: "ImportJob", filename: str) -> str:
    return f"imports/{job.pk}/{filename}"


class ImportJob(models.Model):
    """One uploaded SKU and mapping file, and the outcome of importing it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    file = models.FileField(upload_to=_import_upload_path, max_length=300)
    file_name = models.CharField(max_length=255, help_text="The name the file was uploaded with.")
    file_sha256 = models.CharField(max_length=64, db_index=True)
    default_channel = models.ForeignKey(
        Channel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Channel for mapping rows whose channel cell is empty.",
    )
    status = models.CharField(
        max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    phase = models.CharField(
        max_length=16, choices=ImportPhase.choices, default=ImportPhase.WAITING
    )
    total_rows = models.PositiveIntegerField(default=0)
    validated_rows = models.PositiveIntegerField(default=0)
    rows_to_apply = models.PositiveIntegerField(default=0)
    applied_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    mappings_created_count = models.PositiveIntegerField(default=0)
    review_items_resolved_count = models.PositiveIntegerField(default=0)
    validation_seconds = models.FloatField(null=True, blank=True)
    apply_seconds = models.FloatField(null=True, blank=True)
    failure_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "SKU import job"

    def __str__(self) -> str:
        return f"Import {self.file_name} ({self.get_status_display().lower()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)


class ImportRowError(models.Model):
    """A reason why one row of an import file was not applied."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.PositiveIntegerField(
        help_text="Spreadsheet row number: the header is row 1, the first data row is row 2."
    )
    column = models.CharField(max_length=64, blank=True)
    value = models.CharField(max_length=500, blank=True)
    code = models.CharField(max_length=32)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["row_number", "id"]
        indexes = [models.Index(fields=["job", "row_number"], name="import_error_job_row")]

    def __str__(self) -> str:
        return f"row {self.row_number} {self.column}: {self.reason}"
