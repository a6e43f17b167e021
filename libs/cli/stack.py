"""``howhot up``: the whole local stack in one command — embedded broker, topics, every implemented service.

Children are plain ``python -m services.<name>`` processes with the same HOWHOT_ environment, so what runs locally is
exactly what runs in a container. Ctrl-C (or SIGTERM) stops the services first (they drain and commit), then the broker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from libs.common.broker import EmbeddedBroker
from libs.common.bus import ensure_topics
from libs.common.netutil import free_port
from libs.common.settings import Settings

HEALTH_TIMEOUT_S = 180.0  # model warm-up on a cold 2-core machine takes a while
STOP_TIMEOUT_S = 35.0


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the stack: its package, where it listens, and what to tell the user."""

    name: str
    port_setting: str
    description: str

    @property
    def module(self) -> str:
        return f"services.{self.name}"

    def implemented(self) -> bool:
        return importlib.util.find_spec(f"{self.module}.__main__") is not None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("upload", "upload", "website and public API"),
    ServiceSpec("face", "face", "face detection and alignment"),
    ServiceSpec("scoring", "scoring", "DEX ensemble and personalization"),
    ServiceSpec("share", "share", "result cards and share pages"),
    ServiceSpec("analytics", "analytics", "ClickHouse ingestion and query API"),
)


def service_port(settings: Settings, spec: ServiceSpec) -> tuple[str, int]:
    section = getattr(settings, spec.port_setting)
    return section.host, section.port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


LOCAL_TORCH_THREADS = 1


class PortInUse(RuntimeError):
    """A port the stack is configured to listen on is taken (often by another ``howhot up``)."""


def _port_taken(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails now, as the service's own bind would (SO_REUSEADDR, like aiohttp's)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class LocalStack:
    """Starts and stops the local stack; usable from ``howhot up`` and from end-to-end tests."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None, quiet: bool = False) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.quiet = quiet
        self.broker: EmbeddedBroker | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = settings.core.data_dir / "logs"

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def start(self, only: list[str] | None = None, dashboard: bool = True) -> None:
        """Start the broker (unless one is configured), the topics and the services; wait until each is healthy.

        Whatever goes wrong meanwhile — a service that never gets healthy, ``ensure_topics`` failing, Ctrl-C or a
        signal handler raising — stops every child started so far and the broker before the error goes on: they run
        in sessions of their own, so nothing else would stop them.
        """
        try:
            self._start(only, dashboard)
        except BaseException:
            self.stop()
            raise

    def _claim_ports(self, specs: list[ServiceSpec], dashboard: bool) -> None:
        """Before anything starts: give a service configured on port 0 a free port (it must be known for the health
        check and the printed URL), and fail with the setting to change if a configured port is taken; otherwise the
        service dies on its bind after the broker started, or another stack's healthy service answers for it."""
        wanted = [(spec.name, spec.port_setting.upper(), getattr(self.settings, spec.port_setting)) for spec in specs]
        ports = [(name, f"HOWHOT_{setting}_PORT", section, "port") for name, setting, section in wanted]
        if dashboard and "analytics" in [spec.name for spec in specs]:
            ports.append(("dashboard", "HOWHOT_ANALYTICS_DASHBOARD_PORT", self.settings.analytics, "dashboard_port"))
        for name, variable, section, field in ports:
            port = getattr(section, field)
            if port == 0:
                port = free_port(section.host)
                setattr(section, field, port)
                self.env[variable] = str(port)
            elif _port_taken(section.host, port):
                raise PortInUse(f"port {port} on {section.host} for {name} is already in use (another `howhot up`?); "
                                f"stop what holds it or set {variable}")

    def _start(self, only: list[str] | None, dashboard: bool) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        specs = [s for s in SERVICES if s.implemented() and (only is None or s.name in only)]
        self._claim_ports(specs, dashboard)
        self.env.setdefault("HOWHOT_DATA_DIR", str(self.settings.core.data_dir.resolve()))
        # every service shares this machine's cores: one torch thread per model service gives more photos/s than
        # each grabbing all cores (benchmarks/results/load_spike.md); an explicit setting wins
        self.env.setdefault("HOWHOT_MODELS_TORCH_THREADS", str(LOCAL_TORCH_THREADS))
        if not self.settings.kafka.bootstrap:
            self.broker = EmbeddedBroker(log_file=self.log_dir / "tansu.log")
            self.broker.start()  # assigned first: an interrupted start still leaves stop() a broker to stop
            self.env["HOWHOT_KAFKA_BOOTSTRAP"] = self.broker.bootstrap
            self.settings.kafka.bootstrap = self.broker.bootstrap
            self._say(f"• broker: embedded Tansu at {self.broker.bootstrap} (memory storage)")
        else:
            self._say(f"• broker: {self.settings.kafka.bootstrap}")
        created = asyncio.run(ensure_topics(self.settings.kafka))
        self._say(f"• topics: {len(created)} created")
        for spec in specs:
            log = (self.log_dir / f"{spec.name}.log").open("ab")
            self.processes[spec.name] = subprocess.Popen(
                [sys.executable, "-m", spec.module], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for spec in specs:
            host, port = service_port(self.settings, spec)
            if not _wait_healthy(f"http://{host}:{port}/healthz", self.processes[spec.name], HEALTH_TIMEOUT_S):
                self.stop()
                raise RuntimeError(f"service {spec.name} did not become healthy; see {self.log_dir / spec.name}.log")
            self._say(f"• {spec.name:<10} http://{host}:{port}  ({spec.description})")
        if dashboard and "analytics" in self.processes:
            self._start_dashboard()

    def _start_dashboard(self) -> None:
        """The Streamlit dashboard, reading through the analytics query API (it never opens chDB itself)."""
        from services.analytics.dashboard_app.launch import dashboard_command

        log = (self.log_dir / "dashboard.log").open("ab")
        self.processes["dashboard"] = subprocess.Popen(
            dashboard_command(self.settings), env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = self.dashboard_url
        if not _wait_healthy(f"{url}/_stcore/health", self.processes["dashboard"], HEALTH_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the dashboard did not start; see {self.log_dir / 'dashboard.log'}")
        self._say(f"• dashboard  {url}  (virality dashboard)")

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.settings.analytics.host}:{self.settings.analytics.dashboard_port}"

    def urls(self) -> dict[str, str]:
        out = {}
        for spec in SERVICES:
            if spec.name in self.processes:
                host, port = service_port(self.settings, spec)
                out[spec.name] = f"http://{host}:{port}"
        if "dashboard" in self.processes:
            out["dashboard"] = self.dashboard_url
        return out

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.broker:
            self.broker.stop()
            self.broker = None

    def kill(self, name: str) -> None:
        """kill -9 one service (fault tests)."""
        process = self.processes.get(name)
        if process and process.poll() is None:
            process.kill()
            process.wait()


    def restart(self, name: str) -> None:
        """Start one service again (after ``kill``, in fault tests) with the stack's environment; wait until healthy."""
        spec = next(s for s in SERVICES if s.name == name)
        old = self.processes.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"service {name} is still running; kill it first")
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = process = subprocess.Popen(
            [sys.executable, "-m", spec.module], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        host, port = service_port(self.settings, spec)
        if not _wait_healthy(f"http://{host}:{port}/healthz", process, HEALTH_TIMEOUT_S):
            raise RuntimeError(f"service {name} did not become healthy again; see {self.log_dir / name}.log")


REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_TEST_ENV = {
    "HOWHOT_LOG_JSON": "true",
    "HOWHOT_ANALYTICS_FLUSH_INTERVAL_S": "0.2",  # rows show up in ClickHouse quickly for assertions
    "HOWHOT_UPLOAD_RATE_LIMIT_BURST": "0",  # every test client is 127.0.0.1; rate limits have their own unit tests
}


def stack_on_free_ports(data_dir: Path, **extra_env: str) -> LocalStack:
    """A LocalStack (not started) on free loopback ports with its data in ``data_dir``, reusing the model cache.

    For tests and benchmarks: the same services and code as ``howhot up``, isolated from any running stack.
    """
    env = dict(os.environ)
    env.update({"HOWHOT_DATA_DIR": str(data_dir), "HOWHOT_MODELS_DIR": str(Settings().models_dir.resolve())})
    env.update(FAST_TEST_ENV)
    env.update(extra_env)
    for spec in SERVICES:
        env[f"HOWHOT_{spec.port_setting.upper()}_PORT"] = str(free_port())
    env["HOWHOT_ANALYTICS_DASHBOARD_PORT"] = str(free_port())
    env["HOWHOT_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{env['HOWHOT_UPLOAD_PORT']}"
    env.pop("HOWHOT_KAFKA_BOOTSTRAP", None)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return LocalStack(settings, env=env, quiet=True)


class _StartupInterrupted(BaseException):  # like KeyboardInterrupt: not an error, a request to stop
    """Raised by ``run_up``'s signal handler while the stack is still starting, to abandon the start."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_up(settings: Settings) -> int:
    """Start everything, print the URLs (website/API first), block until Ctrl-C, stop cleanly.

    Exit code: 0 after an orderly stop (Ctrl-C, SIGTERM), 1 if the stack failed to start or a service crashed (the
    rest is stopped then), 128 + the signal's number if a signal interrupted the start (everything started is stopped).
    """
    stack = LocalStack(settings)
    starting = True
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return  # already stopping: a second Ctrl-C must not abandon the cleanup half-way
        stopping = True
        if starting:
            raise _StartupInterrupted(signum)  # leaves the blocking start; LocalStack.start stops what it started

    # installed before anything starts: startup takes minutes, and a signal then must stop what was started
    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        print("Starting Howhot…", flush=True)
        try:
            stack.start()
            starting = False
        except _StartupInterrupted as interrupted:
            stopping = True
            stack.stop()  # LocalStack.start stopped everything already, unless the signal came right after it
            print(f"\n✗ startup interrupted ({signal.Signals(interrupted.signum).name}); stopped.", file=sys.stderr)
            return 128 + interrupted.signum
        except Exception as exc:  # noqa: BLE001 - shown to the user with the log location
            print(f"✗ {exc}", file=sys.stderr)
            return 1
        return _serve(stack, lambda: stopping)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _serve(stack: LocalStack, stop_requested: Callable[[], bool]) -> int:
    """Print the URLs, then watch the services until a stop is requested (0) or one of them exits (1)."""
    urls = stack.urls()
    print("\nHowhot is up:")
    if "upload" in urls:
        print(f"  Website / API   {urls['upload']}/   (OpenAPI: {urls['upload']}/api/v1/openapi.json)")
    if "dashboard" in urls:
        print(f"  Dashboard       {urls['dashboard']}/")
    for name, url in urls.items():
        if name not in ("upload", "dashboard"):
            print(f"  {name:<15} {url}/healthz")
    print(f"  Logs            {Path(stack.log_dir).resolve()}\nPress Ctrl-C to stop.", flush=True)
    crashed = False
    try:
        while not stop_requested() and not crashed:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"✗ service {name} exited ({process.returncode}); see {stack.log_dir / name}.log",
                          file=sys.stderr, flush=True)
                    crashed = True
            if not crashed:
                time.sleep(0.5)
    finally:
        print("\nStopping…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return 1 if crashed else 0
