"""The one place for settings: environment variables prefixed ``TASKDRIVE_``."""

from __future__ import annotations

import json
import secrets
import uuid
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024

# The embedded local pool keeps this id across restarts and machines, so file records stay valid.
DEFAULT_LOCAL_POOL_ID = uuid.UUID("6f1c2a8e-0d4b-5c3e-9a71-2b8f4e6d1c00")
PLACEHOLDER_SECRET = "change-me"


class _PoolBase(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    id: uuid.UUID = Field(description="Stable pool id; file records point at it.")
    name: str = Field(min_length=1, description="Human-readable pool name.")


class LocalPoolConfig(_PoolBase):
    kind: Literal["local"] = "local"
    path: Path = Field(description="Directory holding the pool's files.")


class S3PoolConfig(_PoolBase):
    kind: Literal["s3"] = "s3"
    endpoint: str | None = Field(default=None, description="S3 endpoint URL; AWS when absent.")
    bucket: str = Field(min_length=3)
    region: str = "us-east-1"
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None


PoolConfig = Annotated[LocalPoolConfig | S3PoolConfig, Field(discriminator="kind")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKDRIVE_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        default="development",
        description="production refuses placeholder secrets and never writes one to disk.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder for the embedded services' state, the local pool and dev secrets.",
    )
    log_level: str = "INFO"

    # Postgres
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://...). Embedded pgserver when absent.",
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        description="Connections per process (and the API's chunk ledger's pool, at most).",
    )
    database_max_overflow: int = Field(default=20, ge=0)

    # Temporal
    temporal_address: str = Field(default="127.0.0.1:7233", description="Temporal frontend.")
    temporal_embedded: bool | None = Field(
        default=None,
        description="Whether `taskdrive up` starts the Temporal dev server; by default it does "
        "unless TASKDRIVE_TEMPORAL_ADDRESS is set.",
    )
    temporal_namespace: str = "default"
    temporal_ui_port: int = Field(default=8233, description="Web UI port of the embedded server.")
    task_queue_prefix: str = Field(
        default="taskdrive", description="Task queues are named <prefix>-<category>."
    )

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    jwt_secret: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET),
        description="HS256 signing key. In development the placeholder is replaced by a key "
        "generated once into the data folder.",
    )
    jwt_issuer: str = "taskdrive"
    jwt_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # Pools
    pools: Annotated[list[PoolConfig], NoDecode] = Field(
        default_factory=list,
        description="JSON list of extra pools, beside the local pool in the data folder.",
    )
    default_pool_id: uuid.UUID = Field(
        default=DEFAULT_LOCAL_POOL_ID, description="Pool used when a request names none."
    )

    # Uploads
    upload_default_chunk_size: int = Field(default=5 * MiB, ge=1)
    upload_max_chunk_size: int = Field(default=16 * MiB, ge=1)
    upload_min_chunk_size: int = Field(
        default=256 * 1024, ge=1, description="Smallest chunk size a client may ask for."
    )
    upload_max_chunks: int = Field(default=100_000, ge=1)
    upload_stale_threshold_seconds: float = Field(
        default=24 * 3600, gt=0, description="An upload with no activity this long ends Expired."
    )
    upload_complete_wait_seconds: float = Field(
        default=30, ge=0, description="How long complete waits for assembly before answering 202."
    )
    task_retry_wait_seconds: float = Field(
        default=15,
        ge=0,
        description="A retry waits this long for the task's last run to close in Temporal "
        "(it closes a moment after its outcome shows), then answers 409.",
    )
    upload_hash_buffer_bytes: int = Field(
        default=64 * MiB,
        ge=0,
        description="Memory the API may keep chunk bodies in until the upload's SHA-256 reaches "
        "them, so it need not read them back from a local pool (0: always read back).",
    )
    upload_progress_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="The API tells an upload's workflow of its progress at most this often.",
    )

    # Worker
    activity_heartbeat_timeout_seconds: float = Field(default=30, gt=0)
    assembly_max_bytes_per_second: int = Field(
        default=0,
        ge=0,
        description="Caps the read rate of assembly and verification (0: unlimited), so "
        "background hashing cannot starve foreground I/O.",
    )
    task_max_bytes_per_second: int = Field(
        default=0,
        ge=0,
        description="Caps the rate at which a task step reads a file (0: unlimited), to share "
        "disks and networks with foreground work.",
    )
    archive_max_total_bytes: int = Field(
        default=10 * 1024**3,
        ge=0,
        description="FileDecompress: the most entry data an archive may expand to.",
    )
    archive_max_entries: int = Field(
        default=10_000, ge=0, description="FileDecompress: the most entries (directories count)."
    )
    archive_max_ratio: float = Field(
        default=100.0,
        ge=1,
        description="FileDecompress: the most bytes out per byte in (after the first MiB out).",
    )
    conversion_max_source_bytes: int = Field(
        default=128 * MiB,
        ge=1,
        description="FileConversion: the largest image read (it is held in memory).",
    )
    conversion_max_pixels: int = Field(
        default=100_000_000,
        ge=1,
        description="FileConversion: the most pixels an image may decode to.",
    )
    workflow_sandbox: bool = Field(
        default=False,
        description="Run the task workflows in Temporal's workflow sandbox, which fails a "
        "non-deterministic call (a clock, randomness, I/O) in workflow code loudly, at about "
        "twice the worker's CPU for a small task. The test suite turns it on; a production "
        "worker runs the code the suite checked, unsandboxed.",
    )
    worker_concurrency: int = Field(
        default=10, ge=1, description="Activities at once per category, unless set below."
    )
    category_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='Activities at once for named categories, e.g. {"files": 4}.',
    )

    def concurrency(self, category: str) -> int:
        return self.category_concurrency.get(category, self.worker_concurrency)

    @model_validator(mode="before")
    @classmethod
    def _parse_pools(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("pools"), str):
            raw = data["pools"].strip()
            data = {**data, "pools": json.loads(raw) if raw else []}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.upload_default_chunk_size > self.upload_max_chunk_size:
            raise ValueError("upload_default_chunk_size exceeds upload_max_chunk_size")
        ids = [pool.id for pool in self.all_pools]
        if len(ids) != len(set(ids)):
            raise ValueError("pool ids must be unique")
        if self.default_pool_id not in ids:
            raise ValueError(f"default_pool_id {self.default_pool_id} names no pool")
        if self.environment == "production" and (
            self.jwt_secret.get_secret_value() == PLACEHOLDER_SECRET
        ):
            raise ValueError("TASKDRIVE_JWT_SECRET must be set in production")
        return self

    @property
    def all_pools(self) -> list[LocalPoolConfig | S3PoolConfig]:
        local = LocalPoolConfig(id=DEFAULT_LOCAL_POOL_ID, name="local", path=self.data_dir / "pool")
        return [local, *self.pools]

    @cached_property
    def signing_key(self) -> str:
        """The JWT key; in development the placeholder gives way to a key kept in data_dir."""
        configured = self.jwt_secret.get_secret_value()
        if configured != PLACEHOLDER_SECRET:
            return configured
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            tmp.replace(path)
        return path.read_text().strip()

    @property
    def starts_embedded_temporal(self) -> bool:
        if self.temporal_embedded is not None:
            return self.temporal_embedded
        return "temporal_address" not in self.model_fields_set

    def task_queue(self, category: str) -> str:
        return f"{self.task_queue_prefix}-{category}"


def load_settings() -> Settings:
    return Settings()
