"""Authentication backend that reads a user's permissions in one query."""

import functools

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router

# The attributes ModelBackend (Django 5.2) caches the permission sets in. Using the same names
# lets code that reads or clears them, and any ModelBackend later in the list, use our caches.
USER_PERMISSIONS_CACHE = "_user_perm_cache"
GROUP_PERMISSIONS_CACHE = "_group_perm_cache"


class SingleQueryModelBackend(ModelBackend):
    """ModelBackend that reads a user's own and group permissions in one query instead of two.

    Login, inactive users, superusers and the per-request caching on the user object work as
    in ModelBackend: the first permission check of a request reads both sets with one
    `UNION ALL` and caches each under ModelBackend's attribute name.

    NOTE: it overrides ModelBackend's private `_get_permissions` and `_aget_permissions`
    (Django 5.2). The tests that compare both backends' results catch a change on upgrade.
    """

    def _get_permissions(self, user_obj, obj, from_name: str) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cache = f"_{from_name}_perm_cache"
        if not hasattr(user_obj, cache):
            _permissions_cache(user_obj, _permission_rows(user_obj))
        return getattr(user_obj, cache)

    async def _aget_permissions(self, user_obj, obj, from_name: str) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cache = f"_{from_name}_perm_cache"
        if not hasattr(user_obj, cache):
            rows = await sync_to_async(_permission_rows)(user_obj)
            _permissions_cache(user_obj, rows)
        return getattr(user_obj, cache)


def _permission_rows(user_obj) -> list[tuple[str, str, str]]:
    """Return (source, app label, codename) rows; source is "user", "group" or "all".

    Each half of the query joins the tables ModelBackend's query for that source joins, so the
    sets match its own (a test compares them). Written in SQL because building the ORM's
    union cost more Python time than the second query it saves.
    """
    superuser = bool(user_obj.is_superuser)
    database = router.db_for_read(Permission)
    with connections[database].cursor() as cursor:
        cursor.execute(_permissions_sql(superuser), [] if superuser else [user_obj.pk] * 2)
        return cursor.fetchall()


@functools.cache
def _permissions_sql(superuser: bool) -> str:
    user_model = get_user_model()
    user_link = user_model.user_permissions.through._meta.db_table
    group_link = Permission.group_set.through._meta.db_table
    membership = user_model.groups.through._meta.db_table
    if superuser:
        # ModelBackend gives a superuser every permission from both sources.
        return _permissions_select("all")
    own = (
        f"{_permissions_select('user')} JOIN {user_link} up ON up.permission_id = p.id "
        "WHERE up.user_id = %s"
    )
    from_groups = (
        f"{_permissions_select('group')} JOIN {group_link} gp ON gp.permission_id = p.id "
        f"JOIN {membership} ug ON ug.group_id = gp.group_id WHERE ug.user_id = %s"
    )
    return f"{own} UNION ALL {from_groups}"


def _permissions_select(source: str) -> str:
    return (
        f"SELECT '{source}', ct.app_label, p.codename FROM {Permission._meta.db_table} p "  # noqa: S608 - names from model metadata
        f"JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id"
    )


def _permissions_cache(user_obj, rows) -> None:
    """Cache both sets on `user_obj`, each only where ModelBackend would have read it."""
    own: set[str] = set()
    from_groups: set[str] = set()
    for source, app_label, codename in rows:
        name = f"{app_label}.{codename}"
        if source in ("user", "all"):
            own.add(name)
        if source in ("group", "all"):
            from_groups.add(name)
    permissions_cache_set(user_obj, own=own, from_groups=from_groups)


def permissions_cache_set(user_obj, *, own: set[str], from_groups: set[str]) -> None:
    """Cache a user's own and group permission names ("app_label.codename") where ModelBackend
    reads them, so the request's permission checks run no query. A cache already set stays."""
    for cache, permissions in (
        (USER_PERMISSIONS_CACHE, own),
        (GROUP_PERMISSIONS_CACHE, from_groups),
    ):
        if not hasattr(user_obj, cache):
            setattr(user_obj, cache, permissions)
