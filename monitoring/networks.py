"""Allow-lists of networks read from settings: /metrics clients and alert webhook targets."""

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks_parse(setting_name: str, values: Iterable[str]) -> tuple[Network, ...]:
    """Parse a setting's CIDR networks, raising ImproperlyConfigured on an invalid entry.

    A bare address counts as a one-address network. An entry with host bits set, such as
    10.1.2.3/8, is rejected rather than widened, because it is most likely a typo.
    """
    return _networks(setting_name, tuple(values))


@lru_cache(maxsize=16)
def _networks(setting_name: str, values: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip()))
        except ValueError as error:
            raise ImproperlyConfigured(
                f"{setting_name} contains {value!r}, which is not a network in CIDR notation "
                f"such as 10.0.0.0/8 or 2001:db8::/32 ({error}). Fix or remove it. Separate "
                "networks with commas."
            ) from error
    return tuple(networks)
