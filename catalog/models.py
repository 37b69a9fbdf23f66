"""Sales channels, the canonical SKU master and channel identifier mappings."""

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from .normalize import normalize_title

currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. USD.")


class ChannelKind(models.TextChoices):
    SHOPIFY = "shopify", "Shopify"


class Channel(models.Model):
    """One sales source with its own credentials, e.g. one Shopify store."""

    kind = models.CharField(max_length=32, choices=ChannelKind.choices)
    code = models.SlugField(
        max_length=64, unique=True, help_text="Used in webhook URLs: /webhooks/<kind>/<code>/."
    )
    name = models.CharField(max_length=200, blank=True)
    # Stored exactly as given (no trimming, no re-encoding) because it is the HMAC key.
    webhook_secret = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.code}"


class Sku(models.Model):
    """A canonical, sellable catalog item."""

    code = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=300)
    normalized_title = models.CharField(max_length=300, editable=False, db_index=True)
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
    currency = models.CharField(max_length=3, validators=[currency_validator])
    weight_grams = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"

    def __str__(self) -> str:
        return f"{self.code} {self.title}"

    def save(self, *args, **kwargs) -> None:
        self.normalized_title = normalize_title(self.title)
        super().save(*args, **kwargs)


class ExternalIdKind(models.TextChoices):
    SKU = "sku", "Channel SKU"
    SHOPIFY_VARIANT = "shopify_variant", "Shopify variant id"


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
