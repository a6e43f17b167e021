"""Fault-injection fixtures: a private local stack per test module (faults must not disturb other tests' stacks), and
an S3FaultProxy between boto3 and the session's moto server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libs.cli.stack import LocalStack, stack_on_free_ports
from tests.faults.s3_fault_proxy import S3FaultProxy


def build_stack(data_dir: Path, **extra_env: str) -> LocalStack:
    """A LocalStack like tests/e2e's, on free loopback ports in ``data_dir``; not started."""
    env = {"HOWHOT_UPLOAD_BACKLOG_POLL_S": "0.5"}
    env.update(extra_env)
    return stack_on_free_ports(data_dir, **env)


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


@pytest.fixture(scope="module")
def module_fault_proxy(moto_s3: str) -> Iterator[S3FaultProxy]:
    """One S3FaultProxy in front of the session's moto server, for a module (a stack keeps its endpoint)."""
    with S3FaultProxy(moto_s3) as proxy:
        yield proxy


@pytest.fixture
def fault_proxy(module_fault_proxy: S3FaultProxy) -> Iterator[S3FaultProxy]:
    """The module's proxy with no faults armed and an empty request log, before and after the test."""
    module_fault_proxy.reset()
    yield module_fault_proxy
    module_fault_proxy.reset()
