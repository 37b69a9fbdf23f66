"""Decision counts that the breaker checks compare: a window read fresh on every check, and a
baseline of the days before it, cached for a few minutes.

The baseline covers `mix_baseline_days` (7 by default) of decisions, so reading it on every
check would scan a week of rows of the scope each time: the check's cost would grow with the
week's volume, while the baseline's shares and means hardly move in a few minutes. The window
(`breaker_window_minutes`) is read on every check, because that is where a fault shows.
"""

import hashlib
import json
import logging
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, Q
from django.utils import timezone

from .models import Decision, DecisionOutcome
from .rollout_selectors import shadow_record_q

logger = logging.getLogger(__name__)

# A decision counts toward the error rate when it was applied or applying it was tried.
COUNTED = Q(applied_at__isnull=False) | ~Q(apply_error="")
ERROR = Q(outcome=DecisionOutcome.ERROR) | ~Q(apply_error="")


def scope_stats(
    filters: dict, window_start: datetime, baseline_start: datetime, baseline_end: datetime
) -> dict:
    """Return the window's counts and mean confidence of one scope, and its baseline's."""
    window = (
        live_decisions()
        .filter(**filters, created_at__gte=window_start)
        .aggregate(
            window_counted=Count("id", filter=COUNTED),
            window_errors=Count("id", filter=COUNTED & ERROR),
            window_total=Count("id"),
            window_confidence=Avg("confidence"),
        )
    )
    baseline = _baseline_cached(
        ("scope", filters, baseline_start, baseline_end),
        lambda: (
            live_decisions()
            .filter(**filters, created_at__gte=baseline_start, created_at__lt=baseline_end)
            .aggregate(baseline_total=Count("id"), baseline_confidence=Avg("confidence"))
        ),
    )
    return window | baseline


def mix_stats(
    *,
    channel_id: int,
    action_id: int,
    window_start: datetime,
    baseline_start: datetime,
    baseline_end: datetime,
) -> dict:
    """Return a channel's decisions, and those of one action, in the window and the baseline."""
    is_action = Q(action_id=action_id)
    window = (
        live_decisions()
        .filter(channel_id=channel_id, created_at__gte=window_start)
        .aggregate(
            window_total=Count("id"),
            window_action=Count("id", filter=is_action),
        )
    )
    baseline = _baseline_cached(
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
    return window | baseline


def live_decisions():
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
