"""Format rules for channel identifiers, and which identifier kinds each channel kind uses.

The admin and the SKU importer both check mappings with `external_id_problem`, so a typo such
as an ASIN with a trailing space is reported where it is entered, not discovered later as an
order line that never finds its mapping.
"""

import re

from .models import ChannelKind, ExternalIdKind

# The shapes each channel issues. Shopify ids are 64-bit integers. An ASIN is 10 upper-case
# letters and digits (an ISBN-10 for books). Amazon limits seller SKUs to 40 characters. eBay
# legacy item ids are integers. Square generates catalog object ids from letters and digits
# and sets no fixed length.
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    ExternalIdKind.SHOPIFY_VARIANT: (re.compile(r"\d{1,20}"), "digits only"),
    ExternalIdKind.AMAZON_ASIN: (
        re.compile(r"[A-Z0-9]{10}"),
        "10 upper-case letters and digits, e.g. B08N5WRWNW",
    ),
    ExternalIdKind.AMAZON_SELLER_SKU: (re.compile(r"\S(?:.{0,38}\S)?"), "at most 40 characters"),
    ExternalIdKind.EBAY_LEGACY_ITEM: (re.compile(r"\d{1,19}"), "digits only"),
    ExternalIdKind.POS_CATALOG_OBJECT: (
        re.compile(r"[A-Za-z0-9]{1,200}"),
        "letters and digits, e.g. W62UWFY35CWMYGVWK6TWJDNI",
    ),
}
_MAX_LENGTH = 200
_CONTROL_OR_EDGE_SPACE = re.compile(r"[\x00-\x1f\x7f]|^\s|\s$")

# The channel SKU kind is valid on every channel: each of them lets sellers set their own code.
ID_KINDS_BY_CHANNEL_KIND: dict[str, frozenset[str]] = {
    ChannelKind.SHOPIFY: frozenset({ExternalIdKind.SKU, ExternalIdKind.SHOPIFY_VARIANT}),
    ChannelKind.WOOCOMMERCE: frozenset({ExternalIdKind.SKU}),
    ChannelKind.SQUARE: frozenset({ExternalIdKind.SKU, ExternalIdKind.POS_CATALOG_OBJECT}),
    ChannelKind.AMAZON: frozenset(
        {ExternalIdKind.SKU, ExternalIdKind.AMAZON_ASIN, ExternalIdKind.AMAZON_SELLER_SKU}
    ),
    ChannelKind.EBAY: frozenset({ExternalIdKind.SKU, ExternalIdKind.EBAY_LEGACY_ITEM}),
    ChannelKind.CANONICAL: frozenset({ExternalIdKind.SKU}),
}


def external_id_problem(*, id_kind: str, external_id: str) -> str | None:
    """Describe what is wrong with an identifier of a kind, or return None when it is valid."""
    if not external_id:
        return "missing"
    if len(external_id) > _MAX_LENGTH:
        return f"longer than {_MAX_LENGTH} characters"
    if _CONTROL_OR_EDGE_SPACE.search(external_id):
        return "contains control characters or leading or trailing spaces"

    rule = _FORMATS.get(id_kind)
    if rule is not None and not rule[0].fullmatch(external_id):
        return f"not a valid {ExternalIdKind(id_kind).label}: expected {rule[1]}"
    return None


def id_kind_problem(*, channel_kind: str, id_kind: str) -> str | None:
    """Describe why a channel of this kind cannot use the identifier kind, or return None."""
    allowed = ID_KINDS_BY_CHANNEL_KIND.get(channel_kind, frozenset({ExternalIdKind.SKU}))
    if id_kind in allowed:
        return None
    names = ", ".join(sorted(allowed))
    return f"{ChannelKind(channel_kind).label} channels do not use {id_kind}; use one of: {names}"
