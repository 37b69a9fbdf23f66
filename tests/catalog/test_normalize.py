"""Title normalisation: Unicode forms, case, punctuation, and the size and colour folds."""

import pytest

from catalog.models import Sku
from catalog.normalize import TERM_FOLDS, contains_phrase, normalize_title

CASES = [
    # case, whitespace and Unicode forms
    ("Classic  Cotton\tTee", "classic cotton tee"),
    ("  leading and trailing  ", "leading and trailing"),
    ("ＣＬＡＳＳＩＣ　ＴＥＥ", "classic tee"),
    ("Straße", "strasse"),
    ("ﬁtted", "fitted"),
    ("Café", "café"),
    ("Cafe\u0301", "café"),
    # punctuation
    ("T-Shirt / Black", "t shirt black"),
    ("Men's Tee", "mens tee"),
    ("Men’s Tee", "mens tee"),
    ("Salt & Pepper", "salt and pepper"),
    ("Bottle 1.5 L, blue.", "bottle 1.5 l blue"),
    ("Soft\u00adshell", "softshell"),
    ("(Limited) [Edition]", "limited edition"),
    ("", ""),
    ("  -- / --  ", ""),
    # sizes
    ("X-Large", "xl"),
    ("XL", "xl"),
    ("extra large", "xl"),
    ("Extra-Large", "xl"),
    ("XX-Large", "xxl"),
    ("2XL", "xxl"),
    ("3XL", "xxxl"),
    ("X-Small", "xs"),
    ("Extra Small", "xs"),
    ("Sm", "s"),
    ("Small", "s"),
    ("Medium", "m"),
    ("Large", "l"),
    ("One Size", "os"),
    ("One Size Fits All", "os"),
    ("OSFA", "os"),
    # colours
    ("Grey", "grey"),
    ("Gray", "grey"),
    ("Navy Blue", "navy"),
    ("Navy", "navy"),
    ("BLK", "black"),
    ("Off-White", "off white"),
    # in context: the longest phrase wins, and unrelated words stay
    ("Hoodie - Navy Blue / Extra Large", "hoodie navy xl"),
    ("Classic Cotton T-Shirt - Gray / Sm", "classic cotton t shirt grey s"),
    ("LG Monitor 27in", "lg monitor 27in"),
    ("Extra Virgin Olive Oil", "extra virgin olive oil"),
]


@pytest.mark.parametrize(("title", "expected"), CASES)
def test_normalize_title(title, expected):
    assert normalize_title(title) == expected


def test_normalize_title_is_idempotent():
    for title, expected in CASES:
        assert normalize_title(expected) == expected, title


def test_size_spellings_fold_to_the_same_token():
    assert {normalize_title(t) for t in ["X-Large", "XL", "extra large", "Extra-Large"]} == {"xl"}
    assert {normalize_title(t) for t in ["Sm", "Small", "S"]} == {"s"}
    assert {normalize_title(t) for t in ["Grey", "Gray", "GRAY"]} == {"grey"}


def test_every_fold_table_spelling_folds_to_its_canonical_token():
    for phrase, canonical in TERM_FOLDS.items():
        assert normalize_title(" ".join(phrase)) == canonical, phrase


def test_contains_phrase_matches_whole_words_only():
    assert contains_phrase("classic tee grey xl", "grey")
    assert contains_phrase("heather grey", "grey")
    assert not contains_phrase("greyhound tee", "grey")
    assert not contains_phrase("classic tee", "")


@pytest.mark.django_db
def test_sku_save_stores_normalised_title_and_rounds_price():
    sku = Sku.objects.create(
        code="TEE-1", title="Classic Tee – Gray / X-Large", price="19.999", currency="USD"
    )
    yen = Sku.objects.create(code="MUG-1", title="Mug", price="1234.5", currency="JPY")

    sku.refresh_from_db()
    yen.refresh_from_db()
    assert sku.normalized_title == "classic tee grey xl"
    assert str(sku.price) == "20.000"
    assert str(yen.price) == "1235.000"
