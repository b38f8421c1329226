"""Where the MP4 download may go: https to public addresses only.

A download URL comes from Motion's answer, and the app fetches it from inside its own network:
a URL (or a redirect) aimed at a private, loopback or link-local address would make the app
read a service that only it can reach (a cloud metadata endpoint, an admin port) and post the
bytes into Slack. So every hop is checked twice: its URL before the request (`url_problem`:
https, a host), and the addresses at the moment of connecting (`PublicOnlyNetwork`: the host is
resolved, every address it resolves to must be public, and the connection is made to one of
those very addresses, so a second DNS answer cannot slip a private one in).

The one exception is a Motion API on loopback (the sandbox, the tests): for exactly that host
and port, plain http and loopback are allowed, since its CDN is served there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from dataclasses import dataclass

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.anyio import AnyIOBackend
from httpcore._backends.base import SOCKET_OPTION as SocketOption

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# NAT64's well-known prefix: on a network that has it, 64:ff9b::a00:1 reaches 10.0.0.1.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DownloadRefused(Exception):
    """The download would go somewhere it must not: `reason` in a few words, for the log line
    (never the URL, whose query is a credential)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Origin:
    """A host and port as the connection sees them (IPv6 without brackets, the port given)."""

    host: str
    port: int


def loopback_origin(motion_url: str | None) -> Origin | None:
    """Motion's own host and port when MOTION_API_URL is on loopback (the sandbox), else None."""
    if not motion_url:
        return None
    url = httpx.URL(motion_url)
    origin = _origin_of(url)
    if origin is None:
        return None
    if origin.host == "localhost":
        return origin
    address = _address(origin.host)
    return origin if address is not None and address.is_loopback else None


def url_problem(url: httpx.URL, exempt: Origin | None) -> str | None:
    """Why this URL may not be fetched, or None: https only, except Motion's own loopback
    origin (`exempt`), which may be plain http."""
    origin = _origin_of(url)
    if origin is None:
        return "not an http(s) address"
    if exempt is not None and origin == exempt:
        return None
    if url.scheme != "https":
        return f"{url.scheme} is not https"
    return None


def address_problem(address: Address) -> str | None:
    """Why a download may not connect to this address, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):  # an IPv4 address carried in an IPv6 one
        if address.ipv4_mapped is not None:  # ::ffff:10.0.0.1 reaches 10.0.0.1
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    for is_kind, kind in (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (address.is_private, "private"),
    ):
        if is_kind:
            return f"a {kind} address"
    if not address.is_global:  # shared (100.64/10), documentation ranges and the like
        return "not a public address"
    return None


class PublicOnlyNetwork(AsyncNetworkBackend):
    """httpcore's anyio backend, connecting only to public addresses (Motion's loopback origin
    excepted): the host is resolved here and the connection made to a checked address."""

    def __init__(self, exempt: Origin | None) -> None:
        self._inner = AnyIOBackend()
        self._exempt = exempt

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        if self._exempt is not None and Origin(host, port) == self._exempt:
            return await self._inner.connect_tcp(
                host, port, timeout=timeout, local_address=local_address,
                socket_options=socket_options,
            )  # fmt: skip
        addresses = await _resolve(host, port, timeout)
        for address in addresses:
            if problem := address_problem(address):
                raise DownloadRefused(f"the download host resolves to {problem}")
        failure: Exception | None = None
        for address in addresses:  # in the resolver's order, as a plain connect would
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )  # fmt: skip
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        raise DownloadRefused("a download never goes over a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(exempt: Origin | None) -> httpx.AsyncHTTPTransport:
    """httpx's transport (its TLS checks and pooling as they are) whose connections are opened
    by `PublicOnlyNetwork`. Given to the client explicitly, it also keeps proxies from the
    environment out: a proxy would connect on our behalf, past the check. httpx has no
    parameter for httpcore's network backend, so it is set on the pool before any connection
    exists; if a later httpx is built differently this fails loudly rather than unchecked."""
    transport = httpx.AsyncHTTPTransport()
    pool = getattr(transport, "_pool", None)  # private: a later httpx may rename it
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpx changed: the download guard cannot be installed")
    pool._network_backend = PublicOnlyNetwork(exempt)
    return transport


async def _resolve(host: str, port: int, timeout: float | None) -> list[Address]:
    """Every address the host resolves to (a literal address is itself)."""
    literal = _address(host)
    if literal is not None:
        return [literal]
    try:
        async with asyncio.timeout(timeout):
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError) as exc:  # socket.gaierror is an OSError
        raise httpcore.ConnectError(f"cannot resolve the download host ({exc})") from exc
    addresses: list[Address] = []
    for *_, sockaddr in found:
        address = _address(str(sockaddr[0]))
        if address is None:
            raise DownloadRefused("the download host resolves to an unreadable address")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError("the download host resolves to no address")
    return addresses


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone is not the address
    except ValueError:
        return None


def _origin_of(url: httpx.URL) -> Origin | None:
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return Origin(url.host, url.port or (443 if url.scheme == "https" else 80))
