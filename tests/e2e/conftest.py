"""The local stack as `howhot up` runs it (embedded Tansu, local blobs, chDB), on free ports in a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from libs.cli.stack import LocalStack, stack_on_free_ports


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = stack_on_free_ports(tmp_path_factory.mktemp("howhot-stack"))
    local.start()
    try:
        yield local
    finally:
        local.stop()
