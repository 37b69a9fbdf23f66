"""Keep alert webhooks away from loopback, private, link-local and other internal addresses.

Anyone who may edit notification targets chooses where the server sends an HTTP POST, so
without this check an ops account could make it call internal services or a cloud metadata
endpoint (169.254.169.254). Two checks run:

- When a target is saved, `webhook_url_address_error` rejects a URL whose host is an internal
  IP literal (including shorthand such as 127.1) or a localhost name. It never resolves names,
  so saving works offline and a name that resolves to an internal address passes here.
- When a message is sent, `guarded_create_connection` resolves the host, rejects it if any
  address it resolves to is internal, and connects to the checked address itself. No second
  lookup happens, so DNS rebinding between the check and the connection cannot bypass it.

OMSGUARD_NOTIFY_ALLOWED_NETWORKS (CIDR list, empty by default) lets a deployment post to an
internal chat server on purpose.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings

from .networks import Network, networks_parse

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING_NAME = "OMSGUARD_NOTIFY_ALLOWED_NETWORKS"
ALLOW_HINT = f"Alert webhooks may not reach internal addresses unless {SETTING_NAME} allows them"
# IPv6 prefix that NAT64 gateways translate to the IPv4 address in the last 32 bits (RFC 6052).
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 6761 reserves these names for the local host, and resolvers may return 127.0.0.1 for
# them without asking DNS.
LOCALHOST_NAMES = ("localhost", "localhost.localdomain")


class BlockedAddressError(OSError):
    """Error for a webhook host that is, or resolves to, an address that alerts may not reach.

    An OSError, so urllib wraps it in URLError like any other connection failure.
    """

    def __init__(self, host: str, address: str, reason: str):
        super().__init__(
            f"{host} resolves to {address}, {_with_article(reason)} address. {ALLOW_HINT}"
        )
        self.host = host
        self.address = address
        self.reason = reason


def _with_article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def notify_networks_parse(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse OMSGUARD_NOTIFY_ALLOWED_NETWORKS, raising ImproperlyConfigured on an invalid entry.

    An entry with host bits set, such as 10.1.2.3/8, is rejected rather than widened, because
    it is most likely a typo.
    """
    return networks_parse(SETTING_NAME, values)


def _allowed_networks() -> tuple[Network, ...]:
    return notify_networks_parse(getattr(settings, SETTING_NAME, ()))


def address_block_reason(address: IPAddress) -> str | None:
    """Return the kind of internal address ("loopback", ...), or None when webhooks may reach it.

    An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64, 6to4) is judged by the
    IPv4 address too, because the packet may end up there. Addresses inside
    OMSGUARD_NOTIFY_ALLOWED_NETWORKS are always allowed.
    """
    # The embedded IPv4 address comes first so ::ffff:127.0.0.1 is named "loopback", not
    # "private" (the ipaddress module files the whole IPv4-mapped range as private).
    candidates = [*_embedded_ipv4(address), address]
    allowed = _allowed_networks()
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    for candidate in candidates:
        reason = _internal_kind(candidate)
        if reason:
            return reason
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address in NAT64_PREFIX:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    return embedded


def _internal_kind(address: IPAddress) -> str | None:
    # The order picks the most specific name for the error message: 127.0.0.1 is also
    # "private" to the ipaddress module, but "loopback" is more specific.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    # Catches the rest of the special-purpose ranges, such as the shared address space
    # 100.64.0.0/10, where some clouds serve their metadata endpoint (100.100.100.200).
    if not address.is_global:
        return "non-public"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """Parse `host` as an IP address, accepting the IPv4 shorthands that resolvers accept.

    `127.1`, `0x7f.0.0.1` and `2130706433` all connect to 127.0.0.1, because getaddrinfo
    (glibc 2.36, checked) resolves them to it, so they are judged as that address. Returns None
    for a name.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def webhook_url_address_error(url: str) -> str | None:
    """Explain why the URL's host may not receive alert webhooks, or return None.

    Checks IP literals and localhost names only, without resolving anything. The send-time
    check in `guarded_create_connection` covers names that resolve to internal addresses.
    """
    host = (urlsplit(url).hostname or "").rstrip(".")
    if not host:
        return None
    if host in LOCALHOST_NAMES or host.endswith(".localhost"):
        address = ipaddress.ip_address("127.0.0.1")
        reason = address_block_reason(address)
        if reason:
            return (
                f"{host} is the local host ({address}), {_with_article(reason)} address. "
                f"{ALLOW_HINT}."
            )
        return None
    address = ip_literal(host)
    if address is None:
        return None
    reason = address_block_reason(address)
    if reason:
        return f"{address} is {_with_article(reason)} address. {ALLOW_HINT}."
    return None


def guarded_create_connection(
    address: tuple[str, int],
    timeout: float | object = socket._GLOBAL_DEFAULT_TIMEOUT,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """Resolve the host, reject it when any address is internal, then connect to a checked one.

    A drop-in for socket.create_connection in http.client. Raises BlockedAddressError before
    any connection is made. Every address is checked, not only the first, because the
    connection may fall back to a later one when an earlier one refuses or times out.
    """
    host, port = address
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        resolved = ipaddress.ip_address(sockaddr[0].partition("%")[0])
        reason = address_block_reason(resolved)
        if reason:
            raise BlockedAddressError(host, str(resolved), reason)

    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        return sock
    raise last_error or OSError(f"getaddrinfo returned no address for {host}")
