"""Writes to channels, SKUs and mappings."""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from guardrails.services import audit_record

from .models import Channel, ChannelKind, ChannelSkuMapping, Sku

logger = logging.getLogger(__name__)


class MappingConflict(Exception):
    """The external id is already mapped to a different SKU on this channel."""

    def __init__(self, mapping: ChannelSkuMapping, wanted: Sku) -> None:
        self.mapping = mapping
        self.wanted = wanted
        super().__init__(
            f"{mapping.get_id_kind_display()} {mapping.external_id!r} on channel "
            f"{mapping.channel.code} is already mapped to {mapping.sku.code}, not {wanted.code}."
        )


def channel_upsert(
    *, kind: str, code: str, secret: str | None, name: str = ""
) -> tuple[Channel, bool]:
    """Create a channel or update its kind, name and secret. The secret is stored unchanged."""
    if kind not in ChannelKind.values:
        raise ValueError(
            f"Unknown channel kind {kind!r}. Supported kinds: {', '.join(ChannelKind.values)}."
        )

    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(code=code).first()
        created = channel is None
        if created:
            channel = Channel(code=code, kind=kind)
        elif channel.kind != kind:
            raise ValueError(
                f"Channel {code!r} exists with kind {channel.kind!r}; "
                f"its kind cannot change to {kind!r}."
            )
        if secret is not None:
            channel.webhook_secret = secret
        if name:
            channel.name = name
        channel.full_clean()
        channel.save()

        audit_record(
            action="channel.created" if created else "channel.updated",
            target_type="channel",
            target_id=channel.pk,
            system_label="add_channel command",
            after={
                "kind": channel.kind,
                "code": channel.code,
                "secret_changed": secret is not None,
            },
        )

    logger.info("channel saved", extra={"channel": code, "kind": kind, "was_created": created})
    return channel, created


def mapping_create(
    *,
    channel: Channel,
    id_kind: str,
    external_id: str,
    sku: Sku,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> ChannelSkuMapping:
    """Map a channel identifier to a SKU; an existing mapping to another SKU is a conflict.

    Mapping the same identifier to the same SKU again returns the existing mapping.
    """
    with transaction.atomic():
        mapping, created = ChannelSkuMapping.objects.select_related("sku", "channel").get_or_create(
            channel=channel, id_kind=id_kind, external_id=external_id, defaults={"sku": sku}
        )
        if not created and mapping.sku_id != sku.pk:
            raise MappingConflict(mapping, sku)

        if created:
            audit_record(
                action="mapping.created",
                target_type="channel_sku_mapping",
                target_id=mapping.pk,
                actor=actor,
                system_label="" if actor else "catalog",
                reason=reason,
                after={
                    "channel": channel.code,
                    "id_kind": id_kind,
                    "external_id": external_id,
                    "sku": sku.code,
                },
            )
    return mapping
