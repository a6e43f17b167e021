"""The local stack as `howhot up` runs it (embedded Tansu, local blobs, chDB), on free ports in a temp data dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.cli.stack import LocalStack
from libs.common.netutil import free_port
from libs.common.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data_dir = tmp_path_factory.mktemp("howhot-stack")
    env = dict(os.environ)
    env.update({
        "HOWHOT_DATA_DIR": str(data_dir),
        "HOWHOT_MODELS_DIR": str(Settings().models_dir.resolve()),  # reuse the converted models of `make install`
        "HOWHOT_LOG_JSON": "true",
        "HOWHOT_ANALYTICS_FLUSH_INTERVAL_S": "0.2",
    })
    for name in ("UPLOAD", "FACE", "SCORING", "SHARE", "ANALYTICS"):
        env[f"HOWHOT_{name}_PORT"] = str(free_port())
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
    local = LocalStack(settings, env=env, quiet=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()
