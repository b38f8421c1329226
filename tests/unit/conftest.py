"""tests/unit: no sockets, no servers — parsing, messages, the schedule, the store on a file.

Every test here runs with network sockets refused: a test that opens one (a server, a client,
the local Slack stand-in, the sandbox) fails at once and belongs in tests/e2e. Unix sockets stay
allowed (PostgreSQL's, when TEST_DATABASE_URL names one, and the event loop's own pipe).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

_NETWORK = (socket.AF_INET, socket.AF_INET6)


def _refusing(name: str) -> Any:
    real = getattr(socket.socket, name)

    def refuse(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in _NETWORK:
            raise AssertionError(
                f"tests/unit opens no network socket (socket.{name}({address!r})): "
                "this test belongs in tests/e2e"
            )
        return real(self, address, *args)

    return refuse


@pytest.fixture(autouse=True)
def no_network_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refusing(name))
    yield
