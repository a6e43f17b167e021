"""`howhot up` (libs.cli.stack) and the ports it is configured with, using a stand-in service and a real Tansu broker:
a taken port is named before anything starts, and port 0 ("the OS picks") gives a stack whose URLs work."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from libs.cli import stack as stack_module
from libs.common.broker import EmbeddedBroker
from libs.common.netutil import LOOPBACK, free_port
from libs.common.settings import Settings

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
STAND_IN_HEALTH_TIMEOUT_S = 20.0  # the stand-in answers within a second; the real services get minutes

STAND_IN = """
import http.server, os
class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["HOWHOT_UPLOAD_PORT"])), Healthy).serve_forever()
"""


class StandInSpec(stack_module.ServiceSpec):
    """The upload slot of the stack, run by a tiny HTTP server that binds HOWHOT_UPLOAD_PORT like a service."""

    @property
    def module(self) -> str:
        return "howhot_stand_in_service"

    def implemented(self) -> bool:
        return True


def _stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int, bootstrap: str) -> stack_module.LocalStack:
    (tmp_path / "howhot_stand_in_service.py").write_text(STAND_IN)
    monkeypatch.setattr(stack_module, "SERVICES", (StandInSpec("upload", "upload", "stand-in"),))
    monkeypatch.setattr(stack_module, "HEALTH_TIMEOUT_S", STAND_IN_HEALTH_TIMEOUT_S)
    monkeypatch.setenv("HOWHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOWHOT_UPLOAD_PORT", str(port))
    monkeypatch.setenv("HOWHOT_KAFKA_BOOTSTRAP", bootstrap)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO_ROOT}")
    return stack_module.LocalStack(Settings(), env=env, quiet=True)


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    brokers: list[subprocess.Popen[bytes]] = []

    class RecordingBroker(EmbeddedBroker):
        def start(self) -> EmbeddedBroker:
            started = super().start()
            assert self._process is not None
            brokers.append(self._process)
            return started

    monkeypatch.setattr(stack_module, "EmbeddedBroker", RecordingBroker)
    with socket.socket() as holder:  # e.g. another `howhot up` still running
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        local = _stack(tmp_path, monkeypatch, port, bootstrap="")
        try:
            with pytest.raises(RuntimeError, match=f"port {port} .* already in use.*HOWHOT_UPLOAD_PORT"):
                local.start(dashboard=False)
            assert brokers == [], "the embedded broker was started for a stack that cannot start"
            assert local.processes == {}
        finally:
            local.stop()
            for process in brokers:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def test_port_zero_gives_a_stack_on_a_free_port_that_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_broker: EmbeddedBroker
) -> None:
    local = _stack(tmp_path, monkeypatch, 0, bootstrap=kafka_broker.bootstrap)
    try:
        local.start(dashboard=False)
        url = local.urls()["upload"]
        assert not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        local.stop()


def test_a_free_configured_port_is_used_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_broker: EmbeddedBroker
) -> None:
    port = free_port()
    local = _stack(tmp_path, monkeypatch, port, bootstrap=kafka_broker.bootstrap)
    try:
        local.start(dashboard=False)
        assert local.urls()["upload"] == f"http://{LOOPBACK}:{port}"
    finally:
        local.stop()
