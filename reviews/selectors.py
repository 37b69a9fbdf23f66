"""Reads for the review queue: the open items, the per-kind summary and one item's context.

Every read here costs a fixed number of queries whatever the size of the queue or the order,
so the queue and item pages stay fast on large data.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.db.models import Count, Min, Q, QuerySet
from django.http import QueryDict
from django.utils import timezone
from redis.exceptions import RedisError

from .filters import DEFAULT_SORT, SORT_ORDERINGS, ReviewItemQueueFilter
from .models import ReviewItem, ReviewKind, ReviewStatus

# How many decided items of the same kind the "similar past decisions" counts look at.
SIMILAR_LIMIT = 20
EVENTS_LIMIT = 5
# Cache key of the per-kind counts. Raise the number when the cached value's shape changes.
SUMMARY_CACHE_KEY = "reviews:queue-summary:1"
# Exceptions of the Redis cache when Redis is down or times out. The pages then count afresh.
CACHE_ERRORS = (RedisError, OSError)
CACHE_ERROR_LOG_INTERVAL_SECONDS = 60

logger = logging.getLogger(__name__)
_cache_error_logged_at = -CACHE_ERROR_LOG_INTERVAL_SECONDS


@dataclass(frozen=True)
class KindSummary:
    kind: str
    label: str
    open: int
    oldest_at: datetime | None
    breached: int


@dataclass(frozen=True)
class QueueSummary:
    """The per-kind counts of the queue pages, as counted at `as_of`.

    `cached` is true when the counts may be older than the request: the pages then show their
    time (see review_queue_summary_cached). Iterating yields the KindSummary rows.
    """

    kinds: list[KindSummary]
    as_of: datetime
    cached: bool

    def __iter__(self):
        return iter(self.kinds)

    @property
    def open(self) -> int:
        return sum(row.open for row in self.kinds)

    @property
    def max_age_seconds(self) -> int:
        return settings.OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS

    def open_of(self, kind: str) -> int:
        return next((row.open for row in self.kinds if row.kind == kind), 0)


@dataclass(frozen=True)
class DiffRow:
    """One field of the proposal: the source value, the proposed value and whether they differ."""

    field: str
    before: Any
    after: Any
    changed: bool


@dataclass(frozen=True)
class WhyHere:
    """Why the item is in the queue: the rules that fired and the confidence against the limit.

    For an address item without an AI decision the confidence is the address score and the
    threshold the minimum score. `threshold_source` says where the limit came from, e.g.
    "policy" or "band 'Over 500'" or "address score minimum".
    """

    reason: str
    rules: list[dict]
    confidence: Decimal | None
    threshold: Decimal | None
    threshold_source: str
    model_name: str = ""
    model_version: str = ""

    @property
    def below_threshold(self) -> bool | None:
        if self.confidence is None or self.threshold is None:
            return None
        return self.confidence <= self.threshold


@dataclass(frozen=True)
class SimilarOutcomes:
    """Outcomes of the last decided items of the same kind and action (and model)."""

    accepted: int = 0
    rejected: int = 0
    revised: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + self.revised


@dataclass(frozen=True)
class LineStock:
    """An order line with its SKU and the stock summed over the active locations.

    `available`, `on_hand` and `as_of` are None for a line without a SKU or a SKU that is not
    stock-tracked; `is_stale` is true when the oldest count is older than the stock TTL.
    """

    position: int
    title: str
    quantity: int
    identifier: str
    sku: str | None
    tracked: bool
    on_hand: int | None
    available: int | None
    as_of: datetime | None
    is_stale: bool


@dataclass(frozen=True)
class PolicyInfo:
    """The policy behind the item's deadline and approver."""

    label: str
    approver: str
    sla_minutes: int | None
    on_breach: str
    escalation_group: str
    due_at: datetime | None


@dataclass(frozen=True)
class ItemContext:
    item: ReviewItem
    diff: list[DiffRow]
    why: WhyHere
    similar: SimilarOutcomes
    events: list = field(default_factory=list)
    lines: list[LineStock] = field(default_factory=list)
    stale: bool = False
    policy: PolicyInfo | None = None
    decision: Any = None


# --- The queue ---------------------------------------------------------------------------


def review_items_base() -> QuerySet[ReviewItem]:
    """Review items with everything a queue row or an item page shows joined in."""
    return ReviewItem.objects.select_related(
        "order",
        "order__channel",
        "order_line",
        "order_line__sku",
        "delivery__channel",
        "assignee",
        "decided_by",
        "ai_decision",
    )


def review_queue_open(*, kind: str | None = None) -> QuerySet[ReviewItem]:
    """Open items, oldest first, with everything the queue page shows joined in."""
    items = review_items_base().filter(status=ReviewStatus.OPEN).order_by("created_at", "id")
    if kind in ReviewKind.values:
        items = items.filter(kind=kind)
    return items


def review_open_count(*, kind: str | None = None) -> int:
    return review_queue_open(kind=kind).count()


def review_queue_items(
    *, params: QueryDict, user
) -> tuple[ReviewItemQueueFilter, QuerySet[ReviewItem]]:
    """Return the filtered, sorted open items and the FilterSet, whose form contains any errors.

    Invalid parameters never raise: the form reports them and the whole queue is returned
    in the default order.
    """
    base = review_queue_open()
    filterset = ReviewItemQueueFilter(params, queryset=base, user=user)
    if not filterset.is_valid():
        return filterset, base.order_by(*SORT_ORDERINGS[DEFAULT_SORT])
    return filterset, filterset.qs


def review_queue_page(
    items: QuerySet[ReviewItem], *, number: Any, per_page: int, count: int | None = None
) -> Page:
    """Return one page of `items` in two queries: the page's ids, then their joined rows.

    Only the narrow id query sorts and skips, so on PostgreSQL it walks a partial index of
    open items (ReviewItem.Meta.indexes) and stops after one page. The joins and the wide JSON
    columns are read for the page's rows only. An invalid page number gives the nearest page,
    as Paginator.get_page does. Without `count` (the number of items, when the caller knows
    it), a COUNT query comes first.

    A `count` from cached counts may be a few seconds old. The page still reads a full page of
    ids at its offset, and a page beyond the real end is read again with a fresh COUNT, so
    a stale count never shows an empty page while items exist.
    """
    ids_query = items.values_list("pk", flat=True)
    page = _page_of_ids(ids_query, number=number, per_page=per_page, count=count)
    if count is not None and not page.object_list and page.number > 1:
        page = _page_of_ids(ids_query, number=number, per_page=per_page, count=None)
    rows = review_items_base().order_by().in_bulk(page.object_list)
    # An item deleted between the two queries is left out of the page.
    page.object_list = [rows[pk] for pk in page.object_list if pk in rows]
    return page


def _page_of_ids(ids_query: QuerySet, *, number: Any, per_page: int, count: int | None) -> Page:
    paginator = Paginator(ids_query, per_page)
    if count is not None:
        paginator.count = count
    page = paginator.get_page(number)
    # Paginator cuts the last page at `count`, so a stale count would leave items out. A full
    # slice keeps them, and with an exact count both slices are the same.
    offset = (page.number - 1) * per_page
    page.object_list = list(ids_query[offset : offset + per_page])
    return page


def review_queue_summary(*, now: datetime | None = None) -> list[KindSummary]:
    """Per kind: open items, the oldest one's opening time and the items past their deadline.

    Every kind is listed, in the order of ReviewKind, with zeros when nothing is open.
    """
    now = now or timezone.now()
    rows = {
        row["kind"]: row
        for row in ReviewItem.objects.filter(status=ReviewStatus.OPEN)
        .values("kind")
        .annotate(
            open=Count("id"),
            oldest_at=Min("created_at"),
            breached=Count("id", filter=Q(due_at__lt=now)),
        )
        .order_by()
    }
    return [
        KindSummary(
            kind=kind,
            label=label,
            open=rows.get(kind, {}).get("open", 0),
            oldest_at=rows.get(kind, {}).get("oldest_at"),
            breached=rows.get(kind, {}).get("breached", 0),
        )
        for kind, label in ReviewKind.choices
    ]


def review_queue_summary_cached(*, fresh: bool = False) -> QueueSummary:
    """Return the per-kind counts, from the cache when the queue is large.

    Counting reads one index entry per open item (about 40 ms at 100,000 open items on the
    bench machine of docs/performance.md). Once OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN items are
    open, the counts are kept for OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS and the pages show
    their time. Smaller queues are counted on every request. `fresh` counts afresh and
    refreshes the cache, for the counts shown right after a decision.

    NOTE: only writes through reviews.services clear the cache (review_queue_summary_forget).
    Items opened by ingestion or the decisions API, and deadlines passing, show up in cached
    counts only when the cache expires. With the in-memory cache (no REDIS_URL) each process
    keeps its own counts, so a clear reaches only the process that made the decision.
    """
    max_age = settings.OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS
    if max_age > 0 and not fresh:
        hit = _summary_cache_call(cache.get, SUMMARY_CACHE_KEY)
        if hit:
            as_of, kinds = hit
            return QueueSummary(kinds=kinds, as_of=as_of, cached=True)

    now = timezone.now()
    kinds = review_queue_summary(now=now)
    summary = QueueSummary(kinds=kinds, as_of=now, cached=False)
    large = max_age > 0 and summary.open >= settings.OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN
    if large and _summary_cache_call(cache.set, SUMMARY_CACHE_KEY, (now, kinds), max_age) is None:
        summary = QueueSummary(kinds=kinds, as_of=now, cached=True)
    return summary


def review_queue_summary_forget() -> None:
    """Drop the cached per-kind counts, so the next page counts afresh.

    Register it with transaction.on_commit in a write that opens or closes review items. A
    cache that is down is logged, not raised, because the write has already committed.
    """
    _summary_cache_call(cache.delete, SUMMARY_CACHE_KEY)


def _summary_cache_call(method, *args) -> Any:
    """Call a cache method; return False when the cache fails, and log that once a minute."""
    global _cache_error_logged_at
    try:
        return method(*args)
    except CACHE_ERRORS as error:
        now = time.monotonic()
        if now - _cache_error_logged_at >= CACHE_ERROR_LOG_INTERVAL_SECONDS:
            _cache_error_logged_at = now
            logger.warning(
                "review queue counts not cached: cache unavailable",
                extra={"error": f"{type(error).__name__}: {error}"},
            )
        return False


def review_item_for_page(*, item_id: int) -> ReviewItem | None:
    """Return one item, open or decided, with what its page shows joined in; None when unknown."""
    return review_items_base().filter(pk=item_id).first()


# --- One item's context --------------------------------------------------------------------


def review_item_context(*, item: ReviewItem) -> ItemContext:
    """Everything the item page shows beside the item, in a fixed number of queries.

    Pass an item read with `review_item_for_page` (or `review_items_base`), so the order,
    the line and the AI decision are already joined in.
    """
    decision = _decision_for(item)
    order = item.order
    return ItemContext(
        item=item,
        diff=review_item_diff(item),
        why=_why_here(item, decision),
        similar=_similar_outcomes(item, decision),
        events=_last_events(order) if order is not None else [],
        lines=_lines_with_stock(order) if order is not None else [],
        stale=review_item_is_stale(item),
        policy=_policy_info(item, decision),
        decision=decision,
    )


def review_item_is_stale(item: ReviewItem) -> bool:
    """True when the order changed after the item opened (its version went up)."""
    if item.order is None or item.order_version is None:
        return False
    return item.order.version > item.order_version


def review_item_diff(item: ReviewItem) -> list[DiffRow]:
    """Compare the proposal with its source field by field; nested objects become "a.b" fields."""
    proposal = item.proposal or {}
    if "before" in proposal and "after" in proposal:
        return _diff_rows(_flatten(proposal["before"]), _flatten(proposal["after"]))
    if item.kind == ReviewKind.ADDRESS and proposal.get("normalized") is not None:
        before = (item.source_data or {}).get("shipping_address") or {}
        return _diff_rows(
            _flatten({"shipping_address": before}),
            _flatten({"shipping_address": proposal["normalized"]}),
        )
    if item.kind == ReviewKind.UNMAPPED_SKU:
        candidates = proposal.get("candidates") or []
        line = item.order_line
        return [
            DiffRow(
                field="sku",
                before=line.identifier_label if line is not None else None,
                after=candidates[0].get("code") or candidates[0].get("sku") if candidates else None,
                changed=bool(candidates),
            )
        ]
    if item.kind == ReviewKind.CARRIER_CODE:
        suggested = proposal.get("suggested_service") or proposal.get("suggested_service_id")
        return [
            DiffRow(
                field="carrier_service",
                before=proposal.get("code"),
                after=suggested,
                changed=suggested is not None,
            )
        ]
    return []


def _diff_rows(before: dict, after: dict) -> list[DiffRow]:
    # PostgreSQL's jsonb does not keep key order, so the rows get a fixed one.
    fields = sorted({*before, *after}, key=_diff_field_order)
    return [
        DiffRow(
            field=name,
            before=before.get(name),
            after=after.get(name),
            changed=before.get(name) != after.get(name),
        )
        for name in fields
    ]


def _diff_field_order(name: str) -> tuple:
    """Address fields in the order a label shows them, everything else alphabetically."""
    from orders.addresses import COMPARISON_FIELDS

    prefix, _, last = name.rpartition(".")
    rank = COMPARISON_FIELDS.index(last) if last in COMPARISON_FIELDS else len(COMPARISON_FIELDS)
    return prefix, rank, name


def _flatten(value: Any, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix or "value": value}
    rows: dict = {}
    for key, inner in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(inner, dict) and inner:
            rows.update(_flatten(inner, name))
        else:
            rows[name] = inner
    return rows


def _decision_for(item: ReviewItem):
    """The item's AI decision with its policy version, or None (one query at most)."""
    from guardrails.models import Decision

    return (
        Decision.objects.select_related(
            "action",
            "policy_version__policy__action",
            "policy_version__policy__channel",
            "policy_version__approver_group",
            "policy_version__escalation_group",
        )
        .filter(review_item_id=item.pk)
        .first()
    )


def _why_here(item: ReviewItem, decision) -> WhyHere:
    if decision is None:
        return _why_hygiene(item)

    fired = [reason for reason in decision.reasons if reason.get("outcome") in ("fail", "block")]
    threshold, source = _decision_threshold(decision)
    return WhyHere(
        reason=item.reason,
        rules=fired,
        confidence=decision.confidence,
        threshold=threshold,
        threshold_source=source,
        model_name=decision.model_name,
        model_version=decision.model_version,
    )


def _why_hygiene(item: ReviewItem) -> WhyHere:
    proposal = item.proposal or {}
    score, threshold = _decimal(proposal.get("score")), _decimal(proposal.get("threshold"))
    rules = [
        {"rule": reason.get("code", ""), "outcome": "fail", "message": reason.get("message", "")}
        for reason in proposal.get("reasons") or []
        if isinstance(reason, dict)
    ]
    return WhyHere(
        reason=item.reason,
        rules=rules,
        confidence=score if score is not None else item.confidence,
        threshold=threshold,
        threshold_source="address score minimum" if threshold is not None else "",
    )


def _decision_threshold(decision) -> tuple[Decimal | None, str]:
    """Return the confidence limit that judged the decision: the band's, else the version's."""
    for reason in decision.reasons:
        if reason.get("rule") == "band":
            data = reason.get("data") or {}
            value = _decimal(data.get("confidence_above"))
            if value is not None:
                return value, f"band {data.get('name', '')!r}"
    version = decision.policy_version
    if version is not None and version.confidence_above is not None:
        return version.confidence_above, "policy"
    return None, ""


def _similar_outcomes(item: ReviewItem, decision) -> SimilarOutcomes:
    # Known-answer items repeat a few cases many times, so they would skew the counts.
    decided = ReviewItem.objects.filter(
        kind=item.kind,
        action_code=item.action_code,
        status__in=[ReviewStatus.ACCEPTED, ReviewStatus.REJECTED],
        known_answer__isnull=True,
    ).exclude(pk=item.pk)
    if decision is not None:
        decided = decided.filter(ai_decision__model_name=decision.model_name)
    rows = decided.order_by("-decided_at", "-id").values_list("status", "revision")[:SIMILAR_LIMIT]
    accepted = rejected = revised = 0
    for status, revision in rows:
        if status == ReviewStatus.REJECTED:
            rejected += 1
        elif revision is not None:
            revised += 1
        else:
            accepted += 1
    return SimilarOutcomes(accepted=accepted, rejected=rejected, revised=revised)


def _last_events(order) -> list:
    from orders.models import OrderEvent

    return list(
        OrderEvent.objects.filter(order=order)
        .select_related("actor")
        .order_by("-created_at", "-id")[:EVENTS_LIMIT]
    )


def _lines_with_stock(order) -> list[LineStock]:
    """Return the order's lines with stock summed over active locations, in two queries."""
    from inventory.models import StockLevel
    from inventory.selectors import snapshot_is_stale

    lines = list(order.lines.select_related("sku").order_by("position"))
    sku_ids = {line.sku_id for line in lines if line.sku_id}
    levels_by_sku: dict[int, list] = {}
    if sku_ids:
        for level in StockLevel.objects.filter(sku_id__in=sku_ids, location__is_active=True):
            levels_by_sku.setdefault(level.sku_id, []).append(level)

    now = timezone.now()
    rows = []
    for line in lines:
        levels = levels_by_sku.get(line.sku_id, [])
        counted = [level.counted_at for level in levels]
        # A sum is only as fresh as its oldest part, and a level never counted has no time.
        as_of = min(counted) if counted and None not in counted else None
        on_hand = sum(level.on_hand for level in levels)
        reserved = sum(level.reserved for level in levels)
        rows.append(
            LineStock(
                position=line.position,
                title=line.title,
                quantity=line.quantity,
                identifier=line.identifier_label,
                sku=line.sku.code if line.sku_id else None,
                tracked=bool(levels),
                on_hand=on_hand if levels else None,
                available=on_hand - reserved if levels else None,
                as_of=as_of,
                is_stale=bool(levels) and snapshot_is_stale(as_of, now=now),
            )
        )
    return rows


def _policy_info(item: ReviewItem, decision) -> PolicyInfo:
    from .sla import review_sla_for, sla_from_version

    if decision is not None and decision.policy_version is not None:
        sla = sla_from_version(decision.policy_version)
    else:
        channel = item.order.channel if item.order is not None else None
        sla = review_sla_for(kind=item.kind, action_code=item.action_code, channel=channel)
    return PolicyInfo(
        label=sla.policy or "default review deadline",
        approver=item.approver_group,
        sla_minutes=item.sla_minutes,
        on_breach=item.on_sla_breach,
        escalation_group=item.escalated_to or sla.escalation_group,
        due_at=item.due_at,
    )


def _decimal(value: Any) -> Decimal | None:
    try:
        result = Decimal(str(value)) if value is not None else None
    except (InvalidOperation, ValueError):
        return None
    return result if result is not None and result.is_finite() else None
