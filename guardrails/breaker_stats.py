"""Decision counts that the breaker checks compare: a window read fresh on every check, and a
baseline of the days before it, cached for a few minutes.

The baseline covers `mix_baseline_days` (7 by default) of decisions. Reading it on every
check would scan a week of the scope's rows each time, so the check's cost would grow with the
week's volume. The baseline's shares and means hardly move in a few minutes. The window
(`breaker_window_minutes`) is read on every check, because that is where a fault shows.
"""

import hashlib
import json
import logging
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone

from .models import Canary, Decision, DecisionOutcome, Version
from .rollout_selectors import MODEL_KINDS, shadow_record_q

logger = logging.getLogger(__name__)

# A decision counts toward the error rate when it was applied or applying it was tried.
COUNTED = Q(applied_at__isnull=False) | ~Q(apply_error="")
ERROR = Q(outcome=DecisionOutcome.ERROR) | ~Q(apply_error="")


# The SQL of COUNTED and ERROR, and the Decision column of each scope's key, for window_stats.
_COUNTED_SQL = "(d.applied_at IS NOT NULL OR d.apply_error <> '')"
_ERROR_SQL = f"(d.outcome = '{DecisionOutcome.ERROR.value}' OR d.apply_error <> '')"
_SCOPE_COLUMNS = {"action": "action_id", "channel": "channel_id", "model": "model_name"}
_WINDOW_FIGURES = ("window_counted", "window_errors", "window_total", "window_confidence")

# shadow_record_q() in SQL. canary_id IS NOT NULL keeps a decision without a canary, which
# `canary_id IN (...)` would turn into NULL and so drop.
_NOT_SHADOW_SQL = (
    "NOT (d.shadow_verdict <> '' AND d.canary_id IS NOT NULL AND d.canary_id IN ("  # noqa: S608
    f"SELECT c.id FROM {Canary._meta.db_table} c "
    f"JOIN {Version._meta.db_table} v ON v.id = c.candidate_id "
    f"WHERE v.kind IN ({', '.join(['%s'] * len(MODEL_KINDS))})))"
)


def window_stats(
    *, keys: dict[str, object], starts: dict[str, datetime], mix_channel_id: int | None = None
) -> dict[str, dict]:
    """Return the window counts of several scopes of one decision, read in one query.

    `keys` maps each scope ("action", "channel", "model") to its value in the decision
    (action id, channel id, model name), and `starts` maps the scopes to check to the start
    of their window. Each scope gets window_counted, window_errors, window_total and
    window_confidence. With `mix_channel_id` and an "action" start, "mix" gets the channel's
    window_total and window_action since that start.

    One hand-written query replaces an ORM aggregate per scope, because a busy API runs a
    check about every second, and compiling four aggregates cost each check about 30,000
    Python calls.
    """
    selects: list[str] = []
    select_params: list = []
    for scope, start in starts.items():
        in_scope = f"d.{_SCOPE_COLUMNS[scope]} = %s AND d.created_at >= %s"
        selects += [
            f"COUNT(*) FILTER (WHERE {in_scope} AND {_COUNTED_SQL})",
            f"COUNT(*) FILTER (WHERE {in_scope} AND {_COUNTED_SQL} AND {_ERROR_SQL})",
            f"COUNT(*) FILTER (WHERE {in_scope})",
            f"AVG(d.confidence) FILTER (WHERE {in_scope})",
        ]
        select_params += [keys[scope], start] * 4
    with_mix = mix_channel_id is not None and "action" in starts
    if with_mix:
        selects += [
            "COUNT(*) FILTER (WHERE d.channel_id = %s AND d.created_at >= %s)",
            "COUNT(*) FILTER (WHERE d.channel_id = %s AND d.action_id = %s AND d.created_at >= %s)",
        ]
        select_params += [mix_channel_id, starts["action"]]
        select_params += [mix_channel_id, keys["action"], starts["action"]]
    if not selects:
        return {}

    in_any_scope = [f"d.{_SCOPE_COLUMNS[scope]} = %s" for scope in starts]
    where_params: list = [keys[scope] for scope in starts]
    if with_mix:
        in_any_scope.append("d.channel_id = %s")
        where_params.append(mix_channel_id)
    sql = (
        # Table and column names come from model metadata and constants; values are parameters.
        f"SELECT {', '.join(selects)} FROM {Decision._meta.db_table} d "  # noqa: S608
        f"WHERE d.created_at >= %s AND ({' OR '.join(in_any_scope)}) AND {_NOT_SHADOW_SQL}"
    )
    params = [*select_params, min(starts.values()), *where_params, *MODEL_KINDS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = list(cursor.fetchone())

    stats = {}
    for scope in starts:
        figures = dict(zip(_WINDOW_FIGURES, row[:4], strict=True))
        if isinstance(figures["window_confidence"], float):
            # SQLite's AVG returns a float where PostgreSQL's returns a Decimal.
            figures["window_confidence"] = Decimal(str(figures["window_confidence"]))
        stats[scope] = figures
        row = row[4:]
    if with_mix:
        stats["mix"] = {"window_total": row[0], "window_action": row[1]}
    return stats


def scope_baseline(filters: dict, baseline_start: datetime, baseline_end: datetime) -> dict:
    """Return a scope's baseline_total and baseline_confidence, cached (see the module)."""
    return _baseline_cached(
        ("scope", filters, baseline_start, baseline_end),
        lambda: (
            live_decisions()
            .filter(**filters, created_at__gte=baseline_start, created_at__lt=baseline_end)
            .aggregate(baseline_total=Count("id"), baseline_confidence=Avg("confidence"))
        ),
    )


def mix_baseline(
    *, channel_id: int, action_id: int, baseline_start: datetime, baseline_end: datetime
) -> dict:
    """Return a channel's baseline_total and its action's baseline_action, cached."""
    is_action = Q(action_id=action_id)
    return _baseline_cached(
        ("mix", {"channel_id": channel_id, "action_id": action_id}, baseline_start, baseline_end),
        lambda: (
            live_decisions()
            .filter(
                channel_id=channel_id, created_at__gte=baseline_start, created_at__lt=baseline_end
            )
            .aggregate(
                baseline_total=Count("id"),
                baseline_action=Count("id", filter=is_action),
            )
        ),
    )


def live_decisions() -> QuerySet[Decision]:
    """Decisions that decided something: without a shadow canary's records of its candidate."""
    return Decision.objects.exclude(shadow_record_q())


def _baseline_cached(parts: tuple, read) -> dict:
    """Return `read()`, from the cache when a reading of the same baseline is fresh enough.

    The key names the scope and the baseline's length and distance from now, so a changed
    window or baseline setting reads anew at once. Cache errors fall back to reading.
    """
    seconds = settings.OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS
    if seconds <= 0:
        return read()
    kind, filters, start, end = parts
    window_minutes = int((timezone.now() - end).total_seconds() // 60)
    described = json.dumps(
        [kind, sorted(filters.items()), (end - start).total_seconds(), window_minutes],
        default=str,
    )
    key = "guardrails:breaker-baseline:" + hashlib.sha256(described.encode()).hexdigest()[:40]
    try:
        cached = cache.get(key)
    except Exception:
        logger.warning("breaker baseline cache read failed", exc_info=True, extra={"key": key})
        return read()
    if cached is not None:
        return cached
    value = read()
    try:
        cache.set(key, value, timeout=seconds)
    except Exception:
        logger.warning("breaker baseline cache write failed", exc_info=True, extra={"key": key})
    return value
