"""docker-compose.yml (and its GPU override) are checked statically (no Docker engine here): every HOWHOT_ variable must
be a real setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from libs.common import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]


def known_variables() -> set[str]:
    names: set[str] = set()
    for obj in vars(settings_module).values():
        if isinstance(obj, type) and issubclass(obj, settings_module._Base) and obj is not settings_module._Base:
            prefix = obj.model_config.get("env_prefix", "")
            names.update(f"{prefix}{field}".upper() for field in obj.model_fields)
    return names


def compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.gpu.yml"])
def test_every_howhot_variable_in_compose_exists_in_the_settings(name: str) -> None:
    known = known_variables()
    used: set[str] = set()
    for service in compose(name)["services"].values():
        env = service.get("environment") or {}
        used.update(k for k in env if k.startswith("HOWHOT_"))
    assert used, "compose sets no HOWHOT_ variables"
    assert used - known == set(), f"unknown settings in {name}: {sorted(used - known)}"


def test_compose_runs_the_distributed_backends_and_every_service_from_one_image() -> None:
    services = compose()["services"]
    for backend in ("kafka", "minio", "minio-init", "clickhouse"):
        assert backend in services
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    howhot = {name: s for name, s in services.items() if s.get("image") == "howhot:latest"}
    assert {"upload", "face", "scoring", "share", "analytics"} <= set(howhot)
    builds = [s["build"] for s in services.values() if "build" in s]
    assert builds and all(b["dockerfile"] == "infra/docker/Dockerfile" for b in builds)
    assert (ROOT / "infra/docker/Dockerfile").exists()
    env = services["upload"]["environment"]
    assert env["HOWHOT_BLOBS_BACKEND"] == "s3" and env["HOWHOT_CLICKHOUSE_DSN"].startswith("http://")


def test_the_gpu_override_puts_the_model_services_on_an_nvidia_gpu() -> None:
    base, gpu = compose()["services"], compose("docker-compose.gpu.yml")["services"]
    assert set(gpu) == {"face", "scoring"} and set(gpu) <= set(base)
    dockerfile = (ROOT / "infra/docker/Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.MULTILINE))
    for service in gpu.values():
        assert service["environment"]["HOWHOT_MODELS_DEVICE"] == "cuda"
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        build = service["build"]
        assert build["dockerfile"] == "infra/docker/Dockerfile" and set(build["args"]) <= declared
        assert "download.pytorch.org/whl/cpu" not in build["args"]["TORCH_INDEX"]  # PyPI's Linux wheel is CUDA's


def test_kafka_keeps_its_log_in_the_mounted_volume() -> None:
    """apache/kafka writes its log to KAFKA_LOG_DIRS, under /tmp when unset: the named volume must be that folder, or
    topics, committed offsets and unconsumed events are lost whenever the container is recreated."""
    kafka = compose()["services"]["kafka"]
    mounted = {volume.split(":")[1] for volume in kafka["volumes"]}
    assert kafka["environment"].get("KAFKA_LOG_DIRS") in mounted


def test_every_service_starts_after_the_topics_exist() -> None:
    """Kafka in compose does not auto-create topics, and an aiokafka consumer whose topics are still missing gives up
    after request_timeout_ms: like `howhot up`, every service starts once the `topics` job has created them."""
    services = compose()["services"]
    assert services["topics"]["command"] == ["topics"] and "topics" not in services["topics"].get("depends_on", {})
    for name, service in services.items():
        if service.get("command", [None])[0] == "service":
            assert service["depends_on"].get("topics") == {"condition": "service_completed_successfully"}, name
