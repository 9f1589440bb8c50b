"""The suite itself must not be able to reach the internet."""

import socket

import pytest
from pytest_socket import SocketConnectBlockedError


def test_connecting_to_a_public_address_is_refused() -> None:
    with (
        pytest.warns(UserWarning, match="1.1.1.1"),
        pytest.raises(SocketConnectBlockedError),
        socket.create_connection(("1.1.1.1", 443), timeout=1),
    ):
        pass


def test_loopback_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
    finally:
        server.close()
