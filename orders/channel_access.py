"""Which channels an API user may read and write.

Integrations, the members of the integration group, act only for the channels granted to them
with a ChannelApiGrant (the admin's "Channel API grants"). Staff users and holders of
orders.ingest_any_channel act for every channel. People in the other roles are not limited by
channel: their permissions alone decide what they may do.

A view uses `channel_scoped` for its querysets, so another channel's object is not found
(404). It uses `channel_allowed` when the request body names the channel or order, and
answers 403 with the code `channel_not_allowed`.
"""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet

from .models import ChannelApiGrant

ANY_CHANNEL_PERMISSION = "orders.ingest_any_channel"
INTEGRATION_GROUP = "integration"
CHANNEL_NOT_ALLOWED = "channel_not_allowed"

User = AbstractBaseUser | AnonymousUser


def channel_limited(user: User) -> bool:
    """Return whether channel grants limit `user`: an integration that is neither staff nor
    allowed every channel."""
    if not user.is_authenticated or user.is_staff or user.has_perm(ANY_CHANNEL_PERMISSION):
        return False
    return user.groups.filter(name=INTEGRATION_GROUP).exists()


def channel_allowed(user: User, channel_id: int) -> bool:
    """Return whether `user` may act for the channel with id `channel_id`."""
    if not channel_limited(user):
        return True
    return ChannelApiGrant.objects.filter(user=user, channel_id=channel_id).exists()


def channel_codes_granted(user: User) -> QuerySet:
    """Return the codes of the channels granted to `user`, as a subquery."""
    return ChannelApiGrant.objects.filter(user=user).values("channel__code")


def channel_scoped(queryset: QuerySet, user: User, *, via: str = "channel") -> QuerySet:
    """Limit `queryset` to the rows whose channel (the relation `via`) is granted to `user`,
    when grants limit `user`; otherwise return it unchanged."""
    if not channel_limited(user):
        return queryset
    return queryset.filter(**{f"{via}__in": _channel_ids_granted(user)})


def channel_scoped_any(queryset: QuerySet, user: User, *, via: tuple[str, ...]) -> QuerySet:
    """Like `channel_scoped`, for rows that reach their channel by one of several relations,
    tried in order: a row counts under the first relation that is set."""
    if not channel_limited(user):
        return queryset
    granted = _channel_ids_granted(user)
    condition, earlier_unset = Q(), Q()
    for relation in via:
        condition |= earlier_unset & Q(**{f"{relation}__in": granted})
        earlier_unset &= Q(**{f"{relation}__isnull": True})
    return queryset.filter(condition)


def _channel_ids_granted(user: User) -> QuerySet:
    return ChannelApiGrant.objects.filter(user=user).values("channel_id")
