"""Token authentication that reads the token, its user and the user's permissions in one query.

DRF's TokenAuthentication reads the token with its user, and the first permission check of the
request then reads the permissions (SingleQueryModelBackend). Every API request with a token
makes that check, so on PostgreSQL both reads go into one statement: the permission sets come
back as two arrays and are cached on the user under ModelBackend's attribute names, as
SingleQueryModelBackend caches them. Other databases run DRF's own query.
"""

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router
from django.db.models import Model
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from omsguard.auth_backends import permissions_cache_set


class TokenPermissionsAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication, with the user's permissions read in the token's query.

    It returns and raises what DRF's (3.x) does: an unknown key raises "Invalid token.", an
    inactive user "User inactive or deleted.".
    """

    def authenticate_credentials(self, key: str) -> tuple[Model, Model]:
        model = self.get_model()
        database = router.db_for_read(model)
        if connections[database].vendor != "postgresql":
            return super().authenticate_credentials(key)

        with connections[database].cursor() as cursor:
            cursor.execute(_token_sql(model), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))

        token, user, own, from_groups = _token_from_row(model, database, row)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        permissions_cache_set(user, own=set(own), from_groups=set(from_groups))
        return user, token


def _token_from_row(model: type[Model], database: str, row: tuple) -> tuple:
    """Build the token and its user from one row as the ORM builds them (Model.from_db)."""
    user_model = get_user_model()
    token_fields = [field.attname for field in model._meta.concrete_fields]
    user_fields = [field.attname for field in user_model._meta.concrete_fields]
    split = len(token_fields)
    end = split + len(user_fields)

    token = model.from_db(database, token_fields, row[:split])
    user = user_model.from_db(database, user_fields, row[split:end])
    token.user = user
    return token, user, row[end], row[end + 1]


@functools.cache
def _token_sql(model: type[Model]) -> str:
    """Return the statement: token and user columns, then own and group permission names.

    The permission halves join the tables ModelBackend (Django 5.2) joins for each source, and a
    superuser gets every permission from both sources, as in ModelBackend.
    """
    user_model = get_user_model()
    token_columns = [f't."{field.column}"' for field in model._meta.concrete_fields]
    user_columns = [f'u."{field.column}"' for field in user_model._meta.concrete_fields]
    user_link = user_model.user_permissions.through._meta.db_table
    group_link = Permission.group_set.through._meta.db_table
    membership = user_model.groups.through._meta.db_table
    user_pk = f"u.{user_model._meta.pk.column}"
    names = (
        "SELECT ct.app_label || '.' || p.codename "  # noqa: S608 - names from model metadata
        f"FROM {Permission._meta.db_table} p "
        f"JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id"
    )
    own = f"{names} JOIN {user_link} up ON up.permission_id = p.id WHERE up.user_id = {user_pk}"
    from_groups = (
        f"{names} JOIN {group_link} gp ON gp.permission_id = p.id "
        f"JOIN {membership} ug ON ug.group_id = gp.group_id WHERE ug.user_id = {user_pk}"
    )
    key_column = model._meta.get_field("key").column
    user_key = model._meta.get_field("user").column
    return (
        f"SELECT {', '.join(token_columns + user_columns)}, "  # noqa: S608 - as above
        f"CASE WHEN u.is_superuser THEN ARRAY({names}) ELSE ARRAY({own}) END, "
        f"CASE WHEN u.is_superuser THEN ARRAY({names}) ELSE ARRAY({from_groups}) END "
        f"FROM {model._meta.db_table} t "
        f"JOIN {user_model._meta.db_table} u ON {user_pk} = t.{user_key} "
        f'WHERE t."{key_column}" = %s'
    )
