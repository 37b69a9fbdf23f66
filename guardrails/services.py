"""Writes to the audit log."""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from orders.models import ActorKind

from .models import AuditEntry


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
    if actor is None and not system_label:
        raise ValueError("An audit entry needs either an actor or a system_label.")

    return AuditEntry.objects.create(
        actor_kind=ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        actor=actor,
        actor_label=actor.get_username() if actor is not None else system_label,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        reason=reason,
        before=before,
        after=after,
    )
