"""Granting permissions to the role groups from data migrations.

Django creates permissions only after all migrations have run, so a migration that grants
them on a fresh database must create them first. These helpers do both. They take the
migration's historical `apps`, never the live models.
"""

from django.contrib.auth.management import create_permissions

# Role name -> permissions as "app_label.codename".
RolePermissions = dict[str, list[str] | tuple[str, ...]]


def role_permissions_grant(apps, role_permissions: RolePermissions) -> None:
    """Create the apps' permissions if missing, then add them to each role group."""
    _permissions_create(
        apps, {code.split(".")[0] for codes in role_permissions.values() for code in codes}
    )

    Group = apps.get_model("auth", "Group")
    for role, codes in role_permissions.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*_permissions(apps, codes))


def role_permissions_revoke(apps, role_permissions: RolePermissions) -> None:
    """Remove the permissions from each role group; the groups themselves stay."""
    Group = apps.get_model("auth", "Group")
    for role, codes in role_permissions.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(*_permissions(apps, codes, missing_ok=True))


def _permissions_create(apps, app_labels: set[str]) -> None:
    for app_label in sorted(app_labels):
        app_config = apps.get_app_config(app_label)
        # create_permissions skips app configs whose models_module is unset, as it is on the
        # migration state's; restore the value so the registry is left as it was.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True
        try:
            create_permissions(app_config, apps=apps, verbosity=0)
        finally:
            app_config.models_module = previous


def _permissions(apps, codes, *, missing_ok: bool = False) -> list:
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for code in codes:
        app_label, codename = code.split(".")
        found = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if found is None and not missing_ok:
            raise LookupError(f"Permission {code} does not exist.")
        if found is not None:
            permissions.append(found)
    return permissions
