"""Known-answer items: review cases with a settled answer, seeded into queues to check reviewers.

A manager turns a decided item into a `KnownAnswer` case with `known_answer_from_item`; the
copy loses the customer's personal data (`known_answer_scrub`), because every reviewer may
see it. When a real item of the same kind opens, `known_answer_seed_maybe` adds, with
probability `GuardrailSettings.known_answer_rate`, one item copied from a random active case.
The seeded item has no order and looks like any other item of its queue. Deciding it runs no
handler and changes no order: `known_answer_item_decide` closes it, stores whether the
reviewer gave the known answer (`known_answer_correct`, a revision counts as a rejection) and
the decided card shows the answer and its explanation.

Known-answer items stay out of service levels, queue and review KPIs, disagreement rates and
audit sampling, so they measure reviewers without moving any other figure.
"""

import contextlib
import logging
import random
import re
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from guardrails.services import audit_record
from omsguard.money import money_format
from orders.masking import ADDRESS_HINTS, EMAIL, PERSON_CONTAINERS, PERSONAL_KEYS, ROW_VALUE_KEYS

from .models import KnownAnswer, KnownAnswerChoice, ReviewItem, ReviewKind, ReviewStatus

logger = logging.getLogger(__name__)

ADD_PERMISSION = "reviews.add_knownanswer"
SEED_LABEL = "known-answer seeding"
# Kinds a case can be made of and seeded into: AI proposals, and address checks with a
# proposed correction. Routing and AI-action items qualify only when an AI decision opened
# them (their proposal names the decision).
KNOWN_ANSWER_KINDS = (
    ReviewKind.AI_ACTION,
    ReviewKind.SUBSTITUTION,
    ReviewKind.ADDRESS,
    ReviewKind.ROUTING,
)
AI_ONLY_KINDS = (ReviewKind.AI_ACTION, ReviewKind.ROUTING)
ANSWER_REVISE = "revise"


# --- Removing personal data from a case --------------------------------------------------------

# Keys whose value is personal wherever it sits, by the placeholder that replaces it.
_CATEGORY_BY_KEY = {
    **{key: "street" for key in PERSONAL_KEYS if "address" in key or "street" in key},
    **{key: "name" for key in PERSONAL_KEYS if "name" in key},
    "recipient": "name",
    **{key: "email" for key in PERSONAL_KEYS if "email" in key},
    **{key: "phone" for key in PERSONAL_KEYS if "phone" in key},
    "mobile": "phone",
}
# Keys that are personal only inside an address or customer record; elsewhere "name" names
# a model or a band.
_CATEGORY_IN_RECORD = {"name": "name", "company": "company", "city": "city", "city_area": "city"}
POSTCODE_KEYS = frozenset({"zip", "postal_code", "postcode"})
POSTCODE_PREFIX_LENGTH = 3
# Free-text fields in which phone numbers are looked for. Elsewhere a run of digits is far
# more often an id or an amount than a phone number.
FREE_TEXT_KEYS = frozenset({"reason", "rationale", "message", "note", "description"})
PHONE = re.compile(r"(?<![\w-])\+?\d(?:[\s().-]?\d){8,14}(?![\w-])")
MIN_REPLACED_LENGTH = 2
# Keys whose whole-number value is the id of one of OMS Guard's records, wherever they sit.
RECORD_ID_KEYS = frozenset(
    {
        "decision",
        "decision_id",
        "order",
        "order_id",
        "order_line",
        "order_line_id",
        "review_item",
        "review_item_id",
    }
)
# Keys naming the original order as the channel and the order search know it.
ORDER_LABEL_KEYS = frozenset({"channel_order_id", "order_number"})


class _Scrubber:
    """Replaces personal values with numbered placeholders, the same value by the same one.

    Numbering keeps a diff readable: a street line the AI changed shows as "[street 1]" before
    and "[street 2]" after, an unchanged one as "[street 1]" on both sides.
    """

    def __init__(self) -> None:
        self.replacements: dict[str, str] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def structured(self, value: Any, *, container: str = "", record: bool = False) -> Any:
        if isinstance(value, dict):
            return self._dict(value, container=container, record=record)
        if isinstance(value, list | tuple):
            return [self.structured(item, container=container, record=record) for item in value]
        return value

    def _dict(self, data: dict, *, container: str, record: bool) -> dict:
        keys = {str(key).lower() for key in data}
        in_record = record or container in PERSON_CONTAINERS or bool(ADDRESS_HINTS & keys)
        row_field = str(data.get("field", "")).lower()
        scrubbed = {}
        for key, item in data.items():
            name = str(key).lower()
            if name in ROW_VALUE_KEYS and self._is_personal_field(row_field):
                # A comparison row: "received" and "suggested" hold the named field's values.
                scrubbed[key] = self._leaf(row_field, item, in_record=True)
            elif self._category(name, in_record) or name in POSTCODE_KEYS:
                scrubbed[key] = self._leaf(name, item, in_record=in_record)
            elif name == "customer":
                scrubbed[key] = self._every_leaf(item, "customer")
            else:
                scrubbed[key] = self.structured(item, container=name, record=False)
        return scrubbed

    def _is_personal_field(self, field: str) -> bool:
        return bool(field) and (bool(self._category(field, True)) or field in POSTCODE_KEYS)

    def _category(self, key: str, in_record: bool) -> str:
        if key in _CATEGORY_BY_KEY:
            return _CATEGORY_BY_KEY[key]
        if "street" in key:
            # Parsed street lines too, such as the parts a street parser tags.
            return "street"
        return _CATEGORY_IN_RECORD.get(key, "") if in_record else ""

    def _leaf(self, key: str, value: Any, *, in_record: bool) -> Any:
        category = self._category(key, in_record) or "personal data"
        if isinstance(value, dict | list | tuple):
            return self._every_leaf(value, category)
        if value in (None, ""):
            return value
        if key in POSTCODE_KEYS:
            return self._remember(str(value), postcode_prefix(str(value)))
        return self._placeholder(category, str(value))

    def _every_leaf(self, value: Any, category: str) -> Any:
        """Replace every value of a personal structure, such as a customer record."""
        if isinstance(value, dict):
            return {key: self._every_leaf(item, category) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._every_leaf(item, category) for item in value]
        if value in (None, ""):
            return value
        return self._placeholder(category, str(value))

    def _placeholder(self, category: str, original: str) -> str:
        if original in self.replacements:
            return self.replacements[original]
        self._counts[category] += 1
        return self._remember(original, f"[{category} {self._counts[category]}]")

    def _remember(self, original: str, replacement: str) -> str:
        if len(original.strip()) >= MIN_REPLACED_LENGTH:
            self.replacements.setdefault(original, replacement)
        return replacement

    def text(self, value: Any, *, key: str = "") -> Any:
        """Replace remembered values, emails and (in free text) phone numbers inside strings."""
        if isinstance(value, dict):
            return {name: self.text(item, key=str(name).lower()) for name, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.text(item, key=key) for item in value]
        if not isinstance(value, str):
            return value
        # Longest first, so "12 Birch Lane" goes before a "Birch" that is part of it.
        for original in sorted(self.replacements, key=len, reverse=True):
            replacement = self.replacements[original]
            pattern = rf"(?<!\w){re.escape(original)}(?!\w)"
            value = re.sub(pattern, lambda _match, text=replacement: text, value)
        value = EMAIL.sub(lambda match: self._placeholder("email", match.group(0)), value)
        if key in FREE_TEXT_KEYS:
            value = PHONE.sub(lambda match: self._placeholder("phone", match.group(0)), value)
        return value


def postcode_prefix(postcode: str) -> str:
    """Keep the first three characters of a postcode, e.g. "78701" as "787**"."""
    compact = re.sub(r"\s", "", postcode)
    return compact[:POSTCODE_PREFIX_LENGTH] + "**"


def known_answer_scrub(*, reason: str, source_data: Any, proposal: Any) -> tuple[str, Any, Any]:
    """Return copies of an item's reason, source data and proposal without personal data.

    Removed: names, companies, emails, phone numbers, street lines, cities and customer
    records, wherever they sit in the nested data. Each distinct value becomes a numbered
    placeholder such as "[name 1]", also where it appears inside free text. Postcodes keep
    their first three characters; countries, provinces and everything else stay, because a
    reviewer needs them to judge an address or a substitution. Emails are replaced inside any
    text, phone-like numbers inside free-text fields (reasons, rationales, messages).

    Pointers to the original records go too: the order's id, number and channel order id, and
    any order, order line, decision or review item id. A proposal's "decision" becomes true.
    """
    is_ai_proposal = isinstance(proposal, dict) and bool(proposal.get("decision"))
    scrubber = _Scrubber()
    source_data = _copied_total_format(_record_ids_drop(scrubber.structured(source_data)))
    proposal = _record_ids_drop(scrubber.structured(proposal))
    if is_ai_proposal:
        # Templates and the revise form read a truthy "decision" as "an AI proposal", so it
        # stays, as true in place of the id.
        proposal = {"decision": True, **proposal}
    return (
        scrubber.text(reason, key="reason"),
        scrubber.text(source_data),
        scrubber.text(proposal),
    )


def _record_ids_drop(value: Any, *, key: str = "") -> Any:
    """Remove the ids and labels of the original order, its line, decision and review item.

    A reviewer could otherwise look up the original records and see how they were decided.
    """
    if isinstance(value, list | tuple):
        return [_record_ids_drop(item, key=key) for item in value]
    if not isinstance(value, dict):
        return value
    without_ids = {}
    for name, item in value.items():
        lowered = str(name).lower()
        if lowered in ORDER_LABEL_KEYS or (key == "order" and lowered == "id"):
            continue
        if lowered in RECORD_ID_KEYS and _is_id(item):
            continue
        without_ids[name] = _record_ids_drop(item, key=lowered)
    return without_ids


def _copied_total_format(source_data: Any) -> Any:
    """Round the copied order total to its currency's digits, as a real item's card shows it.

    The order summary stores the total unrounded ("24.990"), and a template cannot round text.
    """
    order = source_data.get("order") if isinstance(source_data, dict) else None
    if not isinstance(order, dict) or not order.get("total") or not order.get("currency"):
        return source_data
    # A total that is not a number, or too large to round, stays as copied.
    with contextlib.suppress(InvalidOperation):
        order["total"] = money_format(Decimal(str(order["total"])), str(order["currency"]))
    return source_data


def _is_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


# --- Making a case from a decided item ---------------------------------------------------------


def known_answer_from_item(
    *,
    review_item_id: int,
    user: AbstractBaseUser,
    expected: str | None = None,
    explanation: str,
) -> KnownAnswer:
    """Copy a decided item, without personal data, into an active known-answer case.

    `expected` defaults to the item's decided outcome: accepted as proposed is "accept",
    rejected or revised is "reject". Raises ReviewForbidden without the add permission,
    ReviewNotFound for an unknown item and ReviewError (`not_decided`, `unsupported_kind`,
    `no_proposal`, `known_answer_item`, `invalid_expected`, `explanation_missing`) naming
    the field at fault.
    """
    from .services import ReviewForbidden

    if not user.has_perm(ADD_PERMISSION):
        raise ReviewForbidden("forbidden", "You do not have permission to add known answers.")
    item = known_answer_source_get(review_item_id=review_item_id)
    expected = known_answer_expected_check(item=item, expected=expected)
    explanation = known_answer_explanation_check(explanation)
    reason, source_data, proposal = known_answer_scrub(
        reason=item.reason, source_data=item.source_data, proposal=item.proposal
    )

    with transaction.atomic():
        case = KnownAnswer.objects.create(
            kind=item.kind,
            source_item=item,
            reason=reason,
            source_data=source_data,
            proposal=proposal,
            action_code=item.action_code,
            confidence=item.confidence,
            expected=expected,
            explanation=explanation,
            created_by=user,
        )
        audit_record(
            action="known_answer.created",
            target_type="known_answer",
            target_id=case.pk,
            actor=user,
            reason=f"From review item #{item.pk}: {explanation}"[:2000],
            after={"kind": case.kind, "action_code": case.action_code, "expected": expected},
        )
    logger.info(
        "known answer created",
        extra={"known_answer": case.pk, "review_item": item.pk, "kind": case.kind},
    )
    return case


def known_answer_source_get(*, review_item_id: int) -> ReviewItem:
    """Return the decided item a case may be copied from; raise ReviewError naming why not."""
    from .services import ReviewError, ReviewNotFound

    item = ReviewItem.objects.filter(pk=review_item_id).first()
    if item is None:
        raise ReviewNotFound(
            "not_found", f"Review item #{review_item_id} does not exist.", field="review_item"
        )
    if item.status not in (ReviewStatus.ACCEPTED, ReviewStatus.REJECTED) or not item.decided_by_id:
        raise ReviewError(
            "not_decided",
            f"Review item #{item.pk} is {item.get_status_display().lower()}; only an item a "
            "person accepted, revised or rejected can become a known answer.",
            field="review_item",
        )
    if item.known_answer_id is not None:
        raise ReviewError(
            "known_answer_item",
            f"Review item #{item.pk} is itself a known-answer item; use its case instead.",
            field="review_item",
        )
    kinds = ", ".join(ReviewKind(kind).label.lower() for kind in KNOWN_ANSWER_KINDS)
    is_ai = bool((item.proposal or {}).get("decision"))
    if item.kind not in KNOWN_ANSWER_KINDS or (item.kind in AI_ONLY_KINDS and not is_ai):
        raise ReviewError(
            "unsupported_kind",
            f"Review item #{item.pk} is a {item.get_kind_display().lower()} item; known "
            f"answers are made of AI proposals and address checks ({kinds}).",
            field="review_item",
        )
    if not item.proposal:
        raise ReviewError(
            "no_proposal",
            f"Review item #{item.pk} proposes nothing, so there is no answer to check.",
            field="review_item",
        )
    return item


def known_answer_expected_check(*, item: ReviewItem, expected: str | None) -> str:
    """Return `expected`, or the item's outcome when empty; a revision counts as a rejection."""
    from .services import ReviewError

    if expected in (None, ""):
        revised = item.revision is not None or (item.decision or {}).get("revised")
        accepted = item.status == ReviewStatus.ACCEPTED and not revised
        return KnownAnswerChoice.ACCEPT if accepted else KnownAnswerChoice.REJECT
    if expected not in KnownAnswerChoice.values:
        raise ReviewError(
            "invalid_expected",
            f"Expected answer {expected!r} is invalid; use accept or reject.",
            field="expected",
        )
    return expected


def known_answer_explanation_check(explanation: str) -> str:
    from .services import ReviewError

    explanation = (explanation or "").strip()
    if not explanation:
        raise ReviewError(
            "explanation_missing",
            "Explain why this is the right answer; reviewers read it after they decide.",
            field="explanation",
        )
    return explanation


def known_answer_set_active(
    *, known_answer_id: int, user: AbstractBaseUser, active: bool
) -> KnownAnswer:
    """Switch a case on or off for seeding; items already seeded stay in their queues."""
    from .services import ReviewForbidden, ReviewNotFound

    if not user.has_perm("reviews.change_knownanswer"):
        raise ReviewForbidden("forbidden", "You do not have permission to change known answers.")
    with transaction.atomic():
        case = KnownAnswer.objects.select_for_update().filter(pk=known_answer_id).first()
        if case is None:
            raise ReviewNotFound("not_found", f"Known answer #{known_answer_id} does not exist.")
        if case.is_active == active:
            return case
        case.is_active = active
        case.save(update_fields=["is_active"])
        audit_record(
            action="known_answer.activated" if active else "known_answer.deactivated",
            target_type="known_answer",
            target_id=case.pk,
            actor=user,
            reason="Seeded into queues again." if active else "No longer seeded into queues.",
            before={"is_active": not active},
            after={"is_active": active},
        )
    return case


# --- Seeding ------------------------------------------------------------------------------------


def known_answer_seed_maybe(
    item: ReviewItem, *, rng: random.Random | None = None
) -> ReviewItem | None:
    """Seed one known-answer item beside a newly opened real item, with the settings' rate.

    Returns the seeded item, or None when the draw skips it, the kind takes no known answers,
    no active case of the kind exists, or `item` is itself a known-answer item. The seeded
    item copies a random active case of the same kind and gets the approver and deadline a
    real item of the case's action would get on the real item's channel.
    """
    rng = rng or random
    if not _seed_drawn(item, rng):
        return None
    return _seed_case(item, rng)


def _seed_drawn(item: ReviewItem, rng: random.Random) -> bool:
    """Return whether the settings' rate draws a known-answer item beside `item`."""
    from guardrails.selectors import guardrail_settings

    if item.known_answer_id is not None or item.kind not in KNOWN_ANSWER_KINDS:
        return False
    rate = guardrail_settings().known_answer_rate
    return rate > 0 and rng.random() < rate


def _seed_case(item: ReviewItem, rng: random.Random) -> ReviewItem | None:
    """Seed a random active case of `item`'s kind beside it, or None when there is none."""
    case_ids = list(
        KnownAnswer.objects.filter(kind=item.kind, is_active=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not case_ids:
        return None
    pick = case_ids[min(int(rng.random() * len(case_ids)), len(case_ids) - 1)]
    case = KnownAnswer.objects.get(pk=pick)
    return _seeded_item_create(case, beside=item)


def _seeded_item_create(case: KnownAnswer, *, beside: ReviewItem) -> ReviewItem:
    from guardrails.services import FALLBACK_APPROVER

    from .sla import review_sla_for

    channel = beside.order.channel if beside.order_id else None
    sla = review_sla_for(kind=case.kind, action_code=case.action_code, channel=channel)
    approver = sla.approver_group or (FALLBACK_APPROVER if case.action_code else "")
    seeded = ReviewItem.objects.create(
        kind=case.kind,
        known_answer=case,
        reason=case.reason,
        source_data=case.source_data,
        proposal=case.proposal,
        action_code=case.action_code,
        confidence=case.confidence,
        approver_group=approver,
        sla_minutes=sla.minutes,
        on_sla_breach=sla.on_breach,
        due_at=sla.due_at(timezone.now()),
    )
    audit_record(
        action="review_item.known_answer_seeded",
        target_type="review_item",
        target_id=seeded.pk,
        system_label=SEED_LABEL,
        reason=f"Known answer #{case.pk} seeded into the {seeded.get_kind_display()} queue.",
        after={"known_answer": case.pk, "kind": case.kind},
    )
    logger.info(
        "known-answer item seeded",
        extra={"review_item": seeded.pk, "known_answer": case.pk, "kind": case.kind},
    )
    return seeded


@receiver(post_save, sender=ReviewItem, dispatch_uid="reviews.known_answer_seed")
def known_answer_seed_on_item_open(
    sender, instance: ReviewItem, created: bool, raw: bool = False, **kwargs
) -> None:
    if raw or not created or instance.known_answer_id is not None:
        return
    # Most draws seed nothing, so the draw comes before the savepoint and a queued decision
    # sends no empty SAVEPOINT and RELEASE. The draw reads only the engine settings, which a
    # decision has read already (guardrails.selectors.reads_shared).
    if not _seed_drawn(instance, random):
        return
    try:
        # A savepoint: seeding must never cost the real item or whatever opened it.
        with transaction.atomic():
            _seed_case(instance, random)
    except Exception:
        logger.exception("known-answer seeding failed", extra={"review_item": instance.pk})


# --- Deciding a known-answer item ---------------------------------------------------------------


def known_answer_item_decide(
    *,
    item: ReviewItem,
    user: AbstractBaseUser,
    answer: str,
    note: str = "",
    revision: dict | None = None,
) -> ReviewItem:
    """Close a locked known-answer item with the reviewer's answer and record if it was right.

    `answer` is "accept", "reject" or "revise"; a revision counts as a rejection of the
    proposal. No handler runs and no order changes. Call inside the decision's transaction
    after the usual permission checks, with the item locked.
    """
    from .forms import revise_form_for
    from .services import ReviewError, _item_close

    if answer == ANSWER_REVISE and revise_form_for(item) is None:
        # A real item of this kind and action is refused the same way.
        raise ReviewError(
            "revise_not_supported",
            f"{item.get_kind_display()} items cannot be revised; accept or reject them.",
        )
    case = item.known_answer
    given = KnownAnswerChoice.REJECT if answer == ANSWER_REVISE else answer
    correct = given == case.expected
    status = ReviewStatus.REJECTED if answer == KnownAnswerChoice.REJECT else ReviewStatus.ACCEPTED
    if revision is not None:
        item.revision = revision

    item.known_answer_correct = correct
    item.save(update_fields=["known_answer_correct"])
    _item_close(
        item=item,
        status=status,
        user=user,
        decision={
            "known_answer": case.pk,
            "answer": answer,
            "expected": case.expected,
            "correct": correct,
            **({"revised": True} if answer == ANSWER_REVISE else {}),
        },
        note=note,
    )
    logger.info(
        "known-answer item decided",
        extra={
            "review_item": item.pk,
            "known_answer": case.pk,
            "user": user.pk,
            "correct": correct,
        },
    )
    return item
