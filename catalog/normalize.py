"""Title normalisation shared by the SKU master, the importer and the candidate matcher.

`normalize_title` folds a product title to a comparable form, in this order:

1. Unicode NFKC, then case folding: full-width letters, ligatures and other compatibility
   forms become their plain letters ("ＸＬ" -> "xl", "ﬁ" -> "fi"), and "Straße" -> "strasse".
2. Apostrophes are dropped ("men's" -> "mens"), "&" becomes "and", and every other
   punctuation or symbol character becomes a space ("T-Shirt / Black" -> "t shirt black").
   A "." or "," between two digits is kept, so "1.5" stays "1.5".
3. Runs of whitespace become one space.
4. Size and colour spellings listed in TERM_FOLDS fold to one token each. Only whole words
   match, and the longest phrase wins: "X-Large", "XL" and "extra large" -> "xl",
   "Sm" and "Small" -> "s", "Grey" and "Gray" -> "grey", "Navy Blue" -> "navy".

Deliberately not folded: "lg" (also a brand), "md" and "med" (also medical), and numeric
sizes such as "10", which mean different things for shoes, rings and trousers.

The stored `Sku.normalized_title` depends on this table. After changing it, run
`manage.py renormalize_titles` so stored titles match what the matcher computes.
"""

import re
import unicodedata

# Canonical token -> the spellings that fold to it, written as they look after steps 1-3
# (lowercase, hyphens already turned into spaces).
_SIZE_SPELLINGS: dict[str, list[str]] = {
    "xxs": ["xxs", "2xs", "xx small", "extra extra small"],
    "xs": ["xs", "x small", "extra small"],
    "s": ["s", "sm", "small"],
    "m": ["m", "medium"],
    "l": ["l", "lrg", "large"],
    "xl": ["xl", "x large", "extra large"],
    "xxl": ["xxl", "2xl", "xx large", "extra extra large"],
    "xxxl": ["xxxl", "3xl", "xxx large"],
    "os": ["os", "osfa", "one size", "one size fits all"],
}
_COLOUR_SPELLINGS: dict[str, list[str]] = {
    "grey": ["grey", "gray", "gry"],
    "navy": ["navy", "navy blue", "nvy"],
    "black": ["black", "blk"],
    "white": ["white", "wht"],
    "off white": ["off white", "offwhite"],
    "beige": ["beige", "bge"],
    "burgundy": ["burgundy", "bordeaux"],
    "khaki": ["khaki", "kaki"],
}
_OTHER_SPELLINGS: dict[str, list[str]] = {
    # Attribute names as written in catalogs: {"Color": ...} and {"colour": ...} are one key.
    "colour": ["colour", "color"],
}

SIZE_TERMS = frozenset(_SIZE_SPELLINGS)
COLOUR_TERMS = frozenset(_COLOUR_SPELLINGS)

# Phrase (a tuple of words) -> canonical text. Built once from the lists above.
TERM_FOLDS: dict[tuple[str, ...], str] = {
    tuple(spelling.split()): canonical
    for table in (_SIZE_SPELLINGS, _COLOUR_SPELLINGS, _OTHER_SPELLINGS)
    for canonical, spellings in table.items()
    for spelling in spellings
}
_LONGEST_PHRASE = max(len(phrase) for phrase in TERM_FOLDS)
_FIRST_WORDS = frozenset(phrase[0] for phrase in TERM_FOLDS)

_APOSTROPHES = re.compile(r"['`\u00b4\u2019\u02bc]")
# ASCII punctuation, symbols and control characters, except "." and "," (kept between digits).
_ASCII_SEPARATORS = str.maketrans(
    {char: " " for char in map(chr, range(128)) if not char.isalnum() and char not in ".,"}
)
_LONE_DECIMAL_MARK = re.compile(r"(?<!\d)[.,]|[.,](?!\d)")
_WHITESPACE = re.compile(r"\s+")


def normalize_title(title: str) -> str:
    """Fold a title for comparison; see the module docstring for the steps."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = _APOSTROPHES.sub("", text).replace("&", " and ")
    text = _separators_to_spaces(text)
    words = _WHITESPACE.sub(" ", text).strip().split(" ")
    return " ".join(_fold_terms(words)) if words != [""] else ""


def normalize_attribute_key(key: str) -> str:
    """Fold an attribute name, so "Color", "colour" and "COLOUR" are the same key."""
    return normalize_title(key)


def contains_phrase(text: str, phrase: str) -> bool:
    """Return whether normalised `text` contains normalised `phrase` as whole words."""
    return bool(phrase) and f" {phrase} " in f" {text} "


def _separators_to_spaces(text: str) -> str:
    if text.isascii():
        # The same result as the loop below, several times faster; most titles are ASCII.
        return _LONE_DECIMAL_MARK.sub(" ", text.translate(_ASCII_SEPARATORS))
    kept = []
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cf":
            # Soft hyphens and zero-width joiners sit inside words; dropping them keeps the word.
            continue
        if char in ".," and _between_digits(text, index):
            kept.append(char)
        elif category[0] in "PSZC":
            kept.append(" ")
        else:
            kept.append(char)
    return "".join(kept)


def _between_digits(text: str, index: int) -> bool:
    return 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit()


def _fold_terms(words: list[str]) -> list[str]:
    folded = []
    position = 0
    while position < len(words):
        if words[position] not in _FIRST_WORDS:
            folded.append(words[position])
            position += 1
            continue
        for length in range(min(_LONGEST_PHRASE, len(words) - position), 0, -1):
            canonical = TERM_FOLDS.get(tuple(words[position : position + length]))
            if canonical is not None:
                folded.append(canonical)
                position += length
                break
        else:
            folded.append(words[position])
            position += 1
    return folded
