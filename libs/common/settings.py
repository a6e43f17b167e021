"""Configuration: one pydantic-settings model per concern, all read from ``HOWHOT_*`` environment variables.

Every backend has an embedded default (Tansu found on a free port, a local blob directory, chDB under the data
directory) and a distributed one (Kafka, S3/MinIO, a ClickHouse server) chosen only by these settings.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".howhot")

Port = Annotated[int, Field(ge=0, le=65535)]  # 0: the OS picks a free port
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def _http_url(value: str) -> str:
    """The ``http(s)://host[:port]`` part of a URL; raises ValueError naming what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http:// or https:// URL, got {value!r}")
    _ = parts.port  # raises ValueError on a port that is not a number in 0..65535
    return value


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info masked (a DSN such as http://user:pass@clickhouse:8123 may carry
    one): safe for logs and ``howhot config``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:********@{host}").geturl()


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOWHOT_", extra="ignore", populate_by_name=True)

    def __init__(self, **values: Any) -> None:
        """As BaseSettings, but a ValidationError names each bad field by its ``HOWHOT_*`` variable."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            prefix = str(self.model_config.get("env_prefix", ""))
            errors = [
                {**err, "loc": (f"{prefix}{err['loc'][0]}".upper(), *err["loc"][1:]) if err["loc"] else ()}
                for err in exc.errors(include_url=False)
            ]
            raise ValidationError.from_exception_data(
                f"{type(self).__name__} (invalid HOWHOT_* setting)", errors  # type: ignore[arg-type]
            ) from None


class CoreSettings(_Base):
    """Where local state lives and how the process identifies itself."""

    data_dir: Path = DEFAULT_DATA_DIR
    log_level: str = "INFO"
    log_json: bool = True
    public_base_url: str = "http://127.0.0.1:8080"  # absolute http(s)://host[:port]; share links and cards use it

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        value = _http_url(value.rstrip("/"))
        parts = urlsplit(value)
        if parts.path or parts.query or parts.fragment:
            raise ValueError(f"must be scheme://host[:port] with no path (the site is served at /), got {value!r}")
        return value


class KafkaSettings(_Base):
    """The Kafka-protocol broker. Empty bootstrap means: ``howhot up`` starts an embedded Tansu broker."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_KAFKA_", extra="ignore")

    bootstrap: str = ""  # host:port[,host:port...]
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    client_id: str = "howhot"
    max_poll_records: int = 50  # small batches: a slow handler must never exceed max_poll_interval (aiokafka #848)
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000  # a killed consumer's partitions move on within seconds, not a minute
    heartbeat_interval_ms: int = 1_000
    handler_retries: int = 3
    retry_backoff_s: float = 0.2
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        for server in value.split(",") if value.strip() else []:
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) <= 65535:
                raise ValueError(f"must be a comma-separated list of host:port, got {value!r}")
        return value


class BlobSettings(_Base):
    """The blob store: a local directory (embedded) or an S3 bucket (MinIO, AWS)."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_BLOBS_", extra="ignore")

    backend: Literal["local", "s3"] = "local"
    local_dir: Path | None = None  # default: <data_dir>/blobs
    s3_endpoint: str | None = None
    s3_bucket: str = "howhot"
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_create_bucket: bool = False
    s3_max_attempts: int = 4  # tries per S3 request in all (botocore "standard" retries, jittered backoff)
    s3_timeout_s: float = 10.0  # connect and read timeout of each try
    # A photo whose stage keeps failing on storage errors this long is marked failed with a reason and its event
    # dead-lettered (libs/common/blobs/giveup.py); while the store accepts nothing at all, the stage keeps waiting.
    give_up_after_s: float = 300.0

    @field_validator("s3_endpoint")
    @classmethod
    def _s3_endpoint(cls, value: str | None) -> str | None:
        return _http_url(value) if value else value


class ClickHouseSettings(_Base):
    """The analytics store, always reached through clickhouse-connect: ``chdb://`` (embedded) or ``http://``."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_CLICKHOUSE_", extra="ignore")

    dsn: str = ""  # default: chdb:///<data_dir>/clickhouse
    database: str = "howhot"
    username: str = "default"
    password: SecretStr | None = None


class ModelSettings(_Base):
    """Where converted model weights live, and which ensemble profile to run."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_MODELS_", extra="ignore")

    dir: Path | None = None  # default: <data_dir>/models
    profile: Literal["default", "commercial-safe"] = "default"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # torch.compile the scoring ensemble's members: meant for a GPU. The warm-up compiles before the first photo
    # (~80 s on a CPU, where batch 8 gains ~6 %: benchmarks/results/scoring_speed.md). Off by default.
    compile: bool = False
    # torch intra-op threads per model service (face, scoring); 0 = one per core. On a host where the services share
    # few cores, 1 gives more photos/s: OpenMP threads spin and wait on each other when the cores are already busy.
    torch_threads: int = Field(default=0, ge=0)


class UploadSettings(_Base):
    """The upload service: public API and website."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_UPLOAD_", extra="ignore")

    host: str = "127.0.0.1"
    port: Port = 8080
    max_bytes: int = 15 * 1024 * 1024  # a 12-megapixel phone JPEG is ~5 MB; leave room for PNGs
    max_pixels: int = 40_000_000  # decompression-bomb guard; a 12 MP photo is 12e6
    max_side_stored: int = 2048  # the normalized stored copy; detection downsizes further anyway
    # The whole upload body must arrive within this many seconds (408 body_timeout past it): a stalled or trickling
    # body must not hold one of the admission slots for ever. 30 s moves 15 MB at 4 Mbit/s, a slow mobile uplink.
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Photos and everything derived are deleted after this (`howhot retention`); 0 would delete every photo at once.
    retention_days: int = Field(default=30, ge=1)
    # Admission control (services/upload/admission.py): shed uploads with 503 once this many photos wait in the
    # face + scoring consumer groups; ~2000 is under a minute of catch-up at the pipeline's design throughput.
    max_backlog: int = 2000
    backlog_poll_s: float = 2.0  # how often the consumer lag is re-measured (one admin round trip per poll)
    # Per-client token bucket (services/upload/ratelimit.py); burst 0 disables it (benchmarks, trusted clients).
    rate_limit_burst: int = 10  # a visitor may upload a handful of photos back to back
    rate_limit_per_minute: float = 12.0  # then one every 5 s, far above what a person does by hand
    rate_limit_max_clients: int = 100_000  # LRU bound on tracked clients: ~100 bytes each, ~10 MB at most
    rate_limit_ip_factor: int = 10  # a client IP (NAT, campus) gets this many visitors' worth of tokens


class FaceSettings(_Base):
    """The face service: detection and alignment."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_FACE_", extra="ignore")

    host: str = "127.0.0.1"
    port: Port = 8081
    detector: str = "retinaface_mobilenetv2"
    threshold: Probability = 0.9  # false positives scored ~0.8 are common
    max_faces: int = 10
    max_side: int = 1280
    max_batch: int = Field(default=8, ge=1)
    max_wait_ms: int = Field(default=20, ge=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 network on CUDA / CPUs with native bf16


class ScoringSettings(_Base):
    """The scoring service: the DEX ensemble and personalization."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_SCORING_", extra="ignore")

    host: str = "127.0.0.1"
    port: Port = 8082
    # faces per forward pass; 0 = auto: the size that suits the device (services/scoring/app.py: max_batch)
    max_batch: int = Field(default=0, ge=0)
    max_wait_ms: int = Field(default=10, ge=0)
    minor_threshold: Probability = 0.2  # withhold attractiveness when P(age < 18) exceeds this
    internal_url: str = ""  # where the upload service calls the personal API; default http://{host}:{port}
    personal_model: str = ""  # personalization bundle (.npz); "" = the shipped weights/personal_frl_london.npz
    min_ratings: int = 0  # ratings before a personal score is shown; 0 = the bundle's own threshold
    crowd_min_ratings: int = 0  # visitors' ratings before a face's visitors' score is shown; 0 = the default (5)
    rate_pool_size: int = 500  # newest rate-pool photos considered when picking faces for a rater


class ShareSettings(_Base):
    """The share service: result cards and share pages."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_SHARE_", extra="ignore")

    host: str = "127.0.0.1"
    port: Port = 8083
    internal_url: str = ""  # where the upload service proxies /s/* and /cards/*; default http://{host}:{port}


class AnalyticsSettings(_Base):
    """The analytics service: ingestion into ClickHouse and the query API."""

    model_config = SettingsConfigDict(env_prefix="HOWHOT_ANALYTICS_", extra="ignore")

    host: str = "127.0.0.1"
    port: Port = 8084
    # Up to 50,000 events per insert: each insert runs every materialized view and writes a part per rollup (a fixed
    # ~65-110 ms of CPU), so big batches under load cost ~35 % less CPU per event than 10,000 (at ~1 GB peak RSS
    # while catching up a backlog); at ordinary rates the flush interval decides and batches stay small.
    batch_size: int = 50_000
    flush_interval_s: float = 1.0
    # Processes that validate and encode big polls (services/analytics/offload.py); 0 keeps it all in process.
    decode_workers: int = Field(default_factory=lambda: 1 if (os.cpu_count() or 1) >= 2 else 0, ge=0)
    offload_min_records: int = Field(default=2_000, ge=1)  # smaller polls are not worth a round trip
    dashboard_port: Port = 8501
    api_url: str = ""  # where the dashboard reaches the query API; default http://{host}:{port}
    dashboard_token: SecretStr | None = None


class Settings:
    """All settings, read once. ``Settings()`` re-reads the environment (tests set variables, then build one)."""

    def __init__(self, **overrides: Any) -> None:
        self.core = overrides.get("core") or CoreSettings()
        self.kafka = overrides.get("kafka") or KafkaSettings()
        self.blobs = overrides.get("blobs") or BlobSettings()
        self.clickhouse = overrides.get("clickhouse") or ClickHouseSettings()
        self.models = overrides.get("models") or ModelSettings()
        self.upload = overrides.get("upload") or UploadSettings()
        self.face = overrides.get("face") or FaceSettings()
        self.scoring = overrides.get("scoring") or ScoringSettings()
        self.share = overrides.get("share") or ShareSettings()
        self.analytics = overrides.get("analytics") or AnalyticsSettings()

    @property
    def blob_dir(self) -> Path:
        return self.blobs.local_dir or self.core.data_dir / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.models.dir or self.core.data_dir / "models"

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse.dsn or f"chdb:///{(self.core.data_dir / 'clickhouse').resolve()}"

    def sections(self) -> dict[str, BaseSettings]:
        return {k: v for k, v in vars(self).items() if isinstance(v, BaseSettings)}

    def masked(self) -> dict[str, dict[str, Any]]:
        """The effective configuration with secrets masked, for ``howhot config``."""
        out: dict[str, dict[str, Any]] = {}
        for name, section in self.sections().items():
            values = section.model_dump(mode="json")
            for key, field in type(section).model_fields.items():
                raw = getattr(section, key)
                if isinstance(raw, SecretStr):
                    values[key] = "********"
                _ = field
            out[name] = values
        out["clickhouse"]["dsn"] = redact_url(self.clickhouse.dsn)
        out["derived"] = {
            "blob_dir": str(self.blob_dir),
            "models_dir": str(self.models_dir),
            "clickhouse_dsn": redact_url(self.clickhouse_dsn),
        }
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (composition roots call this once and pass the result down)."""
    return Settings()


__all__ = [
    "AnalyticsSettings",
    "BlobSettings",
    "ClickHouseSettings",
    "CoreSettings",
    "FaceSettings",
    "Field",
    "KafkaSettings",
    "ModelSettings",
    "ScoringSettings",
    "Settings",
    "ShareSettings",
    "UploadSettings",
    "get_settings",
    "redact_url",
]
