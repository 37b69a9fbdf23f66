"""Candidate SKUs for an unmapped line: normalised titles and variant attributes."""

import pytest

from catalog.models import Sku
from catalog.selectors import sku_candidates_for_title

pytestmark = pytest.mark.django_db


@pytest.fixture
def tees(db) -> None:
    for code, colour, size in [
        ("TEE-GRY-XL", "Heather Grey", "XL"),
        ("TEE-GRY-S", "Heather Grey", "S"),
        ("TEE-NVY-XL", "Navy", "XL"),
        ("TEE-BLK-XL", "Black", "X-Large"),
    ]:
        Sku.objects.create(
            code=code,
            title="Classic Cotton Tee",
            price="19.99",
            currency="USD",
            attributes={"Color": colour, "size": size},
        )
    Sku.objects.create(code="MUG", title="Enamel Camp Mug", price="14", currency="USD")


def codes(candidates) -> list[str]:
    return [candidate.code for candidate in candidates]


def test_variant_title_prefers_matching_attributes(tees):
    candidates = sku_candidates_for_title(
        title="Classic Cotton Tee", variant_title="Gray / X-Large"
    )

    assert codes(candidates)[0] == "TEE-GRY-XL"
    best = candidates[0]
    assert best.matched_attributes == {"colour": "heather grey", "size": "xl"}
    assert best.conflicting_attributes == {}
    assert best.title_score == 95.0
    assert best.score == 100.0


def test_conflicting_attributes_rank_last(tees):
    candidates = sku_candidates_for_title(
        title="Classic Cotton Tee", variant_title="Navy Blue / XL"
    )

    # Equal scores keep the catalog order (by id).
    assert codes(candidates) == ["TEE-NVY-XL", "TEE-GRY-XL", "TEE-BLK-XL", "TEE-GRY-S"]
    assert [candidate.title_score for candidate in candidates] == [95.0, 95.0, 95.0, 95.0]
    assert [candidate.score for candidate in candidates] == [100.0, 75.0, 75.0, 45.0]
    assert candidates[2].matched_attributes == {"size": "xl"}
    assert candidates[2].conflicting_attributes == {"colour": "black"}
    assert candidates[3].conflicting_attributes == {"colour": "heather grey", "size": "s"}


def test_attributes_named_in_the_title_count_without_variant_title(tees):
    candidates = sku_candidates_for_title(title="Classic Cotton Tee - Black / Extra Large")

    assert codes(candidates)[0] == "TEE-BLK-XL"
    assert candidates[0].matched_attributes == {"colour": "black", "size": "xl"}


def test_title_without_attributes_ranks_by_similarity_only(tees):
    candidates = sku_candidates_for_title(title="enamel camp mug")

    assert codes(candidates) == ["MUG"]
    assert candidates[0].as_dict() == {
        "sku_id": Sku.objects.get(code="MUG").pk,
        "code": "MUG",
        "title": "Enamel Camp Mug",
        "score": 100.0,
        "title_score": 100.0,
        "matched_attributes": {},
        "conflicting_attributes": {},
    }


def test_existing_call_signature_still_works(tees, settings):
    settings.OMSGUARD_SKU_CANDIDATES = 2

    assert len(sku_candidates_for_title(title="Classic Cotton Tee")) == 2
    assert sku_candidates_for_title(title="  ") == []


def test_inactive_skus_are_not_candidates(tees):
    Sku.objects.filter(code="MUG").update(is_active=False)

    assert sku_candidates_for_title(title="Enamel Camp Mug") == []
