"""Channel adapters: each turns one channel's order payload into a CanonicalOrder.

An adapter module provides `parse_order(payload) -> CanonicalOrder`, raising AdapterError
(with the field and reason) for a payload that cannot become an order. Nothing outside the
adapter knows the channel's format.
"""

from importlib import import_module
from types import ModuleType

from catalog.models import ChannelKind

ADAPTER_MODULES: dict[str, str] = {
    ChannelKind.SHOPIFY: "orders.adapters.shopify",
    ChannelKind.CANONICAL: "orders.adapters.canonical",
    ChannelKind.WOOCOMMERCE: "orders.adapters.woocommerce",
    ChannelKind.SQUARE: "orders.adapters.square",
    ChannelKind.AMAZON: "orders.adapters.amazon",
    ChannelKind.EBAY: "orders.adapters.ebay",
}


class NoAdapter(LookupError):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"No order adapter for channel kind {kind!r}.")


def adapter_for(kind: str) -> ModuleType:
    """Return the adapter module for a channel kind, or raise NoAdapter."""
    try:
        return import_module(ADAPTER_MODULES[kind])
    except KeyError:
        raise NoAdapter(kind) from None
