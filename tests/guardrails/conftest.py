"""Fixtures for the guardrail tests: users per role and the shipped default policies."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from catalog.models import Channel
from guardrails.defaults import default_policies_load
from guardrails.selectors import guardrail_settings
from orders.models import ChannelApiGrant
from tests.conftest import ensure_role_groups, make_user


def make_staff_user(username: str, group: str) -> User:
    """A user of the role who may also open the Django admin."""
    user = make_user(username, group)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def default_policies(db) -> None:
    """The action catalog and default policies of the data migration.

    A transactional test flushes the migration's rows, so load them again when missing.
    """
    ensure_role_groups()
    default_policies_load()
    # Audit sampling draws at random; tests about sampling set their own rate, and every
    # other test must not get an audit-sample item by chance.
    settings_row = guardrail_settings()
    settings_row.audit_sample_start_rate = Decimal("0")
    settings_row.audit_sample_floor_rate = Decimal("0")
    settings_row.save(update_fields=["audit_sample_start_rate", "audit_sample_floor_rate"])


@pytest.fixture
def ops(db) -> User:
    """An ops manager with admin access: the role that edits policies."""
    return make_staff_user("olivia", "ops_manager")


@pytest.fixture
def manager(db) -> User:
    """A CS manager with admin access, who may view but not edit policies."""
    return make_staff_user("morgan", "cs_manager")


@pytest.fixture
def integration_user(db) -> User:
    """The API user of an AI agent; `channel_grant` lets it act on a channel's orders."""
    return make_user("agent-bot", "integration")


def channel_grant(user: User, channel: Channel) -> User:
    """Grant `user` the channel, as an admin does for an integration; return the user."""
    ChannelApiGrant.objects.get_or_create(user=user, channel=channel)
    return user
