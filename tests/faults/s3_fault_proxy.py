"""A fault-injecting HTTP proxy for tests: sits between boto3 and moto's S3 server on loopback and misbehaves on cue.

Real S3 answers 500/503, stalls past the client's timeout, resets connections and cuts responses short; boto3's
retries and our BlobStore's error handling must survive all of that. Mocking botocore would only prove what the mock
was told, so this proxy speaks real HTTP/1.1 to the real client and forwards to the real moto server. A test arms
rules ("the next 3 GETs under photos/ answer 500", "30 % of all requests are dropped"), runs the code under test, and
reads back what the proxy did (``faults``, ``log``) to prove the faults were actually hit.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

UPSTREAM_TIMEOUT_S = 30.0  # moto answers in milliseconds; this only bounds a wedged upstream
DEFAULT_STALL_S = 30.0  # "delay beyond the client timeout": far beyond any timeout the tests configure
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"})
ERROR_CODES = {500: "InternalError", 503: "SlowDown"}  # what S3 itself puts in the XML body for these statuses
LOG_LIMIT = 10_000  # requests remembered for assertions; a test never makes more


class Fault(StrEnum):
    """How the proxy misbehaves for one request."""

    ERROR_500 = "500"  # S3-style InternalError XML body, connection kept alive
    ERROR_503 = "503"  # S3-style SlowDown XML body, connection kept alive
    STALL = "stall"  # hold the request past the client's read timeout, then forward it (a slow S3 that still acts)
    DROP = "drop"  # read the request, close the connection without an answer (upstream never sees it)
    CUT_REQUEST = "cut_request"  # forward the headers and half the body upstream, then cut both connections
    TRUNCATE = "truncate"  # forward, then answer with the full Content-Length but only half the body
    STALL_BODY = "stall_body"  # forward, send half the body, then hold the rest past the client's read timeout


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # None: until cleared
    fraction: float
    method: str | None
    key: re.Pattern[str] | None
    stall_s: float

    def matches(self, method: str, key: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return self.key is None or self.key.search(key) is not None


@dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy saw and what it did with it (``None``: forwarded untouched)."""

    method: str
    key: str
    fault: Fault | None
    at: float  # time.monotonic() on arrival


@dataclass
class _State:
    rules: list[_Rule] = field(default_factory=list)
    log: list[ProxiedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class S3FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` (moto); faults are armed with the methods below.

    Rules are checked in the order they were added; the first matching rule that fires decides the request. ``key`` is
    a regular expression searched in the object key (the URL path after the bucket, percent-decoded).
    """

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._state = _State()
        self._random = random.Random(seed)  # reproducible fractions
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases stalled requests
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- arming faults ---------------------------------------------------------------------------------------------

    def fail_next(
        self, count: int, fault: Fault, *, method: str | None = None, key: str | None = None,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        """The next ``count`` matching requests suffer ``fault``; later ones pass."""
        self._add(_Rule(fault, count, 1.0, method, _compile(key), stall_s))

    def fail_fraction(
        self, fraction: float, fault: Fault, *, method: str | None = None, key: str | None = None,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        """Each matching request suffers ``fault`` with probability ``fraction`` until :meth:`heal`."""
        self._add(_Rule(fault, None, fraction, method, _compile(key), stall_s))

    def fail_always(
        self, fault: Fault, *, method: str | None = None, key: str | None = None, stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        """Every matching request suffers ``fault`` until :meth:`heal` (a persistent fault)."""
        self._add(_Rule(fault, None, 1.0, method, _compile(key), stall_s))

    def heal(self) -> None:
        """Remove every rule: from now on every request is forwarded untouched."""
        with self._state.lock:
            self._state.rules.clear()

    def reset(self) -> None:
        """Remove every rule and forget every request seen so far (a fresh start for the next test)."""
        with self._state.lock:
            self._state.rules.clear()
            self._state.log.clear()

    def pending(self) -> int:
        """Faults still armed by ``fail_next`` (0: every one of them was hit)."""
        with self._state.lock:
            return sum(rule.remaining or 0 for rule in self._state.rules)

    # -- what happened ---------------------------------------------------------------------------------------------

    @property
    def log(self) -> list[ProxiedRequest]:
        with self._state.lock:
            return list(self._state.log)

    def faults(self, key: str | None = None) -> Counter[Fault]:
        """How many requests suffered each fault (optionally only those whose key matches ``key``)."""
        pattern = _compile(key)
        return Counter(
            r.fault for r in self.log if r.fault is not None and (pattern is None or pattern.search(r.key))
        )

    def requests(self, key: str | None = None, method: str | None = None) -> list[ProxiedRequest]:
        pattern = _compile(key)
        return [
            r for r in self.log
            if (pattern is None or pattern.search(r.key)) and (method is None or r.method == method)
        ]

    # -- internals -------------------------------------------------------------------------------------------------

    def _add(self, rule: _Rule) -> None:
        with self._state.lock:
            self._state.rules.append(rule)

    def _decide(self, method: str, key: str) -> _Rule | None:
        with self._state.lock:
            chosen: _Rule | None = None
            for rule in self._state.rules:
                if not rule.matches(method, key) or (rule.remaining is not None and rule.remaining <= 0):
                    continue
                if rule.fraction < 1.0 and self._random.random() >= rule.fraction:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                chosen = rule
                break
            self._state.rules = [r for r in self._state.rules if r.remaining is None or r.remaining > 0]
            if len(self._state.log) < LOG_LIMIT:
                self._state.log.append(ProxiedRequest(method, key, chosen.fault if chosen else None, time.monotonic()))
            return chosen

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up on a faulted request is the point of the exercise, not an error worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class _ProxyHandler(BaseHTTPRequestHandler):
    """One client connection (keep-alive): every request is faulted or forwarded to the upstream."""

    protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as botocore's urllib3 pool expects
    owner: S3FaultProxy

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log (pytest would show it for every failing test)."""

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            self._serve_one()
        except OSError:  # the client gave up (timeout) or we hung up on it: nothing left to answer
            self.close_connection = True

    def _serve_one(self) -> None:
        rule = self.owner._decide(self.command, _object_key(self.path))
        fault = rule.fault if rule else None
        if fault is Fault.CUT_REQUEST:
            self._cut_request()
            return
        body = self._read_body()
        if fault in (Fault.ERROR_500, Fault.ERROR_503):
            self._answer_error(int(fault.value))
        elif fault is Fault.DROP:
            self._hang_up()
        else:
            if fault is Fault.STALL and rule is not None and self.owner._stopping.wait(rule.stall_s):
                self._hang_up()
                return
            self._forward(body, fault=fault, stall_s=rule.stall_s if rule else 0.0)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _upstream_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}

    def _forward(self, body: bytes, *, fault: Fault | None, stall_s: float) -> None:
        upstream = http.client.HTTPConnection(*self.owner._upstream, timeout=UPSTREAM_TIMEOUT_S)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=self._upstream_headers())
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(payload)))
        if fault in (Fault.TRUNCATE, Fault.STALL_BODY) and len(payload) > 1:
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if fault is Fault.STALL_BODY:
                self.owner._stopping.wait(stall_s)
            self._hang_up()
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _answer_error(self, status: int) -> None:
        code = ERROR_CODES[status]
        xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
               f"<Message>injected by S3FaultProxy</Message></Error>").encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(xml) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    def _cut_request(self) -> None:
        """Send upstream the request line, headers and half the body, then cut both sides: an interrupted upload."""
        length = int(self.headers.get("Content-Length") or 0)
        partial = self.rfile.read(length // 2) if length else b""
        head = [f"{self.command} {self.path} HTTP/1.1"]
        head += [f"{k}: {v}" for k, v in self._upstream_headers().items()]
        with socket.create_connection(self.owner._upstream, timeout=UPSTREAM_TIMEOUT_S) as upstream:
            upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + partial)
            upstream.shutdown(socket.SHUT_RDWR)
        self._hang_up()

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


def _object_key(path: str) -> str:
    """``/bucket/photos/x.jpg?query`` → ``photos/x.jpg`` (path-style addressing, as S3BlobStore configures)."""
    bucket_and_key = unquote(urlsplit(path).path).lstrip("/")
    return bucket_and_key.partition("/")[2]
