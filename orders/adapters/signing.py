"""Webhook signatures: base64 HMAC-SHA256, as Shopify, WooCommerce and Square compute them."""

import base64
import hashlib
import hmac

from django.views.decorators.debug import sensitive_variables


@sensitive_variables("key")
def hmac_sha256_base64(message: bytes, key: str) -> str:
    """Base64 of HMAC-SHA256 over `message`, keyed with the UTF-8 bytes of `key`."""
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(expected: str, header_value: str | None) -> bool:
    """Compare a received signature header with the expected one in constant time."""
    if not header_value:
        return False
    # compare_digest only takes ASCII strings; a base64 signature is always ASCII.
    if not header_value.isascii():
        return False
    return hmac.compare_digest(expected, header_value.strip())
