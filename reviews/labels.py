"""Error labels: a person's cause, impact and corrective action for an error, from the taxonomy.

A label sits on an AI decision or on a review item, never on both. The three terms come from
the editable taxonomy (LabelTerm), so labels stay comparable: each must exist, be switched
on and be of its field's kind. Labels are history and are never edited or removed; a
correction is a new label, and readers take the newest.

Labelling a decision also labels the decision itself an error (`Decision.outcome`), through
`guardrails.services.decision_label`, so the circuit breakers and the autonomy gate count it.
"""

import logging
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from guardrails.models import Decision, DecisionOutcome
from guardrails.services import LABEL_PERMISSION, audit_record, decision_label

from .models import ErrorLabel, LabelKind, LabelTerm, ReviewItem

logger = logging.getLogger(__name__)

ADD_PERMISSION = "reviews.add_errorlabel"
EXPORT_PERMISSION = "reviews.export_labelled_examples"
NOTE_MAX_LENGTH = 2000
# The ErrorLabel field of each term kind; also the input field named in errors.
TERM_FIELDS = {
    "cause": LabelKind.CAUSE,
    "impact": LabelKind.IMPACT,
    "corrective_action": LabelKind.CORRECTIVE_ACTION,
}


class LabelError(Exception):
    """A label that cannot be added. `code` is stable, `field` names the input at fault."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(message)


class LabelForbidden(LabelError):
    status = 403


# --- Services -------------------------------------------------------------------------------


def error_label_add(
    *,
    user: AbstractBaseUser,
    cause_id: int,
    impact_id: int,
    corrective_action_id: int,
    note: str = "",
    decision_id: int | None = None,
    review_item_id: int | None = None,
) -> ErrorLabel:
    """Label an error on a decision or a review item with three terms of the taxonomy.

    Raises LabelError (400, with `field`) for a missing or double target, an unknown target,
    and a term that is unknown, switched off or of the wrong kind; LabelForbidden (403)
    without guardrails.label_decision (decisions) or reviews.add_errorlabel (review items).
    On a decision not yet labelled an error, also labels the decision an error.
    """
    _check_one_target(decision_id, review_item_id)
    _check_may_label(user, on_decision=decision_id is not None)
    terms = _terms_checked(
        {"cause": cause_id, "impact": impact_id, "corrective_action": corrective_action_id}
    )
    note = _note_checked(note)

    with transaction.atomic():
        if decision_id is not None:
            label = _decision_label_add(decision_id, user=user, terms=terms, note=note)
        else:
            label = _review_item_label_add(review_item_id, user=user, terms=terms, note=note)

    logger.info(
        "error label added",
        extra={
            "error_label": label.pk,
            "decision": label.decision_id,
            "review_item": label.review_item_id,
            "cause": terms["cause"].code,
            "impact": terms["impact"].code,
            "corrective_action": terms["corrective_action"].code,
            "user": user.pk,
        },
    )
    return label


def _decision_label_add(
    decision_id: int, *, user: AbstractBaseUser, terms: dict[str, LabelTerm], note: str
) -> ErrorLabel:
    # Locked so two people labelling at once label the decision an error only once.
    decision = (
        Decision.objects.select_for_update(of=("self",))
        .filter(pk=_id_checked(decision_id, "decision"))
        .first()
    )
    if decision is None:
        raise LabelError(
            "decision_not_found", f"Decision {decision_id} does not exist.", field="decision"
        )
    previous = _label_ids(ErrorLabel.objects.filter(decision_id=decision.pk))
    previous_outcome = decision.outcome

    label = ErrorLabel.objects.create(decision=decision, labelled_by=user, note=note, **terms)
    if previous_outcome != DecisionOutcome.ERROR:
        decision_label(
            decision_id=decision.pk,
            user=user,
            outcome=DecisionOutcome.ERROR,
            note=note or f"Error label #{label.pk}: {terms['cause'].name}.",
        )

    audit_record(
        action="error_label.added",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=note,
        before={"outcome": previous_outcome, "error_labels": previous},
        after={
            "outcome": DecisionOutcome.ERROR,
            "error_labels": [*previous, label.pk],
            **_label_data(label),
        },
    )
    return label


def _review_item_label_add(
    review_item_id: int, *, user: AbstractBaseUser, terms: dict[str, LabelTerm], note: str
) -> ErrorLabel:
    item_id = _id_checked(review_item_id, "review_item")
    known_answer = (
        ReviewItem.objects.filter(pk=item_id).values_list("known_answer_id", flat=True).first()
    )
    if known_answer is None and not ReviewItem.objects.filter(pk=item_id).exists():
        raise LabelError(
            "review_item_not_found",
            f"Review item {review_item_id} does not exist.",
            field="review_item",
        )
    if known_answer is not None:
        # A known-answer item is a check of the reviewer; no automation erred on it.
        raise LabelError(
            "known_answer_item",
            f"Review item {review_item_id} is a known-answer check, not a real case; "
            "it cannot be labelled.",
            field="review_item",
        )
    previous = _label_ids(ErrorLabel.objects.filter(review_item_id=item_id))

    label = ErrorLabel.objects.create(review_item_id=item_id, labelled_by=user, note=note, **terms)

    audit_record(
        action="error_label.added",
        target_type="review_item",
        target_id=item_id,
        actor=user,
        reason=note,
        before={"error_labels": previous},
        after={"error_labels": [*previous, label.pk], **_label_data(label)},
    )
    return label


def _label_data(label: ErrorLabel) -> dict:
    return {
        "error_label": label.pk,
        "cause": label.cause.code,
        "impact": label.impact.code,
        "corrective_action": label.corrective_action.code,
        "note": label.note,
    }


def _label_ids(labels: QuerySet) -> list[int]:
    return list(labels.order_by("id").values_list("id", flat=True))


# --- Checks ---------------------------------------------------------------------------------


def _check_one_target(decision_id: int | None, review_item_id: int | None) -> None:
    if (decision_id is None) == (review_item_id is None):
        raise LabelError(
            "invalid_target",
            "Give exactly one of decision and review_item: the label belongs to one of them.",
            field="target",
        )


def _check_may_label(user: AbstractBaseUser, *, on_decision: bool) -> None:
    if on_decision and not user.has_perm(LABEL_PERMISSION):
        raise LabelForbidden("forbidden", "You do not have permission to label decisions.")
    if not on_decision and not user.has_perm(ADD_PERMISSION):
        raise LabelForbidden("forbidden", "You do not have permission to label review items.")


def _terms_checked(ids: dict[str, object]) -> dict[str, LabelTerm]:
    """Fetch the three terms in one query and check each against its field's kind."""
    checked_ids = {field: _id_checked(value, field) for field, value in ids.items()}
    found = LabelTerm.objects.in_bulk(checked_ids.values())

    terms = {}
    for field, term_id in checked_ids.items():
        kind = TERM_FIELDS[field]
        term = found.get(term_id)
        if term is None:
            raise LabelError("term_not_found", f"Label term {term_id} does not exist.", field)
        if term.kind != kind:
            raise LabelError(
                "wrong_term_kind",
                f"{term.code!r} is {_with_article(LabelKind(term.kind).label)}, "
                f"not {_with_article(kind.label)}.",
                field,
            )
        if not term.is_active:
            raise LabelError(
                "term_inactive",
                f"{term.code!r} is switched off; choose an active {kind.label.lower()}.",
                field,
            )
        terms[field] = term
    return terms


def _id_checked(value: object, field: str) -> int:
    # bool is an int subclass, and True would otherwise be taken for id 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LabelError("invalid_id", f"Must be a positive integer id, not {value!r}.", field)
    return value


def _note_checked(note: str) -> str:
    if len(note) > NOTE_MAX_LENGTH:
        raise LabelError(
            "note_too_long", f"Must be at most {NOTE_MAX_LENGTH} characters.", field="note"
        )
    return note


def _with_article(label: str) -> str:
    word = label.lower()
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# --- Selectors ------------------------------------------------------------------------------


def label_terms(kind: str) -> QuerySet[LabelTerm]:
    """Return the active terms of one kind in their form order."""
    return LabelTerm.objects.filter(kind=kind, is_active=True).order_by("position", "name", "id")


def label_term_choices() -> dict[str, list[LabelTerm]]:
    """Return the active terms of every kind, by kind, in their form order, in one query."""
    choices: dict[str, list[LabelTerm]] = {kind: [] for kind in TERM_FIELDS.values()}
    for term in LabelTerm.objects.filter(is_active=True).order_by("kind", "position", "name", "id"):
        choices[term.kind].append(term)
    return choices


def error_labels_with_terms() -> QuerySet[ErrorLabel]:
    """Return all error labels, newest first, with their terms and labeller in the same query."""
    return ErrorLabel.objects.select_related(
        "cause", "impact", "corrective_action", "labelled_by"
    ).order_by("-labelled_at", "-id")


def error_labels_for_decision(*, decision_id: int) -> list[ErrorLabel]:
    """Return a decision's labels, newest first."""
    return list(error_labels_with_terms().filter(decision_id=decision_id))


def error_labels_for_review_item(*, review_item_id: int) -> list[ErrorLabel]:
    """Return a review item's labels, newest first."""
    return list(error_labels_with_terms().filter(review_item_id=review_item_id))


def error_labels_by_decision(*, decision_ids: Iterable[int]) -> dict[int, list[ErrorLabel]]:
    """Return the labels of many decisions in one query, by decision id, newest first."""
    by_decision: dict[int, list[ErrorLabel]] = {}
    for label in error_labels_with_terms().filter(decision_id__in=list(decision_ids)):
        by_decision.setdefault(label.decision_id, []).append(label)
    return by_decision
