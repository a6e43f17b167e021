"""The Docker image (infra/docker/Dockerfile) runs Howhot from `pip install .`, not from a checkout: whatever the
installed package reads at run time must be in the wheel. The wheel is built here offline (no build isolation, no
dependencies) from the same files the Dockerfile copies, installed into a temporary folder and run from there."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[2]

MIGRATE_AND_LIST = textwrap.dedent("""
    import contextlib, io, json, sys
    import libs.common.analytics_store as store
    from libs.cli.main import main
    from libs.common.settings import Settings
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["migrate"])
    client = store.connect(Settings())
    applied = [r[0] for r in client.query("SELECT name FROM howhot.schema_migrations FINAL ORDER BY name").result_rows]
    tables = [r[0] for r in client.query("SHOW TABLES FROM howhot").result_rows]
    json.dump({"module": store.__file__, "said": out.getvalue(), "applied": applied, "tables": tables}, sys.stdout)
""")


def dockerfile_sources() -> list[str]:
    """What the Dockerfile copies into the image before `pip install .` (COPY <src>... <dest>)."""
    sources: list[str] = []
    for line in (REPO_ROOT / "infra/docker/Dockerfile").read_text().splitlines():
        if match := re.match(r"^COPY\s+(?!--)(.+)$", line.strip()):
            sources.extend(match.group(1).split()[:-1])
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site-packages-like folder holding the wheel built from the Dockerfile's sources."""
    root = tmp_path_factory.mktemp("package")
    src, dist, site = root / "src", root / "dist", root / "site"
    src.mkdir()
    for name in dockerfile_sources():
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)], check=True,
                   timeout=240)
    [wheel] = dist.glob("howhot-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=120)
    return site


def test_howhot_migrate_from_the_installed_package_creates_every_table(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOWHOT_")}
    env.update(PYTHONPATH=str(installed), HOWHOT_DATA_DIR=str(tmp_path / "data"),
               HOWHOT_CLICKHOUSE_DSN=f"chdb:///{tmp_path / 'clickhouse'}", HOWHOT_CLICKHOUSE_DATABASE="howhot")
    run = subprocess.run([sys.executable, "-c", MIGRATE_AND_LIST], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert Path(result["module"]).is_relative_to(installed), result["module"]  # the wheel's code, not the checkout's
    shipped = sorted(p.name for p in (REPO_ROOT / "infra/clickhouse").glob("*.sql"))
    assert result["applied"] == shipped, result["said"]
    assert {"events", "deleted_photos", "rating_genders", "photo_stages"} <= set(result["tables"])
