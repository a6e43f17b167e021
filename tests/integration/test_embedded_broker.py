"""The embedded Tansu broker (libs.common.broker): started means Tansu listens, not merely that the port answers."""

from __future__ import annotations

import socket

import pytest

from libs.common.broker import EmbeddedBroker
from libs.common.netutil import LOOPBACK, wait_for_port

pytestmark = pytest.mark.integration


def test_start_fails_clearly_when_the_port_is_already_taken() -> None:
    with socket.socket() as squatter:  # another broker, a second `howhot up`: accepts connections, is not ours
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        try:
            with pytest.raises(RuntimeError, match=rf"exited with code \d+ .*port {port}"):
                broker.start()  # BrokerStartError, a RuntimeError
            assert broker._process is None  # nothing left behind
        finally:
            broker.stop()


def test_start_returns_once_tansu_listens() -> None:
    with EmbeddedBroker() as broker:
        assert broker._process is not None and broker._process.poll() is None
        host, port = broker.bootstrap.split(":")
        wait_for_port(host, int(port), 1)
