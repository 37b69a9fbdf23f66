"""Every line must map to a canonical SKU before anything automated happens to the order."""

from catalog.selectors import sku_candidates_for_title

from ..models import Order, OrderLine
from . import Finding, hold


def check_sku_mappings(*, order: Order) -> list[Finding]:
    """Hold the order and open an unmapped-SKU review item for every line without a SKU."""
    from reviews.services import review_item_open_unmapped_sku

    findings = []
    unmapped = sorted(
        (line for line in order.lines.all() if line.sku_id is None), key=lambda line: line.position
    )
    for line in unmapped:
        item = review_item_open_unmapped_sku(
            order=order,
            line=line,
            candidates=[c.as_dict() for c in sku_candidates_for_title(title=line.title)],
        )
        findings.append(unmapped_sku_hold(line, review_item=item.pk))
    return findings


def unmapped_sku_hold(line: OrderLine, *, review_item: int) -> Finding:
    return hold(
        "unmapped_sku",
        f"Line {line.position} ({line.identifier_label}) has no SKU mapping",
        line=line.position,
        review_item=review_item,
    )
