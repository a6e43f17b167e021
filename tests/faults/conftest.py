"""Fault-injection fixtures: a private local stack per test module (faults must not disturb other tests' stacks)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libs.cli.stack import LocalStack
from libs.common.netutil import free_port
from libs.common.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAMES = ("UPLOAD", "FACE", "SCORING", "SHARE", "ANALYTICS")


def build_stack(data_dir: Path, **extra_env: str) -> LocalStack:
    """A LocalStack like tests/e2e's, on free loopback ports in ``data_dir``; not started."""
    env = dict(os.environ)
    env.update({
        "HOWHOT_DATA_DIR": str(data_dir),
        "HOWHOT_MODELS_DIR": str(Settings().models_dir.resolve()),
        "HOWHOT_LOG_JSON": "true",
        "HOWHOT_ANALYTICS_FLUSH_INTERVAL_S": "0.2",
        "HOWHOT_UPLOAD_RATE_LIMIT_BURST": "0",  # fault tests upload in bursts from one address on purpose
        "HOWHOT_UPLOAD_BACKLOG_POLL_S": "0.5",
    })
    env.update(extra_env)
    for name in SERVICE_NAMES:
        env[f"HOWHOT_{name}_PORT"] = str(free_port())
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


@pytest.fixture(scope="module")
def stack_factory() -> Callable[..., LocalStack]:
    """``build_stack`` for tests that need a stack of their own shape (e.g. only the upload service)."""
    return build_stack


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = build_stack(tmp_path_factory.mktemp("howhot-faults"))
    local.start()
    try:
        yield local
    finally:
        local.stop()
