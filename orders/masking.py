"""Masking of customer personal data in order history, for people without the PII permission.

Masked: names, emails, phone numbers and the street lines of addresses, wherever they sit in
nested JSON (audit before/after, decision facts, review payloads, event data). Cities,
postcodes, countries and everything else stay, because auditors need them to follow routing
and address decisions. Email addresses are also masked inside free text.
"""

import re
from typing import Any

PII_PERMISSION = "orders.view_customer_pii"
MASK = "***"

# Keys whose value is personal data wherever they appear.
PERSONAL_KEYS = frozenset(
    {
        "address1",
        "address2",
        "address_line1",
        "address_line2",
        "street",
        "street1",
        "street2",
        "street_address",
        "first_name",
        "last_name",
        "full_name",
        "customer_name",
        "contact_name",
        "recipient",
        "email",
        "customer_email",
        "contact_email",
        "phone",
        "phone_number",
        "customer_phone",
        "mobile",
    }
)
# "name" and "company" are personal only inside an address or customer record. Elsewhere
# they name a model, an action or a product.
CONTEXT_KEYS = frozenset({"name", "company"})
PERSON_CONTAINERS = frozenset(
    {
        "customer",
        "shipping_address",
        "billing_address",
        "address",
        "normalized",
        "parsed",
        "proposed_address",
        "corrected_address",
    }
)
ADDRESS_HINTS = frozenset({"address1", "city", "zip", "postal_code", "country_code", "province"})
# Comparison rows name their field in "field", and these keys contain that field's values.
ROW_VALUE_KEYS = frozenset({"received", "suggested", "before", "after", "value", "original"})

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def may_view_pii(user) -> bool:
    return bool(user and user.has_perm(PII_PERMISSION))


def mask_personal_data(value: Any, *, container: str = "") -> Any:
    """Return a copy of `value` with customer personal data masked, leaving the input unchanged.

    `container` is the key the value sits under, which decides whether "name" is personal.
    """
    if isinstance(value, dict):
        return _mask_dict(value, container)
    if isinstance(value, list | tuple):
        return [mask_personal_data(item, container=container) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    """Mask the email addresses inside free text, keeping their domain."""
    return EMAIL.sub(lambda match: mask_email(match.group(0)), text)


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}{MASK}@{domain}" if domain else MASK


def mask_value(key: str, value: Any) -> Any:
    """Mask one personal value: keep an email's domain and the last two digits of a phone."""
    if value in (None, ""):
        return value
    if not isinstance(value, str):
        return MASK
    key = key.lower()
    if "email" in key:
        return mask_email(value)
    if "phone" in key or key == "mobile":
        digits = re.sub(r"\D", "", value)
        return f"{MASK}{digits[-2:]}" if len(digits) > 4 else MASK
    if "name" in key or key in ("company", "recipient"):
        return f"{value[:1]}{MASK}"
    return MASK


def _mask_dict(data: dict, container: str) -> dict:
    personal_record = container.lower() in PERSON_CONTAINERS or bool(
        ADDRESS_HINTS & {str(key).lower() for key in data}
    )
    row_field = str(data.get("field", "")).lower()
    masked = {}
    for key, item in data.items():
        name = str(key).lower()
        if name in PERSONAL_KEYS or (personal_record and name in CONTEXT_KEYS):
            masked[key] = _mask_any(name, item)
        elif name in ROW_VALUE_KEYS and row_field in PERSONAL_KEYS | CONTEXT_KEYS:
            masked[key] = _mask_any(row_field, item)
        else:
            masked[key] = mask_personal_data(item, container=name)
    return masked


def _mask_any(key: str, value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        # A personal key holding a structure (e.g. "customer" as a dict): mask every leaf.
        return _mask_leaves(key, value)
    return mask_value(key, value)


def _mask_leaves(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _mask_leaves(key, item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_leaves(key, item) for item in value]
    return mask_value(key, value)
