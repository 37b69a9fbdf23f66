"""Writes to the audit log, and the decisions service: AI proposals judged by the engine.

`decision_propose` validates a proposal, checks it against the order's current state, gathers
the facts, lets the live policy version (or a running canary's candidate) judge it and
stores the decision with its reasons.
Then it applies the change (verdict "applied"), opens a review item (queued_for_review), or
changes nothing (recommendation_only, blocked).
"""

import functools
import logging
import time
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, models, transaction
from django.db.models import Field, Model, signals
from django.utils import timezone

from orders.models import ActorKind

from .models import AuditEntry, Decision, DecisionOutcome, Verdict

logger = logging.getLogger(__name__)

PROPOSE_PERMISSION = "guardrails.propose_decision"
REVERT_PERMISSION = "guardrails.revert_decision"
LABEL_PERMISSION = "guardrails.label_decision"
# The engine's approver for actions no policy covers.
FALLBACK_APPROVER = "cs_manager"


def audit_record(
    *,
    action: str,
    target_type: str,
    target_id: object,
    actor: AbstractBaseUser | None = None,
    system_label: str = "",
    reason: str = "",
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    """Append one audit entry. Pass `actor` for a person, `system_label` for automation."""
    entry = audit_entry_build(
        action=action,
        target_type=target_type,
        target_id=target_id,
        actor=actor,
        system_label=system_label,
        reason=reason,
        before=before,
        after=after,
    )
    entry.save(force_insert=True)
    return entry


def audit_entry_build(
    *,
    actor: AbstractBaseUser | None = None,
    system_label: str = "",
    target_id: object,
    **fields: Any,
) -> AuditEntry:
    """Build an unsaved audit entry from audit_record's arguments."""
    if actor is None and not system_label:
        raise ValueError("An audit entry needs either an actor or a system_label.")

    return AuditEntry(
        actor_kind=ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        actor=actor,
        actor_label=actor.get_username() if actor is not None else system_label,
        target_id=str(target_id),
        **fields,
    )


# An instance and the fields to save from it, as save(update_fields=...) takes them.
SavedFields = tuple[Model, tuple[str, ...]]


def audit_record_with_event(
    *,
    audit: dict[str, Any],
    event: dict[str, Any],
    saving: SavedFields | None = None,
    inserting: Model | None = None,
) -> None:
    """Append an audit entry (`audit_record`'s arguments) and add an order event
    (`order_event_add`'s arguments), on PostgreSQL with one statement instead of two.

    `saving` (an instance and its update_fields) is saved first, and `inserting` (a new
    instance whose primary key is already set) is inserted first, on PostgreSQL in the same
    statement. Elsewhere, inside `order_events_batched()`, and when the model of `inserting`
    has save signal receivers, it calls save(), `audit_record` and `order_event_add`.
    """
    from orders.services import order_event_add

    if not _rows_together_possible() or (
        inserting is not None and _has_save_receivers(type(inserting))
    ):
        if inserting is not None:
            inserting.save(force_insert=True)
        _save_fields(saving)
        audit_record(**audit)
        order_event_add(**event)
        return
    rows = [_audit_entry_row(**audit), _order_event_row(**event)]
    _rows_write_together([inserting, *rows] if inserting is not None else rows, saving=saving)


def _has_save_receivers(model: type[Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _rows_together_possible() -> bool:
    """Return whether audit entries and order events may go in one statement with other rows.

    Not on other databases than PostgreSQL, and not inside `order_events_batched()`, whose
    events must be inserted in the order they were added. Neither model may have save signal
    receivers, because `_rows_write_together` sends none.
    """
    from orders.models import OrderEvent
    from orders.services import order_events_batch_active

    return (
        connection.vendor == "postgresql"
        and not order_events_batch_active()
        and not _has_save_receivers(AuditEntry)
        and not _has_save_receivers(OrderEvent)
    )


def _order_event_add_saving(*, event: dict[str, Any], saving: SavedFields) -> None:
    """Save `saving` and add an order event, on PostgreSQL with one statement instead of two."""
    from orders.services import order_event_add

    if not _rows_together_possible():
        _save_fields(saving)
        order_event_add(**event)
        return
    _rows_write_together([_order_event_row(**event)], saving=saving)


class _PlainRow:
    """The column values of a new row of `model`, for `_rows_write_together`.

    Building an AuditEntry or OrderEvent instance took about 90 Python calls (cProfile), and
    nothing reads the instance after the INSERT. Fields missing from `values` get their
    default, as Model.__init__ gives them, and pre_save may set attributes as on a model.
    """

    def __init__(self, model: type[Model], values: dict[str, Any]) -> None:
        self.pk = None
        self._model = model
        for field in _row_default_fields(model, frozenset(values)):
            values[field.attname] = field.get_default()
        self.__dict__.update(values)


@functools.cache
def _row_default_fields(model: type[Model], given_attnames: frozenset[str]) -> tuple[Field, ...]:
    return tuple(
        field
        for field in model._meta.local_concrete_fields
        if not field.primary_key and field.attname not in given_attnames
    )


def _audit_entry_row(
    *, actor: AbstractBaseUser | None = None, system_label: str = "", target_id: object, **fields
) -> _PlainRow:
    """Return the row `audit_entry_build` would build, without the model instance."""
    if actor is None and not system_label:
        raise ValueError("An audit entry needs either an actor or a system_label.")

    values = {
        "actor_kind": ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        "actor_id": actor.pk if actor is not None else None,
        "actor_label": actor.get_username() if actor is not None else system_label,
        "target_id": str(target_id),
        **fields,
    }
    return _PlainRow(AuditEntry, values)


def _order_event_row(
    *,
    order: Model,
    kind: str,
    message: str,
    actor: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> _PlainRow:
    """Return the row `orders.services.order_event_add` would insert, without the instance."""
    from orders.models import OrderEvent

    values = {
        "order_id": order.pk,
        "kind": kind,
        "message": message,
        "actor_kind": ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        "actor_id": actor.pk if actor is not None else None,
        "data": data or {},
    }
    return _PlainRow(OrderEvent, values)


def _save_fields(saving: SavedFields | None) -> None:
    if saving is not None:
        instance, update_fields = saving
        instance.save(update_fields=update_fields)


def _rows_write_together(
    rows: list[Model | _PlainRow], *, saving: SavedFields | None = None
) -> None:
    """Insert new rows of different tables, after saving `saving`'s fields, with one PostgreSQL
    statement, and set the new rows' ids.

    Each row gets the values the ORM's save() would write (`pre_save`, `get_db_prep_save`),
    and a row whose primary key is set is inserted with it.
    An UPDATE that finds no row raises DatabaseError, as save(update_fields=...) does.
    NOTE: no pre_save or post_save signal is sent. AuditEntry, OrderEvent, Decision and Order
    have no receivers; one added later would need save() again.
    """
    parts, params, returning = [], [], []
    if saving is not None:
        update_sql, update_params = _update_sql(*saving)
        parts.append(f"saved AS ({update_sql} RETURNING 1)")
        params.extend(update_params)
    for number, row in enumerate(rows[:-1]):
        insert_sql, insert_params = _insert_sql(row)
        parts.append(f"row_{number} AS ({insert_sql} RETURNING id)")
        params.extend(insert_params)
        returning.append(f"(SELECT id FROM row_{number})")  # noqa: S608 - a number
    last_sql, last_params = _insert_sql(rows[-1])
    params.extend(last_params)
    returning.append("id")
    if saving is not None:
        returning.append("(SELECT count(*) FROM saved)")
    with_clause = f"WITH {', '.join(parts)} " if parts else ""
    sql = f"{with_clause}{last_sql} RETURNING {', '.join(returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = cursor.fetchone()
    if saving is not None and ids[-1] != 1:
        raise DatabaseError("Save with update_fields did not affect any rows.")
    for instance, pk in zip(rows, ids, strict=False):
        instance.pk = pk
        if not isinstance(instance, _PlainRow):
            instance._state.adding = False
            instance._state.db = connection.alias


def _insert_sql(instance: Model | _PlainRow) -> tuple[str, list[Any]]:
    model = instance._model if isinstance(instance, _PlainRow) else type(instance)
    sql, plan = _insert_statement(model, with_key=instance.pk is not None)
    return sql, _db_values(instance, plan, add=True)


def _update_sql(instance: Model, update_fields: tuple[str, ...]) -> tuple[str, list[Any]]:
    sql, plan = _update_statement(type(instance), update_fields)
    return sql, [*_db_values(instance, plan, add=False), instance.pk]


# Field classes (exactly these, not subclasses) whose get_db_prep_save returns a value of
# these types unchanged on PostgreSQL with Django 5.2, as orders.webhook_channels uses them.
# An int may come back wrapped in psycopg's Int4 or Int8, which is equal and binds the same.
_UNCHANGED_VALUE_TYPES: dict[type[Field], tuple[type, ...]] = {
    models.ForeignKey: (int,),
    models.OneToOneField: (int,),
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
    models.DateTimeField: (datetime,),
    models.FloatField: (float,),
}

# Each field, with the value types it keeps, or None when it needs pre_save and
# get_db_prep_save.
ValuePlan = tuple[tuple[Field, tuple[type, ...] | None], ...]


def _value_plan(fields: tuple[Field, ...]) -> ValuePlan:
    plan = []
    for field in fields:
        kept_types = _UNCHANGED_VALUE_TYPES.get(type(field))
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            kept_types = None
        plan.append((field, kept_types))
    return tuple(plan)


def _db_values(instance: Model | _PlainRow, plan: ValuePlan, *, add: bool) -> list[Any]:
    """Return what save() would send for the plan's fields, with fewer calls.

    pre_save and get_db_prep_save cost about ten Python calls per field (cProfile), and most
    fields here are text, ids or None, which they return unchanged. Those are used as they
    are. Every other value, every naive datetime and every auto_now field goes through both.
    """
    values = []
    for field, kept_types in plan:
        if kept_types is None:
            values.append(field.get_db_prep_save(field.pre_save(instance, add), connection))
            continue
        value = getattr(instance, field.attname)
        if not (value is None or type(value) in kept_types) or (
            # Django warns about a naive datetime and gives it the default time zone.
            type(value) is datetime and value.utcoffset() is None
        ):
            value = field.get_db_prep_save(value, connection)
        values.append(value)
    return values


@functools.cache
def _update_statement(model: type[Model], update_fields: tuple[str, ...]) -> tuple[str, ValuePlan]:
    """Return the UPDATE of `update_fields` of one row by primary key, and its value plan."""
    fields = tuple(model._meta.get_field(name) for name in update_fields)
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    table, key = quote(model._meta.db_table), quote(model._meta.pk.column)
    sql = f"UPDATE {table} SET {assignments} WHERE {key} = %s"  # noqa: S608 - model metadata
    return sql, _value_plan(fields)


@functools.cache
def _insert_statement(model: type[Model], *, with_key: bool) -> tuple[str, ValuePlan]:
    """Return a model's INSERT without RETURNING, and the value plan of its columns in order.

    `with_key` includes the primary key column. Built once per model, because quoting the names
    took about a third of the Python calls of `_rows_write_together`. Only PostgreSQL uses it
    (see `audit_record_with_event`).
    """
    fields = tuple(
        field for field in model._meta.local_concrete_fields if with_key or not field.primary_key
    )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    table = quote(model._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 - as above
    return sql, _value_plan(fields)


# --- Decisions: proposals from AI agents, judged by the engine, applied or queued -----------
# orders.services and reviews.services import this module for audit_record, so everything
# they provide is imported inside the functions below.


class DecisionError(Exception):
    """A proposal, revert or label that cannot be made. `status` is the HTTP status it maps to.

    `field` names the input at fault (for 400s); `data` carries details such as the current
    state of a stale proposal.
    """

    status = 400

    def __init__(
        self, code: str, message: str, field: str | None = None, data: dict | None = None
    ) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.data = data or {}
        super().__init__(message)


class DecisionForbidden(DecisionError):
    status = 403


class DecisionNotFound(DecisionError):
    status = 404


class DecisionConflict(DecisionError):
    status = 409


def ai_actor_label(model_name: str, model_version: str) -> str:
    """Return the audit actor of an automated change, e.g. "ai:gpt-sub/2024-06"."""
    return f"ai:{model_name}/{model_version}"


def decision_propose(
    *,
    order_id: int,
    action_code: str,
    before: dict,
    after: dict,
    confidence: Decimal,
    model_name: str,
    model_version: str,
    rationale: str = "",
    proposed_by: AbstractBaseUser | None = None,
    extra_facts: dict | None = None,
) -> Decision:
    """Judge one proposed action on an order and carry out the verdict; return the decision.

    Raises DecisionError (400: unknown action, bad confidence or proposal shape; 404: unknown
    order; 409: `before` no longer matches the order, with the current state in `data`, or
    the model version does not belong to the order's canary arm or may not decide, see
    guardrails.rollouts).
    """
    from .selectors import reads_shared

    # Nothing in a decision changes the engine settings, the policies, canaries or carrier
    # services, so its steps share one read of each. Most come from the per-thread
    # configuration cache, checked once against the stamp row (guardrails.config_cache).
    with reads_shared():
        return _decision_propose(
            order_id=order_id,
            action_code=action_code,
            before=before,
            after=after,
            confidence=confidence,
            model_name=model_name,
            model_version=model_version,
            rationale=rationale,
            proposed_by=proposed_by,
            extra_facts=extra_facts,
        )


def _decision_propose(
    *,
    order_id: int,
    action_code: str,
    before: dict,
    after: dict,
    confidence: Decimal,
    model_name: str,
    model_version: str,
    rationale: str,
    proposed_by: AbstractBaseUser | None,
    extra_facts: dict | None,
) -> Decision:
    from orders.models import Order

    from .appliers import applier_for, proposal_validate
    from .engine import evaluate, rules_from_version
    from .facts import facts_for_order, order_facts
    from .rollouts import canary_judge, canary_route
    from .selectors import (
        action_get,
        order_lock_compiled,
        policy_version_live_for,
        proposal_reads,
    )

    started = time.perf_counter()
    action = action_get(code=action_code) if isinstance(action_code, str) else None
    if action is None:
        raise DecisionError("unknown_action", f"Unknown action {action_code!r}.", field="action")
    confidence = _confidence_checked(confidence)
    for field, value in (("before", before), ("after", after)):
        if not isinstance(value, dict):
            raise DecisionError("invalid_proposal", "Must be a JSON object.", field=field)
        _check_storable(value, field)
    _check_storable(rationale, "rationale")

    with transaction.atomic():
        try:
            order = order_lock_compiled(order_id=order_id)
        except (Order.DoesNotExist, ValueError, TypeError):
            raise DecisionNotFound("order_not_found", f"Order {order_id} does not exist.") from None

        proposal_validate(action_code=action.code, order=order, before=before, after=after)
        # A running canary may pick the version that judges, or record the proposal only.
        routing = canary_route(
            order=order,
            action=action,
            model_name=model_name,
            model_version=model_version,
            policy_version=policy_version_live_for(action=action, channel=order.channel),
        )
        reads = proposal_reads(order=order, action=action)
        if not routing.shadow:
            # A shadow proposal opens no review item, so it may come beside a pending one.
            # Checked before `before`: a queued proposal may have put the order on hold, and
            # an agent retrying it should learn that it waits, not that the order changed.
            _check_none_pending(action, reads.pending)
        applier = applier_for(action.code)
        if applier is not None:
            _check_not_stale(applier.current(order, before), before)

        # Read once: the facts and, for a queued decision, the review item show it.
        order_summary = order_facts(order, reads=reads)
        facts = facts_for_order(
            order=order,
            order_summary=order_summary,
            action=action,
            before=before,
            after=after,
            confidence=confidence,
            model_name=model_name,
            model_version=model_version,
            extra_facts=extra_facts,
        )
        version = routing.policy_version
        rules = rules_from_version(version) if version is not None else None
        evaluation = evaluate(rules=rules, facts=facts, fallback_approver=FALLBACK_APPROVER)
        verdict, reasons, shadow_verdict = canary_judge(routing, evaluation=evaluation, facts=facts)

        decision = Decision(
            id=reads.decision_id,
            action=action,
            order=order,
            channel=order.channel,
            proposed_by=proposed_by,
            model_name=model_name,
            model_version=model_version,
            before=before,
            after=after,
            confidence=confidence,
            rationale=rationale,
            verdict=verdict,
            reasons=reasons,
            policy_version=version,
            facts=facts,
            canary=routing.canary,
            canary_arm=routing.arm,
            shadow_verdict=shadow_verdict,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        if decision.pk is None:
            # Only PostgreSQL takes the id in advance (`proposal_reads`). Elsewhere the INSERT
            # assigns it.
            decision.save(force_insert=True)
            _decision_record(decision, order)
        else:
            _decision_record(decision, order, inserting=True)

        if decision.verdict == Verdict.APPLIED:
            _decision_apply_autonomously(decision, order)
        if decision.verdict == Verdict.QUEUED_FOR_REVIEW:
            _decision_queue(decision, order, order_summary=order_summary)
        if version is not None and version.policy.shadow_version_id:
            _shadow_evaluate(decision, version.policy.shadow_version)

        transaction.on_commit(lambda: _breakers_check_enqueue(decision))

    logger.info(
        "decision made",
        extra={
            "decision": decision.pk,
            "action": action.code,
            "order": order.pk,
            "verdict": decision.verdict,
            "model": model_name,
            "latency_ms": round(decision.latency_ms or 0, 2),
        },
    )
    return decision


def decision_revert(
    *, decision_id: int, user: AbstractBaseUser, note: str, outcome: str = DecisionOutcome.ERROR
) -> Decision:
    """Undo an applied decision and label it (an error, unless the user says it was correct).

    Raises DecisionConflict when the order no longer matches the decision's `after`.
    """
    from orders.services import order_event_add, order_lock

    from .appliers import applier_for

    if not user.has_perm(REVERT_PERMISSION):
        raise DecisionForbidden("forbidden", "You do not have permission to revert decisions.")
    _check_outcome(outcome)

    with transaction.atomic():
        decision = _decision_lock(decision_id)
        order = order_lock(order_id=decision.order_id)
        if decision.applied_at is None:
            raise DecisionConflict("not_applied", f"Decision #{decision.pk} was never applied.")
        if decision.reverted_at is not None:
            raise DecisionConflict(
                "already_reverted", f"Decision #{decision.pk} was already reverted."
            )
        applier = applier_for(decision.action.code)
        current = applier.current(order, decision.before)
        if current != decision.after:
            raise DecisionConflict(
                "state_changed",
                "The order changed after the decision was applied; revert it by hand.",
                data={"current": current},
            )

        result = applier.revert(order, decision, user)
        decision.reverted_at = timezone.now()
        decision.reverted_by = user
        decision.save(update_fields=["reverted_at", "reverted_by"])
        audit_record(
            action="decision.reverted",
            target_type="decision",
            target_id=decision.pk,
            actor=user,
            reason=note,
            before=decision.after,
            after=decision.before,
        )
        order_event_add(
            order=order,
            kind="ai.reverted",
            message=f"{decision.action.name} by decision #{decision.pk} reverted.",
            actor=user,
            data={"decision": decision.pk, "result": result},
        )
        _label(decision, user=user, outcome=outcome, note=note or "Reverted.")
    logger.info("decision reverted", extra={"decision": decision.pk, "order": order.pk})
    return decision


def decision_label(
    *, decision_id: int, user: AbstractBaseUser, outcome: str, note: str = ""
) -> Decision:
    """Label a decision correct or an error; breakers and the autonomy gate count the label."""
    if not user.has_perm(LABEL_PERMISSION):
        raise DecisionForbidden("forbidden", "You do not have permission to label decisions.")
    _check_outcome(outcome)

    with transaction.atomic():
        decision = _decision_lock(decision_id)
        _label(decision, user=user, outcome=outcome, note=note)
    return decision


def decision_review_accept(*, item, order, user: AbstractBaseUser) -> dict:
    """Accept handler for review items a decision opened: apply the decision as approved.

    Runs inside the review's transaction with the item and the order locked. Only members
    of the decision's approver (or escalation) group and superusers may accept.
    """
    from orders.services import order_event_add
    from reviews.services import ReviewConflict

    from .appliers import applier_for

    decision = _decision_lock_for_item(item)
    _check_may_approve(user, decision)
    if decision.applied_at is not None and decision.reverted_at is None:
        # A canary rollback sent this applied change back to review: accepting keeps it.
        return _decision_keep_applied(decision, order, item, user)

    applier = applier_for(decision.action.code) if decision.action.has_applier else None
    if applier is None:
        # Nothing to carry out here: the approval is the record a person acts on.
        audit_record(
            action="decision.approved",
            target_type="decision",
            target_id=decision.pk,
            actor=user,
            reason=f"Accepted in review item #{item.pk}",
            before=decision.before,
            after=decision.after,
        )
        order_event_add(
            order=order,
            kind="ai.approved",
            message=f"{decision.action.name} by decision #{decision.pk} approved; "
            "a person carries it out.",
            actor=user,
            data={"decision": decision.pk},
        )
        return {"decision": decision.pk, "applied": False}

    if applier.checks_before_on_accept:
        current = applier.current(order, decision.before)
        if current != decision.before:
            raise ReviewConflict(
                "stale_state",
                "The order changed after the proposal; reject it and handle the order by hand.",
            )
    try:
        with transaction.atomic():
            result = applier.apply(order, decision, user.get_username(), user=user)
    except DecisionError as error:
        raise ReviewConflict(error.code, error.message) from None

    _decision_mark_applied(decision, order, result, user=user)
    return {"decision": decision.pk, "applied": True, **result}


def decision_review_reject(*, item, order, user: AbstractBaseUser, note: str) -> Decision:
    """Record on the decision that a reviewer rejected it; the order keeps its state."""
    from orders.services import order_event_add

    decision = _decision_lock_for_item(item)
    _check_may_approve(user, decision)
    if decision.applied_at is not None and decision.reverted_at is None:
        # A canary rollback sent this applied change back to review: rejecting undoes it.
        return _decision_undo_applied(decision, order, item, user, note)
    audit_record(
        action="decision.rejected",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=note or f"Rejected in review item #{item.pk}",
        before=decision.before,
        after=decision.after,
    )
    order_event_add(
        order=order,
        kind="ai.rejected",
        message=f"{decision.action.name} by decision #{decision.pk} rejected; nothing changed.",
        actor=user,
        data={"decision": decision.pk},
    )
    return decision


def _decision_keep_applied(decision: Decision, order, item, user: AbstractBaseUser) -> dict:
    """Record that a reviewer keeps a change that was applied before its review."""
    from orders.services import order_event_add

    audit_record(
        action="decision.kept",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=f"Kept in review item #{item.pk}",
        before=decision.before,
        after=decision.after,
    )
    order_event_add(
        order=order,
        kind="ai.kept",
        message=f"{decision.action.name} by decision #{decision.pk} kept after review.",
        actor=user,
        data={"decision": decision.pk, "review_item": item.pk},
    )
    return {"decision": decision.pk, "applied": True, "kept": True}


def _decision_undo_applied(
    decision: Decision, order, item, user: AbstractBaseUser, note: str
) -> Decision:
    """Revert a change that was applied before its review, and label the decision an error.

    The reviewer who rejected it is the actor. The label lets breakers and the autonomy
    gate count the change as a mistake, as a revert from the decision page does. Raises
    ReviewConflict when the order changed after the decision was applied.
    """
    from orders.services import order_event_add
    from reviews.services import ReviewConflict

    from .appliers import applier_for

    applier = applier_for(decision.action.code)
    if applier.current(order, decision.before) != decision.after:
        raise ReviewConflict(
            "state_changed",
            "The order changed after the decision was applied; accept the item to keep the "
            "order as it is and correct it by hand.",
        )
    try:
        with transaction.atomic():
            result = applier.revert(order, decision, user)
    except DecisionError as error:
        raise ReviewConflict(error.code, error.message) from None

    decision.reverted_at = timezone.now()
    decision.reverted_by = user
    decision.save(update_fields=["reverted_at", "reverted_by"])
    audit_record(
        action="decision.reverted",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=note or f"Rejected in review item #{item.pk}",
        before=decision.after,
        after=decision.before,
    )
    order_event_add(
        order=order,
        kind="ai.reverted",
        message=f"{decision.action.name} by decision #{decision.pk} reverted after review.",
        actor=user,
        data={"decision": decision.pk, "review_item": item.pk, "result": result},
    )
    _label(
        decision,
        user=user,
        outcome=DecisionOutcome.ERROR,
        note=note or f"Rejected in review item #{item.pk}",
    )
    return decision


def decision_for_review_item(item) -> Decision | None:
    return Decision.objects.filter(review_item_id=item.pk).first()


# --- Steps of decision_propose ---------------------------------------------------------------


def _confidence_checked(confidence: Any) -> Decimal:
    try:
        value = Decimal(str(confidence))
    except (InvalidOperation, ValueError):
        value = None
    if value is None or not value.is_finite() or isinstance(confidence, bool):
        raise DecisionError(
            "invalid_confidence", "Confidence must be a number from 0 to 1.", field="confidence"
        )
    if not Decimal("0") <= value <= Decimal("1"):
        raise DecisionError(
            "invalid_confidence",
            f"Confidence {value} is outside 0 to 1.",
            field="confidence",
        )
    # Stored with 4 places; rounding down never lifts a confidence over a policy's limit.
    return value.quantize(Decimal("0.0001"), rounding=ROUND_DOWN)


def _check_none_pending(action, pending: tuple[int, int] | None) -> None:
    """Refuse a second proposal of an action on an order while one waits for review.

    `pending` is `decision_pending` of the order and action. Without this check, an agent
    retrying a proposal would open one review item (and one hold) per retry.
    """
    if pending is not None:
        decision_id, item_id = pending
        raise DecisionConflict(
            "proposal_pending",
            f"Decision #{decision_id} proposes {action.code} on this order and waits for review "
            f"in item #{item_id}; wait for that decision or ask a reviewer to reject it.",
            data={"decision": decision_id, "review_item": item_id},
        )


def _check_storable(value: Any, field: str) -> None:
    """Reject text PostgreSQL cannot store (NUL characters, unpaired surrogates) as a 400."""
    from orders.canonical import AdapterError, check_storable_json

    try:
        check_storable_json(value, field)
    except AdapterError as error:
        raise DecisionError("invalid_text", str(error), field=field) from None


def _check_not_stale(current: dict, before: dict) -> None:
    if current != before:
        raise DecisionConflict(
            "stale_state",
            "`before` does not match the order's current state; read the order and propose again.",
            data={"current": current},
        )


def _decision_record(decision: Decision, order, *, inserting: bool = False) -> None:
    """Audit the proposal and add its order event, with the decision's INSERT if `inserting`."""
    label = ai_actor_label(decision.model_name, decision.model_version)
    fired = [reason["message"] for reason in decision.reasons if reason["outcome"] != "pass"]
    audit_record_with_event(
        audit={
            "action": "decision.proposed",
            "target_type": "decision",
            "target_id": decision.pk,
            "actor": decision.proposed_by,
            "system_label": label,
            "reason": f"Verdict {decision.verdict}. {' '.join(fired)}"[:2000],
            "before": decision.before,
            "after": decision.after,
        },
        event={
            "order": order,
            "kind": "ai.decision",
            "message": (
                f"{label} proposed: {decision.action.name} "
                f"({decision.get_verdict_display().lower()}, decision #{decision.pk})."
            ),
            "data": {"decision": decision.pk, "verdict": decision.verdict},
        },
        inserting=decision if inserting else None,
    )


def _decision_apply_autonomously(decision: Decision, order) -> None:
    """Apply an autonomous decision; a failure sends it to review instead."""
    from .appliers import applier_for

    label = ai_actor_label(decision.model_name, decision.model_version)
    try:
        # A savepoint, so a failed apply leaves nothing half-changed.
        with transaction.atomic():
            result = applier_for(decision.action.code).apply(order, decision, label)
    except Exception as error:
        message = error.message if isinstance(error, DecisionError) else str(error)
        logger.warning(
            "decision apply failed",
            exc_info=not isinstance(error, DecisionError),
            extra={"decision": decision.pk, "order": order.pk, "error": message},
        )
        decision.apply_error = message or type(error).__name__
        decision.verdict = Verdict.QUEUED_FOR_REVIEW
        decision.reasons = [
            *decision.reasons,
            {"rule": "apply_failed", "outcome": "fail", "message": f"Applying failed: {message}"},
        ]
        decision.save(update_fields=["apply_error", "verdict", "reasons"])
        _breaker_record_outcome(decision)
        return

    _decision_mark_applied(decision, order, result, system_label=label)
    _audit_sample_maybe(decision)


def _audit_sample_maybe(decision: Decision) -> None:
    from .sampling import audit_sample_maybe

    try:
        # Sampling must never cost the applied decision: audit_sample_maybe opens its item in
        # a savepoint of its own.
        audit_sample_maybe(decision)
    except Exception:
        decision.review_item = None
        logger.exception("audit sampling failed", extra={"decision": decision.pk})


def _decision_mark_applied(
    decision: Decision,
    order,
    result: dict,
    *,
    user: AbstractBaseUser | None = None,
    system_label: str = "",
) -> None:
    decision.applied_at = timezone.now()
    decision.apply_error = ""
    audit_record_with_event(
        saving=(decision, ("applied_at", "apply_error")),
        audit={
            "action": "decision.applied",
            "target_type": "decision",
            "target_id": decision.pk,
            "actor": user,
            "system_label": system_label,
            "reason": f"{decision.action.name} on order {order.pk}",
            "before": decision.before,
            "after": {**decision.after, "result": result},
        },
        event={
            "order": order,
            "kind": "ai.applied",
            "message": f"{decision.action.name} applied (decision #{decision.pk}).",
            "actor": user,
            "data": {"decision": decision.pk, "result": result},
        },
    )


def _decision_queue(decision: Decision, order, *, order_summary: dict) -> None:
    """Open the action's review item and, for actions that hold, hold the order on it.

    `order_summary` is `order_facts(order)` as the decision read it; a failed autonomous
    apply rolls its changes back, so it is still the order's state.
    """
    from orders.models import OrderStatus
    from reviews.models import ReviewItem
    from reviews.sla import review_item_routing_for_decision

    fired = [reason for reason in decision.reasons if reason["outcome"] in ("fail", "block")]
    summary = " ".join(reason["message"] for reason in fired) or "The policy asks for a person."
    line = None
    if decision.action.code == "substitute_sku":
        line = order.lines.filter(position=decision.after["line"]).first()

    item = ReviewItem.objects.create(
        kind=decision.action.review_kind,
        order=order,
        order_line=line,
        reason=f"{decision.action.name} proposed by {decision.model_name}: {summary}",
        source_data={"before": decision.before, "order": order_summary},
        proposal={
            "decision": decision.pk,
            "action": decision.action.code,
            "before": decision.before,
            "after": decision.after,
            "confidence": str(decision.confidence),
            "model": {"name": decision.model_name, "version": decision.model_version},
            "rationale": decision.rationale,
            "reasons": decision.reasons,
        },
        # Locked and read at the start of the decision. A failed apply may have counted a
        # version in memory that its rollback undid, so the item's signal reads it then.
        order_version=None if decision.apply_error else order.version,
        # Action, confidence, approver and deadline from the version that judged it.
        **review_item_routing_for_decision(decision),
    )
    decision.review_item = item
    _order_event_add_saving(
        saving=(decision, ("review_item",)),
        event={
            "order": order,
            "kind": "review.opened",
            "message": (
                f"Review item #{item.pk} opened: {decision.action.name} waits for approval."
            ),
            "data": {"review_item": item.pk, "decision": decision.pk},
        },
    )

    if decision.action.holds_order_while_queued and order.status != OrderStatus.CANCELLED:
        reason = {
            "severity": "hold",
            "code": "ai_decision",
            "review_item": item.pk,
            "decision": decision.pk,
            "message": f"{decision.action.name} proposed by AI waits for review",
        }
        _order_hold_add(order, [*order.hold_reasons, reason])


def _order_hold_add(order, reasons: list[dict]) -> None:
    """Hold the order with `reasons`, as `orders.services.order_update_hold_reasons` does
    when the new non-empty list adds a reason.

    On PostgreSQL the order's UPDATE, its "order.held" event and its audit entry go in one
    statement instead of three. `order_update_hold_reasons` runs instead on other databases,
    inside `order_writes_deferred()` (which queues those writes in order), and when Order has
    save signal receivers. Inside `order_events_batched()`, `audit_record_with_event` writes
    the three rows one by one.
    """
    from orders.models import OrderStatus
    from orders.services import order_update_hold_reasons, order_writes_deferred_active

    if (
        connection.vendor != "postgresql"
        or order_writes_deferred_active()
        or _has_save_receivers(type(order))
    ):
        order_update_hold_reasons(order=order, reasons=reasons)
        return

    # What order_hold writes, with no actor: its audit entry names "ingestion hygiene".
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = OrderStatus.ON_HOLD
    order.hold_reasons = reasons
    summary = "; ".join(reason["message"] for reason in reasons)
    audit_record_with_event(
        saving=(order, ("status", "hold_reasons", "updated_at")),
        event={"order": order, "kind": "order.held", "message": f"Held: {summary}"},
        audit={
            "action": "order.held",
            "target_type": "order",
            "target_id": order.pk,
            "system_label": "ingestion hygiene",
            "reason": summary,
            "before": before,
            "after": {"status": order.status, "hold_reasons": reasons},
        },
    )
    # Under order_hold's logger, so a log filter on "orders.services" still receives every hold.
    logging.getLogger("orders.services").info(
        "order held",
        extra={"order": order.pk, "reasons": [reason["code"] for reason in reasons]},
    )


def _shadow_evaluate(decision: Decision, version) -> None:
    from .backtest import shadow_evaluate

    try:
        # A savepoint: the shadow record must never cost the live decision.
        with transaction.atomic():
            shadow_evaluate(decision, version)
    except Exception:
        logger.exception(
            "shadow evaluation failed", extra={"decision": decision.pk, "version": version.pk}
        )


def _breakers_check_enqueue(decision: Decision) -> None:
    from .tasks import breakers_check_queue

    try:
        breakers_check_queue(decision)
    except Exception:
        # The decision is kept; the next decision or the periodic sweep checks the breakers.
        logger.exception("could not queue the breaker check", extra={"decision": decision.pk})


def _breaker_record_outcome(decision: Decision) -> None:
    from .breakers import breaker_record_outcome

    breaker_record_outcome(decision=decision)


# --- Labels, locks and permission checks -----------------------------------------------------


def _label(decision: Decision, *, user: AbstractBaseUser, outcome: str, note: str) -> None:
    from .autonomy import autonomy_gate_recompute

    before = {"outcome": decision.outcome, "label_note": decision.label_note}
    decision.outcome = outcome
    decision.labelled_at = timezone.now()
    decision.labelled_by = user
    decision.label_note = note
    decision.save(update_fields=["outcome", "labelled_at", "labelled_by", "label_note"])
    audit_record(
        action="decision.labelled",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=note,
        before=before,
        after={"outcome": outcome, "label_note": note},
    )
    autonomy_gate_recompute(action_code=decision.action.code)
    _breaker_record_outcome(decision)


def _check_outcome(outcome: str) -> None:
    allowed = (DecisionOutcome.CORRECT, DecisionOutcome.ERROR)
    if outcome not in allowed:
        raise DecisionError(
            "invalid_outcome", f"Outcome must be one of {', '.join(allowed)}.", field="outcome"
        )


def _decision_lock(decision_id: int) -> Decision:
    decision = (
        Decision.objects.select_for_update(of=("self",))
        .select_related("action", "channel")
        .filter(pk=decision_id)
        .first()
    )
    if decision is None:
        raise DecisionNotFound("decision_not_found", f"Decision {decision_id} does not exist.")
    return decision


def _decision_lock_for_item(item) -> Decision:
    decision = (
        Decision.objects.select_for_update(of=("self",))
        .select_related("action", "policy_version__approver_group")
        .select_related("policy_version__escalation_group")
        .get(review_item_id=item.pk)
    )
    return decision


def decision_approver_groups(decision: Decision) -> list[str]:
    """Return the groups whose members may decide the decision's review item."""
    version = decision.policy_version
    if version is None:
        return [FALLBACK_APPROVER]
    groups = [version.approver_group.name if version.approver_group_id else FALLBACK_APPROVER]
    if version.escalation_group_id:
        groups.append(version.escalation_group.name)
    return groups


def _check_may_approve(user: AbstractBaseUser, decision: Decision) -> None:
    """Raise ReviewForbidden unless `user` may decide the item, by the rule in reviews.services."""
    from reviews.services import review_item_check_may_decide

    review_item_check_may_decide(decision.review_item, user)
