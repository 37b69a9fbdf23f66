"""Checking parsed rows against the catalog and against each other, one chunk at a time."""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from omsguard.money import is_currency, money_round

from ..models import NORMALIZED_TITLE_LENGTH, Channel, ChannelSkuMapping, ExternalIdKind, Sku
from ..normalize import normalize_title
from .reader import RawRow
from .rows import FIELD_FOR_COLUMN, ParsedRow, RowError, RowErrorCode, parse_row

# Sku fields an import can set, in model order. normalized_title follows from the title.
SKU_DATA_FIELDS = (
    "title",
    "normalized_title",
    "category",
    "price",
    "cost",
    "currency",
    "weight_grams",
    "length_mm",
    "width_mm",
    "height_mm",
    "attributes",
    "is_active",
)
_NEW_SKU_DEFAULTS: dict[str, Any] = {
    "category": "",
    "price": None,
    "cost": None,
    "currency": "",
    "weight_grams": None,
    "length_mm": None,
    "width_mm": None,
    "height_mm": None,
    "attributes": {},
    "is_active": True,
}

MappingKey = tuple[int, str, str]


class RowOutcome(StrEnum):
    # The row adds a SKU or a mapping and changes nothing that exists.
    CREATED = "created"
    # The row changes fields of an existing SKU (and may add a mapping).
    UPDATED = "updated"
    # The row adds and changes nothing.
    UNCHANGED = "unchanged"


@dataclass(slots=True)
class AcceptedRow:
    """A row that passed validation, reduced to what the apply phase writes.

    `sku_values` is set when the row creates or changes its SKU. `sku_id` is the existing
    SKU's id, or None when this file creates the SKU. `new_mapping` is set only when the
    mapping does not exist yet.
    """

    number: int
    code: str
    outcome: RowOutcome
    sku_id: int | None = None
    sku_values: dict[str, Any] | None = None
    new_mapping: MappingKey | None = None


class RowValidator:
    """Validates the rows of one file in chunks, keeping what spans chunks.

    Rules across rows:
    - The first row with a title defines a SKU. A later row with a title for the same code is
      an error.
    - A channel identifier maps to one SKU only, set by the catalog or by the first row that
      maps it.
    - A row that only maps a code needs that SKU in the catalog, or a valid row of the file
      that defines it.

    NOTE: accepted rows stay in memory until the apply phase, about 1.7 KB per new SKU row
    (measured with tracemalloc on bench rows), so OMSGUARD_IMPORT_MAX_ROWS also bounds memory.
    """

    def __init__(
        self, *, columns: list[str], channels: dict[str, Channel], default_channel: Channel | None
    ) -> None:
        self.columns = set(columns)
        self.channels = channels
        self.default_channel = default_channel
        self.accepted: list[AcceptedRow] = []
        self._first_sku_row: dict[str, int] = {}
        self._accepted_sku_codes: set[str] = set()
        self._mapping_claims: dict[MappingKey, tuple[str, int]] = {}
        self._waiting_for_sku: list[AcceptedRow] = []

    @property
    def update_fields(self) -> list[str]:
        """The Sku fields an upsert overwrites: those the header sets, and what follows."""
        fields = [FIELD_FOR_COLUMN.get(column, column) for column in self.columns]
        fields = [field for field in SKU_DATA_FIELDS if field in fields]
        if "title" in fields:
            fields.append("normalized_title")
        if "currency" in fields and "price" not in fields:
            fields.append("price")
        return [*fields, "updated_at"]

    def validate_chunk(self, rows: list[RawRow]) -> list[RowError]:
        """Validate one chunk; accepted rows are kept, the errors are returned."""
        errors: list[RowError] = []
        parsed: list[ParsedRow] = []
        for row in rows:
            duplicate = self._duplicate_sku_row(row)
            result = duplicate or parse_row(
                row, channels=self.channels, default_channel=self.default_channel
            )
            if isinstance(result, list):
                errors.extend(result)
            else:
                parsed.append(result)

        existing_skus = _existing_skus({row.code for row in parsed})
        existing_mappings = _existing_mappings(row.mapping for row in parsed if row.mapping)
        for row in parsed:
            outcome = self._check(row, existing_skus, existing_mappings)
            if isinstance(outcome, list):
                errors.extend(outcome)
        return errors

    def finish(self) -> list[RowError]:
        """Settle rows that map a SKU which only this file defines; return their errors."""
        errors = []
        for row in self._waiting_for_sku:
            if row.code in self._accepted_sku_codes:
                self.accepted.append(row)
            else:
                errors.append(self._missing_sku_error(row.number, row.code))
        self._waiting_for_sku = []
        return errors

    def _duplicate_sku_row(self, row: RawRow) -> list[RowError] | None:
        code, title = row.cells.get("code", ""), row.cells.get("title", "")
        if not code or not title:
            return None
        first = self._first_sku_row.setdefault(code, row.number)
        if first == row.number:
            return None
        return [
            RowError(
                row.number,
                "code",
                code,
                RowErrorCode.DUPLICATE_SKU_ROW,
                f"SKU {code} is already defined in row {first}; put its mappings in rows "
                "without a title",
            )
        ]

    def _check(
        self,
        row: ParsedRow,
        existing_skus: dict[str, dict[str, Any]],
        existing_mappings: dict[MappingKey, tuple[int, str]],
    ) -> AcceptedRow | list[RowError]:
        existing = existing_skus.get(row.code)
        accepted = AcceptedRow(
            number=row.number,
            code=row.code,
            outcome=RowOutcome.UNCHANGED,
            sku_id=existing["id"] if existing else None,
        )
        errors: list[RowError] = []
        if row.fields is not None:
            errors.extend(self._check_sku(row, existing, accepted))
        if row.mapping is not None and not errors:
            errors.extend(self._check_mapping(row, existing_mappings, accepted))
        if errors:
            return errors

        self._accept(row, accepted)
        return accepted

    def _check_sku(
        self, row: ParsedRow, existing: dict[str, Any] | None, accepted: AcceptedRow
    ) -> list[RowError]:
        values = {**(existing or _NEW_SKU_DEFAULTS), **row.fields}
        errors = [
            RowError(row.number, column, "", RowErrorCode.MISSING, f"missing: {reason}")
            for column, reason in (
                ("price", "a SKU needs a price"),
                ("currency", "a SKU needs a currency"),
            )
            if values.get(column) in (None, "")
        ]
        if values["currency"] and not is_currency(values["currency"]):
            errors.append(
                RowError(
                    row.number,
                    "currency",
                    values["currency"],
                    RowErrorCode.INVALID_CURRENCY,
                    "the SKU's currency is not an ISO 4217 code; give a currency column",
                )
            )
        if errors:
            return errors

        values["price"] = money_round(Decimal(values["price"]), values["currency"])
        values["normalized_title"] = normalize_title(values["title"])[:NORMALIZED_TITLE_LENGTH]
        sku_values = {field: values[field] for field in SKU_DATA_FIELDS}
        if existing is None:
            accepted.outcome = RowOutcome.CREATED
            accepted.sku_values = sku_values
        elif any(sku_values[field] != existing[field] for field in SKU_DATA_FIELDS):
            accepted.outcome = RowOutcome.UPDATED
            accepted.sku_values = sku_values
        return []

    def _check_mapping(
        self,
        row: ParsedRow,
        existing_mappings: dict[MappingKey, tuple[int, str]],
        accepted: AcceptedRow,
    ) -> list[RowError]:
        channel, id_kind, external_id = row.mapping
        key = (channel.pk, id_kind, external_id)
        claim = self._mapping_claims.get(key)
        if claim is not None:
            claimed_code, claimed_row = claim
            if claimed_code == row.code:
                return []
            return [
                _conflict(
                    row,
                    f"{_describe(row.mapping)} is mapped to {claimed_code} in row "
                    f"{claimed_row}; one identifier maps to one SKU per channel",
                )
            ]

        mapped = existing_mappings.get(key)
        if mapped is not None:
            mapped_sku_id, mapped_code = mapped
            if accepted.sku_id is not None and mapped_sku_id == accepted.sku_id:
                return []
            return [
                _conflict(
                    row,
                    f"{_describe(row.mapping)} is already mapped to {mapped_code}, "
                    f"not {row.code}; change or delete that mapping first",
                )
            ]

        accepted.new_mapping = key
        if accepted.outcome == RowOutcome.UNCHANGED:
            accepted.outcome = RowOutcome.CREATED
        return []

    def _accept(self, row: ParsedRow, accepted: AcceptedRow) -> None:
        if row.mapping is not None:
            channel, id_kind, external_id = row.mapping
            self._mapping_claims.setdefault(
                (channel.pk, id_kind, external_id), (row.code, row.number)
            )
        if row.fields is not None:
            self._accepted_sku_codes.add(row.code)
            self.accepted.append(accepted)
        elif accepted.sku_id is not None or row.code in self._accepted_sku_codes:
            self.accepted.append(accepted)
        else:
            # The row defining this SKU may come later in the file, or may have failed.
            self._waiting_for_sku.append(accepted)

    def _missing_sku_error(self, number: int, code: str) -> RowError:
        first = self._first_sku_row.get(code)
        if first is not None:
            return RowError(
                number,
                "code",
                code,
                RowErrorCode.SKU_ROW_INVALID,
                f"SKU {code} is not in the catalog, and row {first}, which defines it, has errors",
            )
        return RowError(
            number,
            "code",
            code,
            RowErrorCode.UNKNOWN_SKU,
            f"SKU {code} is not in the catalog or in this file; add a row with its title",
        )


def _existing_skus(codes: set[str]) -> dict[str, dict[str, Any]]:
    if not codes:
        return {}
    rows = Sku.objects.filter(code__in=codes).order_by().values("id", "code", *SKU_DATA_FIELDS)
    return {row["code"]: row for row in rows}


def _existing_mappings(
    keys: Iterable[tuple[Channel, str, str]],
) -> dict[MappingKey, tuple[int, str]]:
    wanted = {(channel.pk, id_kind, external_id) for channel, id_kind, external_id in keys}
    if not wanted:
        return {}
    # All three columns, so the lookup can use the unique index on them.
    rows = ChannelSkuMapping.objects.filter(
        channel_id__in={key[0] for key in wanted},
        id_kind__in={key[1] for key in wanted},
        external_id__in={key[2] for key in wanted},
    ).values_list("channel_id", "id_kind", "external_id", "sku_id", "sku__code")
    return {
        (channel_id, id_kind, external_id): (sku_id, code)
        for channel_id, id_kind, external_id, sku_id, code in rows
        if (channel_id, id_kind, external_id) in wanted
    }


def _conflict(row: ParsedRow, reason: str) -> RowError:
    return RowError(
        row.number, "external_id", row.mapping[2], RowErrorCode.MAPPING_CONFLICT, reason
    )


def _describe(mapping: tuple[Channel, str, str]) -> str:
    channel, id_kind, external_id = mapping
    return f"{ExternalIdKind(id_kind).label} {external_id!r} on channel {channel.code}"
