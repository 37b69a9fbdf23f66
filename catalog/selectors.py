"""Reads over channels, SKUs and mappings."""

from dataclasses import dataclass

from django.conf import settings
from rapidfuzz import fuzz, process, utils

from .models import Channel, ChannelSkuMapping, ExternalIdKind, Sku
from .normalize import normalize_title


@dataclass(frozen=True)
class SkuCandidate:
    sku_id: int
    code: str
    title: str
    score: float

    def as_dict(self) -> dict:
        return {"sku_id": self.sku_id, "code": self.code, "title": self.title, "score": self.score}


def channel_get_active(*, kind: str, code: str) -> Channel | None:
    return Channel.objects.filter(kind=kind, code=code, is_active=True).first()


def mapping_find_sku(*, channel: Channel, identifiers: list[tuple[str, str]]) -> Sku | None:
    """Return the SKU mapped from the first (id_kind, external_id) pair that has a mapping.

    Pairs are tried in the order given, so callers list the most specific identifier first.
    Empty external ids are skipped.
    """
    wanted = [(kind, value) for kind, value in identifiers if value]
    if not wanted:
        return None

    mappings = ChannelSkuMapping.objects.filter(
        channel=channel, external_id__in=[value for _, value in wanted]
    ).select_related("sku")
    by_key = {(m.id_kind, m.external_id): m.sku for m in mappings}
    for key in wanted:
        if key in by_key:
            return by_key[key]
    return None


def sku_candidates_for_title(*, title: str, limit: int | None = None) -> list[SkuCandidate]:
    """Rank active SKUs by title similarity (rapidfuzz WRatio, 0-100) to a channel's title.

    NOTE: this scores every active SKU in Python. It is quick for catalogs of a few thousand
    SKUs; large catalogs need a pre-filter (trigram index or category) before scoring.
    """
    limit = limit or settings.OMSGUARD_SKU_CANDIDATES
    query = normalize_title(title)
    if not query:
        return []

    choices = dict(
        Sku.objects.filter(is_active=True).values_list("id", "normalized_title").iterator()
    )
    matches = process.extract(
        query,
        choices,
        scorer=fuzz.WRatio,
        processor=utils.default_process,
        limit=limit,
        score_cutoff=settings.OMSGUARD_SKU_CANDIDATE_MIN_SCORE,
    )
    skus = Sku.objects.in_bulk([sku_id for _, _, sku_id in matches])
    return [
        SkuCandidate(
            sku_id=sku_id, code=skus[sku_id].code, title=skus[sku_id].title, score=round(score, 1)
        )
        for _, score, sku_id in matches
    ]


def shopify_line_identifiers(*, sku: str, variant_id: str) -> list[tuple[str, str]]:
    """The identifiers a Shopify line can be mapped by, most specific first."""
    return [(ExternalIdKind.SHOPIFY_VARIANT, variant_id), (ExternalIdKind.SKU, sku)]
