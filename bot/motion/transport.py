"""The Motion client's network layer for httpx: httpcore's own asyncio (anyio) backend, with
the one question the connection pool asks most answered cheaply.

Before every request and after every response httpcore's pool asks each idle connection
whether the server has closed it ("is the socket readable?"). anyio answers that by building a
dict of every attribute of the socket, `getpeername()` included, then polling it: with the
status calls of 10,000 live jobs that was ~10 such questions per call and the largest single
cost of a poll (bench/poller.py --profile). Here the raw socket is looked up once per
connection and polled directly — the same test (httpcore's `is_socket_readable`), the same
answers; everything else is passed through unchanged.
"""

from __future__ import annotations

import socket
import ssl
import typing

from httpcore import AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.anyio import AnyIOBackend
from httpcore._backends.base import SOCKET_OPTION as SocketOption
from httpcore._utils import is_socket_readable


class _Stream(AsyncNetworkStream):
    """One connection: anyio's stream, its raw socket remembered for the readability test."""

    def __init__(self, inner: AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":  # TLS runs over the same socket: the same test applies
            return is_socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class MotionNetwork(AsyncNetworkBackend):
    """httpcore's anyio backend; its streams wrapped in `_Stream`."""

    def __init__(self) -> None:
        self._inner = AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _Stream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
