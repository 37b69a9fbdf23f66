"""Reads for the guardrail engine: the policy that judges an action, and the settings row."""

import copy
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from django.db.models import Q

from catalog.models import Channel

from .config_cache import config_cached, stamp_token
from .models import ActionType, GuardrailSettings, Policy, PolicyBand, PolicyVersion

# Inside `reads_shared()`: the values read so far in the block, by key.
_shared_reads: ContextVar[dict[Hashable, Any] | None] = ContextVar("reads_shared", default=None)

# Bands of published versions, per process, by (version id, version created_at). A stored
# version and its bands never change: PolicyVersion.save() rejects a change of its rules,
# bands are created with their version, and the admin cannot add, change or delete the bands
# of a stored version. The creation time is part of the key because SQLite can hand a rolled
# back version's id to the next version.
_BANDS_CACHE: dict[tuple[int, datetime], tuple[PolicyBand, ...]] = {}
# Versions are few (a handful per policy), so the cache is simply emptied when it reaches this.
BANDS_CACHE_MAX = 1024


def guardrail_settings() -> GuardrailSettings:
    """The editable engine settings; the row is created with its defaults on first use.

    Inside `reads_shared()`, every call after the first returns the same row, a copy of the
    one in the per-thread configuration cache.
    """
    if _shared_reads.get() is None:
        return _settings_read()
    return shared_read(
        "guardrail_settings", lambda: copy.copy(shared_config_read("settings_row", _settings_read))
    )


@contextmanager
def reads_shared() -> Iterator[None]:
    """Make each `shared_read` key read the database at most once in the block.

    Wrap work such as one decision, whose steps read the same rows (the engine settings,
    carrier services) one after another and never change them. A change saved inside the
    block is not seen by the block's later reads of that key. Nested blocks share the outer
    block's values.
    """
    if _shared_reads.get() is not None:
        yield
        return
    token = _shared_reads.set({})
    try:
        yield
    finally:
        _shared_reads.reset(token)


def reads_shared_active() -> bool:
    """Return whether the caller runs inside a `reads_shared()` block."""
    return _shared_reads.get() is not None


def shared_read(key: Hashable, read: Callable[[], Any]) -> Any:
    """Return `read()`, or inside `reads_shared()` the value an earlier call stored for `key`."""
    values = _shared_reads.get()
    if values is None:
        return read()
    if key not in values:
        values[key] = read()
    return values[key]


def shared_config_read(key: Hashable, read: Callable[[], Any]) -> Any:
    """Like `shared_read`, and inside `reads_shared()` also through the configuration cache.

    Use it only for reads of the tables `config_cache.WATCHED_MODELS` lists, and never change
    the object it returns: later decisions of the thread share it.
    """
    if _shared_reads.get() is None:
        return read()
    token = shared_read("config_stamp", stamp_token)
    return shared_read(key, lambda: config_cached(key, read, token=token))


def _settings_read() -> GuardrailSettings:
    settings_row, _ = GuardrailSettings.objects.get_or_create(pk=1)
    return settings_row


def action_get(*, code: str) -> ActionType | None:
    def read() -> ActionType | None:
        return ActionType.objects.filter(code=code, is_active=True).first()

    return shared_config_read(("action", code), read)


def policy_for(*, action: ActionType, channel: Channel | None) -> Policy | None:
    """The channel's own policy for the action, else the policy for all channels."""
    policies = Policy.objects.filter(action=action, live_version__isnull=False)
    if channel is not None:
        own = policies.filter(channel=channel).first()
        if own is not None:
            return own
    return policies.filter(channel__isnull=True).first()


def policy_version_live_for(*, action: ActionType, channel: Channel | None) -> PolicyVersion | None:
    """The live version that judges the action on the channel, with what evaluation reads.

    One query reads the policy rows (the channel's own and the all-channels one) with their
    live version and its groups. Inside `reads_shared()` the version comes from the
    configuration cache, whose stamp changes with every publication, so a newly published
    version still judges the very next decision in every process. The version's bands come
    from a per-process cache, because they never change once stored.
    """
    channel_id = channel.pk if channel is not None else None
    return shared_config_read(
        ("live_version", action.pk, channel_id),
        lambda: _policy_version_live_read(action=action, channel=channel),
    )


def _policy_version_live_read(
    *, action: ActionType, channel: Channel | None
) -> PolicyVersion | None:
    in_channel = Q(channel__isnull=True)
    if channel is not None:
        in_channel |= Q(channel=channel)
    policies = list(
        Policy.objects.filter(in_channel, action=action, live_version__isnull=False).select_related(
            "action",
            "channel",
            "live_version__approver_group",
            "live_version__escalation_group",
        )
    )
    # The channel's own policy wins over the all-channels one.
    policies.sort(key=lambda policy: policy.channel_id is None)
    if not policies:
        return None
    policy = policies[0]
    version = policy.live_version
    version.policy = policy
    _bands_attach(version)
    return version


def _bands_attach(version: PolicyVersion) -> None:
    """Set the version's bands as if prefetched, from the cache or one query."""
    key = (version.pk, version.created_at)
    bands = _BANDS_CACHE.get(key)
    if bands is None:
        bands = tuple(PolicyBand.objects.filter(version=version).order_by("position", "id"))
        if len(_BANDS_CACHE) >= BANDS_CACHE_MAX:
            _BANDS_CACHE.clear()
        _BANDS_CACHE[key] = bands
    queryset = version.bands.all()
    queryset._result_cache = list(bands)
    queryset._prefetch_done = True
    version._prefetched_objects_cache = {"bands": queryset}
