"""Title normalisation shared by the SKU master and the candidate matcher."""

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")


def normalize_title(title: str) -> str:
    """Fold a product title to a comparable form: NFKC, case-folded, single-spaced."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _WHITESPACE.sub(" ", folded).strip()
