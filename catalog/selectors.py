"""Reads over channels, SKUs, mappings, listing constraints and import jobs."""

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Q, QuerySet
from rapidfuzz import fuzz, process, utils

from .models import (
    Channel,
    ChannelSkuMapping,
    ImportJob,
    ImportPhase,
    ImportRowError,
    ListingConstraint,
    Sku,
)
from .normalize import (
    COLOUR_TERMS,
    SIZE_TERMS,
    contains_phrase,
    normalize_attribute_key,
    normalize_title,
)
from .sql_rows import column_list, instance_from_row

# Ranking weights for variant attributes named in a channel's title. Variants of one product
# differ by a few points of title similarity, so a named colour or size the SKU has is worth a
# little more than that. A value that contradicts the named one (a "Black" line and a "White"
# SKU) outweighs a much better title.
ATTRIBUTE_MATCH_BONUS = 5
ATTRIBUTE_CONFLICT_PENALTY = 25


@dataclass(frozen=True)
class SkuCandidate:
    sku_id: int
    code: str
    title: str
    # Title similarity adjusted for matching and conflicting attributes, 0-100; the ranking.
    score: float
    title_score: float = 0.0
    matched_attributes: dict[str, str] = field(default_factory=dict)
    conflicting_attributes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "sku_id": self.sku_id,
            "code": self.code,
            "title": self.title,
            "score": self.score,
            "title_score": self.title_score,
            "matched_attributes": self.matched_attributes,
            "conflicting_attributes": self.conflicting_attributes,
        }


def channel_get_active(*, kind: str, code: str) -> Channel | None:
    """Return the active channel of this kind and code, or None.

    Every webhook request calls this. A statement built once and read with a plain cursor
    takes about 200 Python function calls, where the ORM query built on each call took about
    1,500, over a quarter of a webhook acknowledgement's calls (cProfile of the view).
    """
    read = channel_active_read(kind=kind, code=code)
    return None if read is None else read[1]


def channel_active_read(*, kind: str, code: str, leading: str = "") -> tuple[tuple, Channel] | None:
    """Read the active channel of this kind and code, or None, with a plain cursor.

    `leading` is SQL selected before the channel's columns (orders.webhook_channels reads the
    row version with it); its values come back first, beside the channel.
    """
    statement, converters = _channel_active_query(connection.vendor, leading)
    with connection.cursor() as cursor:
        cursor.execute(statement, [kind, code])
        row = cursor.fetchone()
    if row is None:
        return None
    extra = len(row) - len(converters)
    values = []
    for value, (column, column_converters) in zip(row[extra:], converters, strict=True):
        for converter in column_converters:
            value = converter(value, column, connection)
        values.append(value)
    return tuple(row[:extra]), Channel.from_db(connection.alias, None, values)


@functools.cache
def _channel_active_query(vendor: str, leading: str) -> tuple[str, list]:
    """The statement and each column's database converters (as the ORM applies them)."""
    # Codes are unique, so at most one row matches. `vendor` keys the cache by the backend.
    quote = connection.ops.quote_name
    model_fields = Channel._meta.concrete_fields
    columns = ", ".join(quote(model_field.column) for model_field in model_fields)
    selected = f"{leading}, {columns}" if leading else columns
    statement = (
        f"SELECT {selected} FROM {quote(Channel._meta.db_table)} "  # noqa: S608 - no input
        f"WHERE {quote('kind')} = %s AND {quote('code')} = %s AND {quote('is_active')}"
    )
    converters = []
    for model_field in model_fields:
        column = model_field.get_col(Channel._meta.db_table)
        backend_converters = connection.ops.get_db_converters(column)
        converters.append((column, backend_converters + model_field.get_db_converters(connection)))
    return statement, converters


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


def mappings_find_skus(
    *, channel: Channel, identifier_lists: list[list[tuple[str, str]]]
) -> list[Sku | None]:
    """mapping_find_sku for several lines at once, with one query for all of them.

    Returns one SKU or None per list of (id_kind, external_id) pairs, in the order given.
    """
    wanted = [[(kind, value) for kind, value in pairs if value] for pairs in identifier_lists]
    values = {value for pairs in wanted for _kind, value in pairs}
    if not values:
        return [None] * len(wanted)
    by_key = _mapped_skus(channel_id=channel.pk, external_ids=sorted(values))
    return [next((by_key[key] for key in pairs if key in by_key), None) for pairs in wanted]


def _mapped_skus(*, channel_id: int, external_ids: list[str]) -> dict[tuple[str, str], Sku]:
    """Map (id_kind, external_id) to the SKU for the channel's mappings of these ids.

    Hand-written SQL, because it runs for every order and building it with the ORM cost more
    Python time than the query takes.
    """
    placeholders = ", ".join(["%s"] * len(external_ids))
    query = (
        f"SELECT m.id_kind, m.external_id, {column_list(Sku, 's')} "  # noqa: S608
        f"FROM {ChannelSkuMapping._meta.db_table} AS m "
        f"JOIN {Sku._meta.db_table} AS s ON s.id = m.sku_id "
        f"WHERE m.channel_id = %s AND m.external_id IN ({placeholders})"
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [channel_id, *external_ids])
        rows = cursor.fetchall()
    return {
        (id_kind, external_id): instance_from_row(Sku, sku_row, using=connection.alias)
        for id_kind, external_id, *sku_row in rows
    }


def sku_candidates_for_title(
    *, title: str, limit: int | None = None, variant_title: str = ""
) -> list[SkuCandidate]:
    """Rank active SKUs by title similarity to a channel's title, preferring matching variants.

    Similarity is rapidfuzz WRatio (0-100) over normalised titles; SKUs below
    OMSGUARD_SKU_CANDIDATE_MIN_SCORE are left out. Attribute values of a SKU (its colour,
    size...) that appear as words in `variant_title`, or in `title` when no variant title is
    given, raise its score. A value of the same attribute that differs from the named one
    lowers it.

    NOTE: this scores every active SKU in Python. It is quick for catalogs of a few thousand
    SKUs; large catalogs need a pre-filter (trigram index or category) before scoring.
    """
    limit = limit or settings.OMSGUARD_SKU_CANDIDATES
    query = normalize_title(f"{title} {variant_title}")
    if not query:
        return []

    rows = {
        sku_id: (normalized, attributes)
        for sku_id, normalized, attributes in Sku.objects.filter(is_active=True)
        .values_list("id", "normalized_title", "attributes")
        .iterator(chunk_size=2000)
    }
    matches = process.extract(
        query,
        {sku_id: normalized for sku_id, (normalized, _) in rows.items()},
        scorer=fuzz.WRatio,
        processor=utils.default_process,
        limit=None,
        score_cutoff=settings.OMSGUARD_SKU_CANDIDATE_MIN_SCORE,
    )
    attributes_by_sku = {
        sku_id: _normalized_attributes(rows[sku_id][1]) for _, _, sku_id in matches
    }
    named = _named_attribute_values(
        normalize_title(variant_title) if variant_title.strip() else query,
        attributes_by_sku.values(),
    )
    ranked = sorted(
        (_rank(sku_id, score, attributes_by_sku[sku_id], named) for _, score, sku_id in matches),
        key=lambda ranking: (-ranking.adjusted, -ranking.title_score, ranking.sku_id),
    )[:limit]

    skus = Sku.objects.in_bulk([ranking.sku_id for ranking in ranked])
    return [
        SkuCandidate(
            sku_id=ranking.sku_id,
            code=skus[ranking.sku_id].code,
            title=skus[ranking.sku_id].title,
            score=round(max(0.0, min(100.0, ranking.adjusted)), 1),
            title_score=round(ranking.title_score, 1),
            matched_attributes=ranking.matched,
            conflicting_attributes=ranking.conflicting,
        )
        for ranking in ranked
    ]


@dataclass(frozen=True)
class _Ranking:
    sku_id: int
    title_score: float
    adjusted: float
    matched: dict[str, str]
    conflicting: dict[str, str]


def _normalized_attributes(attributes: object) -> dict[str, str]:
    if not isinstance(attributes, dict):
        return {}
    return {
        normalize_attribute_key(str(key)): normalize_title(str(value))
        for key, value in attributes.items()
        if str(value).strip()
    }


def _named_attribute_values(text: str, attribute_sets) -> dict[str, set[str]]:
    """Attribute values that `text` names, by attribute key: values of the candidate SKUs,
    and the colours and sizes of the normalisation's fold table."""
    named: dict[str, set[str]] = {}
    for key, terms in (("colour", COLOUR_TERMS), ("size", SIZE_TERMS)):
        for term in terms:
            if contains_phrase(text, term):
                named.setdefault(key, set()).add(term)
    for attributes in attribute_sets:
        for key, value in attributes.items():
            if contains_phrase(text, value):
                named.setdefault(key, set()).add(value)
    return named


def _rank(
    sku_id: int, score: float, attributes: dict[str, str], named: dict[str, set[str]]
) -> _Ranking:
    matched, conflicting = {}, {}
    for key, value in attributes.items():
        if key not in named:
            continue
        # "grey" named in the title also matches a SKU whose colour is "heather grey".
        if any(contains_phrase(value, wanted) for wanted in named[key]):
            matched[key] = value
        else:
            conflicting[key] = value
    adjusted = (
        score + ATTRIBUTE_MATCH_BONUS * len(matched) - ATTRIBUTE_CONFLICT_PENALTY * len(conflicting)
    )
    return _Ranking(sku_id, score, adjusted, matched, conflicting)


def listing_forbids(*, channel: Channel, sku: Sku, kind: str) -> bool:
    """Return whether the channel's listings forbid `kind` (e.g. no_substitution) for the SKU.

    A constraint without a SKU applies to every SKU on the channel.
    """
    return ListingConstraint.objects.filter(
        Q(sku=sku) | Q(sku__isnull=True), channel=channel, kind=kind
    ).exists()


def import_job_get(*, job_id) -> ImportJob | None:
    return (
        ImportJob.objects.select_related("created_by", "default_channel").filter(pk=job_id).first()
    )


def import_job_list(*, limit: int = 50) -> QuerySet[ImportJob]:
    return ImportJob.objects.select_related("created_by").order_by("-created_at")[:limit]


def import_job_earlier_with_same_file(*, job: ImportJob) -> ImportJob | None:
    """Return the latest earlier job that imported a file with the same content, if any."""
    return (
        ImportJob.objects.filter(file_sha256=job.file_sha256, created_at__lt=job.created_at)
        .order_by("-created_at")
        .first()
    )


def import_row_errors(*, job: ImportJob, limit: int | None = None) -> QuerySet[ImportRowError]:
    errors = ImportRowError.objects.filter(job=job).order_by("row_number", "id")
    return errors[:limit] if limit is not None else errors


IMPORT_ERROR_CSV_HEADER = ["row", "column", "value", "reason"]
# Spreadsheet programs run a cell that starts with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def import_row_errors_csv_rows(*, job: ImportJob) -> Iterator[list]:
    """Yield every row error of a job as CSV cells, in row order, read in chunks.

    Values come from the uploaded file, so a cell a spreadsheet would run as a formula gets a
    leading apostrophe (CSV injection).
    """
    for error in import_row_errors(job=job).iterator(chunk_size=2000):
        yield [error.row_number, error.column, _csv_safe(error.value), _csv_safe(error.reason)]


def _csv_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def import_progress_cache_key(job: ImportJob) -> str:
    # The apply phase runs in one transaction, so the job row shows nothing of it until it
    # commits. The task publishes the apply progress in the cache instead.
    return f"catalog:import:{job.pk}:applied"


def import_job_applied_rows(*, job: ImportJob) -> int:
    """Writes done so far in the apply phase."""
    if job.phase == ImportPhase.APPLYING:
        return min(cache.get(import_progress_cache_key(job), 0), job.rows_to_apply)
    return job.applied_rows


def mappings_awaited_by_unmapped_lines(
    *, mappings: list[ChannelSkuMapping]
) -> list[ChannelSkuMapping]:
    """Return the mappings whose channel and identifier match an order line without a SKU.

    This pre-filter reads the few order lines still waiting for a mapping once, instead of
    running one review-item query per new mapping.
    """
    from orders.models import OrderLine

    channel_ids = {mapping.channel_id for mapping in mappings}
    if not channel_ids:
        return []
    waiting = set()
    lines = OrderLine.objects.filter(sku__isnull=True, order__channel_id__in=channel_ids)
    for channel_id, channel_sku, variant_id in lines.values_list(
        "order__channel_id", "channel_sku", "channel_variant_id"
    ):
        waiting.update({(channel_id, channel_sku), (channel_id, variant_id)})
    return [mapping for mapping in mappings if (mapping.channel_id, mapping.external_id) in waiting]
