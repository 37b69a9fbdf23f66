"""Reads for orders."""

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import CharField, Prefetch, Q, QuerySet
from django.db.models.functions import Cast

from .models import Order, OrderEvent, OrderLine


def order_list() -> QuerySet[Order]:
    return (
        Order.objects.select_related("channel", "delivery", "carrier_service__carrier")
        .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.select_related("sku")))
        .order_by("-created_at", "-id")
    )


def order_get_with_history(*, order_id: int) -> Order | None:
    """One order with its lines, timeline (newest first) and review items."""
    return (
        Order.objects.select_related("channel", "delivery", "carrier_service__carrier")
        .prefetch_related(
            Prefetch("lines", queryset=OrderLine.objects.select_related("sku")),
            Prefetch(
                "events",
                queryset=OrderEvent.objects.select_related("actor").order_by("-created_at", "-id"),
            ),
            "review_items",
        )
        .filter(pk=order_id)
        .first()
    )


# --- Order history for auditors ----------------------------------------------------------------
# Every automated and human change to an order in one list. It merges the audit entries of the
# order, its lines, reservations, decisions and review items with the order's timeline events.
# An entry with an AI decision behind it carries the policy version, facts, confidence, reviewer
# and revert state.

# Audit target types that belong to an order's history.
HISTORY_TARGET_TYPES = ("order", "order_line", "reservation", "decision", "review_item")
# Rows read per database round trip by the date-range export.
HISTORY_EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class HistoryEntry:
    """One change in an order's history, from the audit log ("audit") or its timeline ("event")."""

    at: datetime
    source: str
    order_id: int
    action: str
    target: str
    actor_kind: str
    actor: str
    summary: str
    entry_id: int
    before: Any = None
    after: Any = None
    data: Any = None
    decision_id: int | None = None
    action_code: str = ""
    policy_version: str = ""
    verdict: str = ""
    confidence: Decimal | None = None
    model: str = ""
    facts: Any = None
    review_item_id: int | None = None
    reviewed_by: str = ""
    reviewed_at: datetime | None = None
    review_outcome: str = ""
    applied: bool = False
    reverted_by: str = ""
    reverted_at: datetime | None = None

    @property
    def revertible(self) -> bool:
        """Whether the decision behind this entry is applied and not reverted yet."""
        return self.decision_id is not None and self.applied and self.reverted_at is None


@dataclass
class _HistoryContext:
    """Rows the entries refer to, read in bulk so the query count stays constant."""

    lines: dict[int, tuple[int, int]] = field(default_factory=dict)  # pk: (order id, position)
    reservations: dict[int, int] = field(default_factory=dict)  # pk: order id
    items: dict[int, Any] = field(default_factory=dict)
    decisions: dict[int, Any] = field(default_factory=dict)
    decision_by_item: dict[int, Any] = field(default_factory=dict)

    def add_decisions(self, decisions: Iterable) -> None:
        for decision in decisions:
            self.decisions[decision.pk] = decision
            if decision.review_item_id is not None:
                self.decision_by_item[decision.review_item_id] = decision


def order_history(*, order: Order) -> list[HistoryEntry]:
    """Return every audit entry and timeline event of the order, oldest first.

    Costs five queries whatever the order's size: lines, review items, decisions, audit
    entries and events. NOTE: audit entries of lines that a channel update deleted are no
    longer found, because lines are matched by their current ids.
    """
    from guardrails.models import AuditEntry
    from inventory.models import Reservation
    from reviews.models import ReviewItem

    context = _HistoryContext()
    for pk, position in OrderLine.objects.filter(order=order).values_list("pk", "position"):
        context.lines[pk] = (order.pk, position)
    for item in ReviewItem.objects.filter(order=order).select_related("decided_by"):
        context.items[item.pk] = item
    context.add_decisions(_decisions().filter(order=order))

    reservation_ids = Reservation.objects.filter(order=order).annotate(
        target=Cast("pk", CharField())
    )
    audit = AuditEntry.objects.filter(
        Q(target_type="order", target_id=str(order.pk))
        | Q(target_type="order_line", target_id__in=[str(pk) for pk in context.lines])
        | Q(target_type="reservation", target_id__in=reservation_ids.values("target"))
        | Q(target_type="decision", target_id__in=[str(pk) for pk in context.decisions])
        | Q(target_type="review_item", target_id__in=[str(pk) for pk in context.items])
    ).order_by("created_at", "id")
    events = OrderEvent.objects.filter(order=order).select_related("actor")

    entries = [_entry_from_audit(entry, context, order_id=order.pk) for entry in audit]
    entries += [_entry_from_event(event, context) for event in events]
    return sorted(entries, key=_history_sort_key)


def order_history_between(*, start: datetime, end: datetime) -> Iterator[HistoryEntry]:
    """Yield the history entries of all orders made in [start, end), oldest first.

    Reads in chunks of HISTORY_EXPORT_CHUNK rows with a fixed number of queries per chunk, so
    memory stays flat however many entries the range has. Audit entries of review items
    without an order (unprocessable deliveries) are left out.
    """
    return heapq.merge(
        _audit_entries_between(start, end), _events_between(start, end), key=_history_sort_key
    )


def _history_sort_key(entry: HistoryEntry) -> tuple:
    return (entry.at, entry.source, entry.entry_id)


def _decisions() -> QuerySet:
    from guardrails.models import Decision

    return Decision.objects.select_related(
        "action",
        "policy_version__policy__action",
        "policy_version__policy__channel",
        "reverted_by",
        "labelled_by",
        "review_item__decided_by",
    )


def _audit_entries_between(start: datetime, end: datetime) -> Iterator[HistoryEntry]:
    from guardrails.models import AuditEntry

    rows = (
        AuditEntry.objects.filter(
            created_at__gte=start, created_at__lt=end, target_type__in=HISTORY_TARGET_TYPES
        )
        .order_by("created_at", "id")
        .iterator(chunk_size=HISTORY_EXPORT_CHUNK)
    )
    for chunk in _chunks(rows, HISTORY_EXPORT_CHUNK):
        context = _context_for_audit(chunk)
        for entry in chunk:
            order_id = _audit_order_id(entry, context)
            if order_id is not None:
                yield _entry_from_audit(entry, context, order_id=order_id)


def _events_between(start: datetime, end: datetime) -> Iterator[HistoryEntry]:
    rows = (
        OrderEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .select_related("actor")
        .order_by("created_at", "id")
        .iterator(chunk_size=HISTORY_EXPORT_CHUNK)
    )
    for chunk in _chunks(rows, HISTORY_EXPORT_CHUNK):
        item_ids = {_int(event.data.get("review_item")) for event in chunk} - {None}
        decision_ids = {_int(event.data.get("decision")) for event in chunk} - {None}
        context = _HistoryContext()
        context.add_decisions(
            _decisions().filter(Q(pk__in=decision_ids) | Q(review_item_id__in=item_ids))
        )
        for event in chunk:
            yield _entry_from_event(event, context)


def _context_for_audit(chunk: list) -> _HistoryContext:
    from inventory.models import Reservation
    from reviews.models import ReviewItem

    ids: dict[str, set[int]] = {target: set() for target in HISTORY_TARGET_TYPES}
    for entry in chunk:
        pk = _int(entry.target_id)
        if pk is not None:
            ids[entry.target_type].add(pk)

    context = _HistoryContext()
    lines = OrderLine.objects.filter(pk__in=ids["order_line"])
    for pk, order_id, position in lines.values_list("pk", "order_id", "position"):
        context.lines[pk] = (order_id, position)
    reservations = Reservation.objects.filter(pk__in=ids["reservation"])
    context.reservations = dict(reservations.values_list("pk", "order_id"))
    items = ReviewItem.objects.filter(pk__in=ids["review_item"]).select_related("decided_by")
    context.items = {item.pk: item for item in items}
    context.add_decisions(
        _decisions().filter(Q(pk__in=ids["decision"]) | Q(review_item_id__in=ids["review_item"]))
    )
    return context


def _audit_order_id(entry, context: _HistoryContext) -> int | None:
    pk = _int(entry.target_id)
    if entry.target_type == "order":
        return pk
    if entry.target_type == "order_line":
        return context.lines.get(pk, (None, None))[0]
    if entry.target_type == "reservation":
        return context.reservations.get(pk)
    if entry.target_type == "decision":
        decision = context.decisions.get(pk)
        return decision.order_id if decision else None
    item = context.items.get(pk)
    return item.order_id if item else None


def _entry_from_audit(entry, context: _HistoryContext, *, order_id: int) -> HistoryEntry:
    pk = _int(entry.target_id)
    decision = None
    if entry.target_type == "decision":
        decision = context.decisions.get(pk)
    elif entry.target_type == "review_item":
        decision = context.decision_by_item.get(pk)
    item = context.items.get(pk) if entry.target_type == "review_item" else None
    actor_kind = entry.actor_kind
    if entry.actor_id is None and entry.actor_label.startswith("ai:"):
        actor_kind = "ai"
    return HistoryEntry(
        at=entry.created_at,
        source="audit",
        order_id=order_id,
        action=entry.action,
        target=_target_label(entry.target_type, pk, context),
        actor_kind=actor_kind,
        actor=entry.actor_label,
        summary=entry.reason,
        entry_id=entry.pk,
        before=entry.before,
        after=entry.after,
        **_review_fields(item) | _decision_fields(decision),
    )


def _entry_from_event(event: OrderEvent, context: _HistoryContext) -> HistoryEntry:
    data = event.data or {}
    decision = context.decisions.get(_int(data.get("decision")))
    item_id = _int(data.get("review_item"))
    if decision is None and item_id is not None:
        decision = context.decision_by_item.get(item_id)
    return HistoryEntry(
        at=event.created_at,
        source="event",
        order_id=event.order_id,
        action=event.kind,
        target="timeline",
        actor_kind=event.actor_kind,
        actor=event.actor.get_username() if event.actor else event.get_actor_kind_display(),
        summary=event.message,
        entry_id=event.pk,
        data=data,
        **_review_fields(context.items.get(item_id)) | _decision_fields(decision),
    )


def _target_label(target_type: str, pk: int | None, context: _HistoryContext) -> str:
    if target_type == "order":
        return "order"
    if target_type == "order_line":
        line = context.lines.get(pk)
        return f"line {line[1]}" if line else f"order line #{pk}"
    return f"{target_type.replace('_', ' ')} #{pk}"


def _review_fields(item) -> dict:
    if item is None:
        return {}
    return {
        "review_item_id": item.pk,
        "reviewed_by": item.decided_by.get_username() if item.decided_by else "",
        "reviewed_at": item.decided_at,
    }


def _decision_fields(decision) -> dict:
    """The context of the AI decision behind an entry: policy, facts, confidence, reviewer."""
    if decision is None:
        return {}
    fields = {
        "decision_id": decision.pk,
        "action_code": decision.action.code,
        "policy_version": str(decision.policy_version) if decision.policy_version else "",
        "verdict": decision.verdict,
        "confidence": decision.confidence,
        "model": f"{decision.model_name}/{decision.model_version}",
        "facts": decision.facts,
        "review_outcome": decision.review_outcome,
        "applied": decision.applied_at is not None,
        "reverted_by": decision.reverted_by.get_username() if decision.reverted_by else "",
        "reverted_at": decision.reverted_at,
    }
    item = decision.review_item
    if item is not None and item.decided_at is not None:
        fields["review_item_id"] = item.pk
        fields["reviewed_by"] = item.decided_by.get_username() if item.decided_by else "the system"
        fields["reviewed_at"] = item.decided_at
    elif decision.labelled_by is not None:
        fields["reviewed_by"] = decision.labelled_by.get_username()
        fields["reviewed_at"] = decision.labelled_at
    return fields


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
