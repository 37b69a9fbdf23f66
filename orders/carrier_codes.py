"""Folding of channel carrier/service codes into the form that mappings are looked up by."""

import re
import unicodedata

_SEPARATORS = re.compile(r"[\W_]+")


def normalize_carrier_code(code: str) -> str:
    """Fold a code so spelling variants meet: "UPS Ground", "ups_ground" and "UPS-GROUND".

    NFKC folds full-width characters, case is folded, and every run of whitespace,
    punctuation or underscores becomes one space. Letters and digits of any script stay, so
    "ヤマト運輸 宅急便" is kept as it is. Words written together ("UPSGround") stay distinct.
    """
    folded = unicodedata.normalize("NFKC", code).casefold()
    return _SEPARATORS.sub(" ", folded).strip()
