"""Writes for the fixes backlog: creating a fix item from labelled errors and updating it.

Creating needs reviews.add_fixitem, updating reviews.change_fixitem. An owner must be an
active user in the ops_manager or cs_manager group. Every change writes an audit entry with
the fields before and after.
"""

import logging
from datetime import date, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from guardrails.models import ActionType, Version
from guardrails.selectors import guardrail_settings
from guardrails.services import audit_record

from .models import ErrorLabel, FixItem, FixStatus, LabelKind, LabelTerm

logger = logging.getLogger(__name__)

ADD_PERMISSION = "reviews.add_fixitem"
CHANGE_PERMISSION = "reviews.change_fixitem"
OWNER_GROUPS = ("ops_manager", "cs_manager")
TITLE_MAX_LENGTH = FixItem._meta.get_field("title").max_length
MODEL_NAME_MAX_LENGTH = FixItem._meta.get_field("model_name").max_length
MODEL_VERSION_MAX_LENGTH = FixItem._meta.get_field("model_version").max_length
DESCRIPTION_MAX_LENGTH = 5000
RESOLUTION_MAX_LENGTH = 2000


class FixError(Exception):
    """A fix item change that cannot be made; `code` is stable, `field` names the bad input."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(message)


class FixForbidden(FixError):
    status = 403


class FixNotFound(FixError):
    status = 404


def fix_item_create(
    *,
    user: AbstractBaseUser,
    title: str,
    action: ActionType | str | None = None,
    model_name: str = "",
    model_version: str = "",
    cause: LabelTerm | int | None = None,
    owner: AbstractBaseUser | int | None = None,
    due_on: date | None = None,
    label_ids: tuple[int, ...] | list[int] = (),
    description: str = "",
) -> FixItem:
    """Create a backlog entry and link the given error labels to it.

    Its priority is the summed impact weight of the labels. Without `due_on` it is due
    `GuardrailSettings.fix_due_days` from today. A label that already belongs to a fix
    is rejected rather than moved.
    """
    _check_permission(user, ADD_PERMISSION, "create fix items")
    title = _title_clean(title)
    model_name = _text_clean(model_name, "model_name", MODEL_NAME_MAX_LENGTH)
    model_version = _text_clean(model_version, "model_version", MODEL_VERSION_MAX_LENGTH)
    action = _action_resolve(action)
    cause = _cause_resolve(cause)
    owner = owner_resolve(owner)
    if due_on is None:
        due_on = timezone.localdate() + timedelta(days=guardrail_settings().fix_due_days)
    check_due_on(due_on)
    description = _text_clean(description, "description", DESCRIPTION_MAX_LENGTH)
    label_ids = _ids_clean(label_ids)

    with transaction.atomic():
        labels = _labels_lock_unclaimed(label_ids)
        fix = FixItem.objects.create(
            title=title,
            description=description,
            action=action,
            model_name=model_name,
            model_version=model_version,
            cause=cause,
            priority=sum(label.impact.weight for label in labels),
            owner=owner,
            due_on=due_on,
            created_by=user,
        )
        ErrorLabel.objects.filter(pk__in=label_ids).update(fix=fix)
        audit_record(
            action="fix_item.created",
            target_type="fix_item",
            target_id=fix.pk,
            actor=user,
            after=_snapshot(fix) | {"labels": label_ids},
        )

    logger.info(
        "fix item created",
        extra={"fix_item": fix.pk, "labels": len(label_ids), "priority": fix.priority},
    )
    return fix


def fix_item_update(
    *,
    fix_id: int,
    user: AbstractBaseUser,
    status: str | None = None,
    owner: AbstractBaseUser | int | None = None,
    due_on: date | None = None,
    resolution: str | None = None,
    fixed_by_version_id: int | None = None,
    clear_fixed_by_version: bool = False,
) -> FixItem:
    """Change a fix item's status, owner, due date, resolution or fixing version.

    None leaves a field as it is, so an owner can be replaced but not removed. A fixing version
    is removed with `clear_fixed_by_version=True`. A new or removed fixing version is also set
    on every label of the fix. Marking the fix done records when, and moving it out of done
    clears that time. "Won't fix" needs a resolution that gives the reason. A due date may not
    move into the past, but an overdue one may stay as it is.
    """
    _check_permission(user, CHANGE_PERMISSION, "change fix items")
    if status is not None and status not in FixStatus.values:
        raise FixError(
            "invalid_status",
            f"Invalid status {status!r}; use one of {', '.join(FixStatus.values)}.",
            field="status",
        )
    if resolution is not None:
        resolution = _text_clean(resolution, "resolution", RESOLUTION_MAX_LENGTH)
    if clear_fixed_by_version and fixed_by_version_id is not None:
        raise FixError(
            "version_conflict",
            "Give a fixing version or clear it, not both.",
            field="fixed_by_version",
        )
    version = _version_resolve(fixed_by_version_id)

    with transaction.atomic():
        fix = FixItem.objects.select_for_update().filter(pk=fix_id).first()
        if fix is None:
            raise FixNotFound("not_found", f"Fix item #{fix_id} does not exist.")
        before = _snapshot(fix)
        changed = _changes_apply(
            fix,
            status=status,
            owner=owner,
            due_on=due_on,
            resolution=resolution,
            version=version,
            clear_version=clear_fixed_by_version,
        )
        if not changed:
            return fix
        fix.save(update_fields=changed)
        if "fixed_by_version" in changed:
            ErrorLabel.objects.filter(fix=fix).update(fixed_in=version)
        after = _snapshot(fix)
        audit_record(
            action="fix_item.updated",
            target_type="fix_item",
            target_id=fix.pk,
            actor=user,
            before={key: before[key] for key in after if before[key] != after[key]},
            after={key: after[key] for key in after if before[key] != after[key]},
        )

    logger.info("fix item updated", extra={"fix_item": fix.pk, "fields": changed})
    return fix


def owner_choices() -> list[AbstractBaseUser]:
    """Return the users who may own a fix: active members of the ops or CS manager groups."""
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=OWNER_GROUPS)
        .distinct()
        .order_by("username")
    )


def owner_resolve(owner: AbstractBaseUser | int | None) -> AbstractBaseUser | None:
    """Return the owner user for an id or user; raise FixError when they may not own fixes."""
    if owner is None:
        return None
    owner_id = owner if isinstance(owner, int) else owner.pk
    user = get_user_model().objects.filter(pk=owner_id, is_active=True).first()
    if user is None:
        raise FixError("unknown_owner", f"User {owner_id} does not exist.", field="owner")
    if not user.groups.filter(name__in=OWNER_GROUPS).exists():
        raise FixError(
            "owner_without_role",
            f"{user.get_username()} cannot own fixes: choose someone in the "
            f"{' or '.join(OWNER_GROUPS)} group.",
            field="owner",
        )
    return user


# Maximum due date of a fix, in days from today (about five years). A later date is taken as
# a typing error such as 9999-12-31, which would show millions of days left and never be
# overdue.
DUE_MAX_DAYS = 5 * 365


def check_due_on(value: date) -> None:
    """Raise FixError when a new due date is before today (UTC) or over DUE_MAX_DAYS ahead."""
    today = timezone.localdate()
    if value < today:
        raise FixError(
            "due_in_past",
            f"Due date {value.isoformat()} is in the past; choose {today.isoformat()} or later.",
            field="due_on",
        )
    latest = today + timedelta(days=DUE_MAX_DAYS)
    if value > latest:
        raise FixError(
            "due_too_far",
            f"Due date {value.isoformat()} is more than {DUE_MAX_DAYS} days (about five years) "
            f"ahead; choose {latest.isoformat()} or earlier.",
            field="due_on",
        )


def check_resolution(*, status: str, resolution: str) -> None:
    """Raise FixError when a fix is closed as won't fix without a resolution saying why."""
    if status == FixStatus.WONT_FIX and not resolution.strip():
        raise FixError(
            "resolution_required",
            "Say in the resolution why this will not be fixed.",
            field="resolution",
        )


# --- Steps -----------------------------------------------------------------------------------


def _changes_apply(
    fix: FixItem,
    *,
    status: str | None,
    owner: AbstractBaseUser | int | None,
    due_on: date | None,
    resolution: str | None,
    version: Version | None,
    clear_version: bool = False,
) -> list[str]:
    """Set the changed fields on the locked fix; return their names for `update_fields`."""
    changed = []
    if resolution is not None and resolution != fix.resolution:
        fix.resolution = resolution
        changed.append("resolution")
    if status is not None and status != fix.status:
        check_resolution(status=status, resolution=fix.resolution)
        fix.done_at = timezone.now() if status == FixStatus.DONE else None
        fix.status = status
        changed += ["status", "done_at"]
    owner_id = owner if isinstance(owner, int) or owner is None else owner.pk
    if owner_id is not None and owner_id != fix.owner_id:
        # Checked only when it changes, so a fix keeps an owner who has since lost the role.
        fix.owner = owner_resolve(owner_id)
        changed.append("owner")
    if due_on is not None and due_on != fix.due_on:
        check_due_on(due_on)
        fix.due_on = due_on
        changed.append("due_on")
    if version is not None and version.pk != fix.fixed_by_version_id:
        fix.fixed_by_version = version
        changed.append("fixed_by_version")
    if clear_version and fix.fixed_by_version_id is not None:
        fix.fixed_by_version = None
        changed.append("fixed_by_version")
    return changed


def _labels_lock_unclaimed(label_ids: list[int]) -> list[ErrorLabel]:
    """Lock the labels in pk order; raise FixError for missing ones or ones another fix owns."""
    labels = list(
        ErrorLabel.objects.select_for_update(of=("self",))
        .select_related("impact")
        .filter(pk__in=label_ids)
        .order_by("pk")
    )
    missing = sorted(set(label_ids) - {label.pk for label in labels})
    if missing:
        raise FixError(
            "unknown_labels",
            f"Error labels {_id_list(missing)} do not exist.",
            field="label_ids",
        )
    claimed = [label for label in labels if label.fix_id is not None]
    if claimed:
        fixes = sorted({label.fix_id for label in claimed})
        raise FixError(
            "labels_have_fix",
            f"Error labels {_id_list([label.pk for label in claimed])} already belong to fix "
            f"{_id_list(fixes, prefix='#')}.",
            field="label_ids",
        )
    return labels


def _check_permission(user: AbstractBaseUser, permission: str, what: str) -> None:
    if not user.has_perm(permission):
        raise FixForbidden("forbidden", f"You do not have permission to {what}.")


def _title_clean(title: str) -> str:
    title = (title or "").strip()
    if not title:
        raise FixError("title_missing", "A fix needs a title.", field="title")
    return _text_clean(title, "title", TITLE_MAX_LENGTH)


def _text_clean(value: str, field: str, max_length: int) -> str:
    value = (value or "").strip()
    if len(value) > max_length:
        raise FixError(
            "too_long",
            f"{field} has {len(value)} characters; at most {max_length} are allowed.",
            field=field,
        )
    return value


def _action_resolve(action: ActionType | str | None) -> ActionType | None:
    if action is None or isinstance(action, ActionType):
        return action
    if not action:
        return None
    found = ActionType.objects.filter(code=action).first()
    if found is None:
        raise FixError("unknown_action", f"There is no action {action[:64]!r}.", field="action")
    return found


def _cause_resolve(cause: LabelTerm | int | None) -> LabelTerm | None:
    if cause is None:
        return None
    if not isinstance(cause, LabelTerm):
        cause = LabelTerm.objects.filter(pk=cause).first()
    if cause is None or cause.kind != LabelKind.CAUSE:
        raise FixError("invalid_cause", "The cause must be a cause of the taxonomy.", field="cause")
    return cause


def _version_resolve(version_id: int | None) -> Version | None:
    if version_id is None:
        return None
    version = Version.objects.filter(pk=version_id).first()
    if version is None:
        raise FixError(
            "unknown_version", f"Version {version_id} does not exist.", field="fixed_by_version"
        )
    return version


def _ids_clean(label_ids: tuple[int, ...] | list[int]) -> list[int]:
    ids = []
    for label_id in label_ids:
        if not isinstance(label_id, int) or isinstance(label_id, bool) or label_id <= 0:
            raise FixError(
                "invalid_labels", f"Invalid error label id {label_id!r}.", field="label_ids"
            )
        ids.append(label_id)
    return sorted(set(ids))


def _id_list(ids: list[int], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{value}" for value in ids)


def _snapshot(fix: FixItem) -> dict[str, Any]:
    return {
        "title": fix.title,
        "status": fix.status,
        "owner": fix.owner.get_username() if fix.owner_id else None,
        "due_on": fix.due_on.isoformat(),
        "priority": fix.priority,
        "resolution": fix.resolution,
        "fixed_by_version": fix.fixed_by_version_id,
        "done_at": fix.done_at.isoformat() if fix.done_at else None,
    }
