"""The role groups' inventory permissions, as the data migration grants them."""

import pytest

from tests.inventory.conftest import make_inventory_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("group", "allowed", "denied"),
    [
        ("cs_agent", ["view_stocklevel", "view_location"], ["view_stockevent", "add_stockevent"]),
        (
            "cs_manager",
            ["view_stocklevel", "view_reservation", "view_stockevent"],
            ["add_stockevent", "add_inventorydiscrepancy"],
        ),
        (
            "ops_manager",
            ["change_location", "add_location", "add_inventorydiscrepancy", "view_stockevent"],
            ["add_stockevent", "change_stocklevel", "delete_location"],
        ),
        ("integration", ["add_stockevent", "view_stocklevel"], ["view_stockevent"]),
    ],
)
def test_role_inventory_permissions(group, allowed, denied):
    user = make_inventory_user(f"user-{group}", group)

    for codename in allowed:
        assert user.has_perm(f"inventory.{codename}"), codename
    for codename in denied:
        assert not user.has_perm(f"inventory.{codename}"), codename
