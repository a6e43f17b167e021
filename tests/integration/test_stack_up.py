"""`howhot up` (libs.cli.stack) with a stand-in service: nothing it started outlives it, and its exit code says why it
stopped. The stack runs in a child process (signals, exit codes) with a real embedded Tansu broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.netutil import free_port

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]

FAKE_SERVICE = """
import http.server, os, threading, time
open(os.environ["FAKE_PIDFILE"], "w").write(str(os.getpid()))
if os.environ["FAKE_MODE"] == "never_healthy":  # still warming up when the user gives up
    while True:
        time.sleep(1)
class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["HOWHOT_UPLOAD_PORT"])), Healthy)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(2)
os._exit(3)  # healthy for a while, then crashes
"""

DRIVER = """
import sys
import libs.cli.stack as stack
from libs.common.settings import Settings

class FakeSpec(stack.ServiceSpec):
    @property
    def module(self):
        return "fake_howhot_service"
    def implemented(self):
        return True

stack.SERVICES = (FakeSpec("upload", "upload", "stand-in"),)
sys.exit(stack.run_up(Settings()))
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


@pytest.fixture
def run_up_process(tmp_path: Path) -> Iterator:
    """Start `run_up` in a child process with the stand-in service in ``mode``; returns the process and the pids of
    everything it started (stand-in, broker) once the stand-in runs. Kills leftovers after the test."""
    started: list[int] = []
    processes: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[subprocess.Popen[str], list[int]]:
        (tmp_path / "fake_howhot_service.py").write_text(textwrap.dedent(FAKE_SERVICE))
        (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
        pidfile = tmp_path / "service.pid"
        env = dict(os.environ, HOWHOT_DATA_DIR=str(tmp_path / "data"), HOWHOT_UPLOAD_PORT=str(free_port()),
                   FAKE_MODE=mode, FAKE_PIDFILE=str(pidfile), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO_ROOT}")
        env.pop("HOWHOT_KAFKA_BOOTSTRAP", None)
        process = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], env=env, cwd=REPO_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert process.poll() is None, f"howhot up exited early: {process.communicate()[0]}"
            assert time.monotonic() < deadline, "the stand-in service never started"
            time.sleep(0.1)
        children = _children(process.pid)
        started.extend(children)
        assert int(pidfile.read_text()) in children and len(children) == 2  # the stand-in and the embedded broker
        return process, children

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    for pid in started:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_startup_stops_everything_started(run_up_process, signum: int) -> None:
    process, children = run_up_process("never_healthy")
    time.sleep(0.5)  # waiting for the service's health check, as during a model warm-up
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    assert [pid for pid in children if _alive(pid)] == [], f"left running after `howhot up` exited:\n{out}"
    assert process.returncode == 128 + signum, out
    assert "interrupted" in out and "Traceback" not in out


def test_a_crashed_service_stops_the_stack_with_a_nonzero_exit_code(run_up_process) -> None:
    process, children = run_up_process("crash")
    out, _ = process.communicate(timeout=90)
    assert "service upload exited (3)" in out and "Stopped." in out
    assert process.returncode == 1, out  # not an orderly stop: scripts and supervisors must see it
    assert [pid for pid in children if _alive(pid)] == []


def test_a_failed_topic_setup_stops_the_embedded_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from libs.cli import stack as stack_module
    from libs.common.broker import EmbeddedBroker
    from libs.common.settings import Settings

    brokers: list[subprocess.Popen[bytes]] = []

    class RecordingBroker(EmbeddedBroker):
        def start(self) -> EmbeddedBroker:
            started = super().start()
            assert self._process is not None
            brokers.append(self._process)
            return started

    async def failing_ensure_topics(*_: object) -> list[str]:
        raise RuntimeError("cannot create topics")

    monkeypatch.setattr(stack_module, "EmbeddedBroker", RecordingBroker)
    monkeypatch.setattr(stack_module, "ensure_topics", failing_ensure_topics)
    monkeypatch.setenv("HOWHOT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HOWHOT_KAFKA_BOOTSTRAP", raising=False)
    local = stack_module.LocalStack(Settings(), quiet=True)
    try:
        with pytest.raises(RuntimeError, match="cannot create topics"):
            local.start()
        assert len(brokers) == 1
        assert brokers[0].poll() is not None, "the embedded broker was left running"
        assert local.broker is None
    finally:
        for process in brokers:
            if process.poll() is None:
                process.kill()
                process.wait()
