"""SQLAlchemy models. ``tasks``/``task_events`` are the projection written by the workers;
``uploads``/``upload_chunks`` are the upload sessions written by the API; ``files`` is the
catalogue; ``pools`` mirrors the configured pools."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
        dict[str, Any]: JSONB,
    }


def _now() -> Mapped[datetime]:
    return mapped_column(server_default=func.now())


class Pool(Base):
    __tablename__ = "pools"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    # Public settings only (endpoint, bucket, path): credentials never reach the database.
    config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Task(Base):
    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    type: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    progress: Mapped[float] = mapped_column(Float, server_default=text("0"))
    status_message: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    results: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("50"))
    category: Mapped[str] = mapped_column(String(64))
    retry_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Guards the projection: a write applies only if it carries a higher sequence number.
    seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    last_activity: Mapped[datetime] = _now()
    estimated_duration_seconds: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Create under an Idempotency-Key: the task id is derived from (account, key); this keeps
    # a digest of the request so reusing the key for a different request is refused.
    request_digest: Mapped[str | None] = mapped_column(String(64))
    # The input of the task's latest run as its workflow got it (secrets sealed): a retry
    # runs the task again from it, long after Temporal has dropped the run's history.
    run_input: Mapped[dict[str, Any] | None]
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_tasks_account_type", "account_id", "type"),
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_last_activity", "last_activity"),
        Index("ix_tasks_type_status", "type", "status"),
    )


class TaskEvent(Base):
    """Every applied projection write: the audit trail of a task's transitions."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = _now()


class TaskLog(Base):
    """What a task's activities logged, in order, for ``GET /api/tasks/{id}/logs``."""

    __tablename__ = "task_logs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    """The activity (or logger) that wrote it."""
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    logged_at: Mapped[datetime]

    __table_args__ = (Index("ix_task_logs_task", "task_id", "id"),)


class File(Base):
    __tablename__ = "files"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    hash: Mapped[str] = mapped_column(String(64))
    pool_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pools.id"))
    bundle_id: Mapped[uuid.UUID | None]
    storage_key: Mapped[str] = mapped_column(String(1024))
    expired_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_files_account_hash", "account_id", "hash"),)


class FileRelocation(Base):
    """A move of a file's bytes under way (``activities.relocation``): noted before the copy
    starts, removed once the source is gone, so whatever interrupts the move, a later run or
    the task's cleanup finds which two objects to settle."""

    __tablename__ = "file_relocations"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    from_pool_id: Mapped[uuid.UUID]
    from_key: Mapped[str] = mapped_column(String(1024))
    to_pool_id: Mapped[uuid.UUID]
    to_key: Mapped[str] = mapped_column(String(1024))
    move: Mapped[dict[str, Any]]  # the move's record, as the step reports it
    created_at: Mapped[datetime] = _now()


class Upload(Base):
    """An upload session: what the API needs to accept chunks without asking Temporal."""

    __tablename__ = "uploads"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    file_id: Mapped[uuid.UUID]
    file_name: Mapped[str] = mapped_column(String(1024))
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    hash: Mapped[str] = mapped_column(String(64), index=True)
    chunk_size: Mapped[int] = mapped_column(BigInteger)
    chunks_count: Mapped[int] = mapped_column(Integer)
    chunks_uploaded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    bytes_uploaded: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    pool_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pools.id"))
    bundle_id: Mapped[uuid.UUID | None]
    expired_at: Mapped[datetime | None]
    storage_key: Mapped[str] = mapped_column(String(1024))
    # The S3 multipart upload id; NULL for local pools.
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024))
    # SHA-256 of every stored chunk in order, computed by the API as they arrived (local pools):
    # assembly then checks it instead of reading the whole file again. NULL: not (yet) known.
    verified_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    last_activity: Mapped[datetime] = _now()


class UploadChunk(Base):
    """The chunk ledger: a row exists only once the chunk's bytes are durable in the pool."""

    __tablename__ = "upload_chunks"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.task_id", ondelete="CASCADE"), primary_key=True
    )
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = _now()
