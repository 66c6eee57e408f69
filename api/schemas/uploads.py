"""Wire models of the upload API (seed 000)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from api.schemas.common import CamelModel, CloudFile
from taskdrive.db.models import Task, Upload
from taskdrive.statuses import TaskStatus
from taskdrive.upload_params import upload_progress_percent


class CreateUploadRequest(CamelModel):
    file_name: str = Field(min_length=1, max_length=1024)
    file_size: int = Field(ge=1, description="Size in bytes (empty files are not accepted).")
    content_type: str = Field(min_length=1, max_length=255)
    hash: str = Field(description="SHA-256 of the whole file, hex.")
    pool_id: uuid.UUID | None = None
    bundle_id: uuid.UUID | None = None
    chunk_size: int | None = Field(default=None, ge=1)
    encrypt_password: SecretStr | None = Field(
        default=None,
        min_length=8,
        description="Store the file age-encrypted with this password (never stored itself).",
    )
    expired_at: datetime | None = None

    @field_validator("hash")
    @classmethod
    def _sha256_hex(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("must be a SHA-256 digest: 64 hexadecimal characters")
        return value

    @field_validator("file_name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or "\x00" in value or value in (".", ".."):
            raise ValueError("must be a file name, without path separators")
        return value


class CreateUploadResponse(CamelModel):
    file_exists: bool
    task_id: str | None = None
    chunk_size: int | None = None
    chunks_count: int | None = None
    file: CloudFile | None = None


class UploadTask(CamelModel):
    task_id: str
    file_name: str
    file_size: int
    content_type: str
    hash: str
    chunk_size: int
    chunks_count: int
    chunks_uploaded: int
    bytes_uploaded: int
    progress: float
    status: TaskStatus
    status_message: str | None
    error_code: str | None
    error_message: str | None
    pool_id: uuid.UUID
    bundle_id: uuid.UUID | None
    expired_at: datetime | None
    file_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_activity: datetime

    @classmethod
    def of(cls, upload: Upload, task: Task) -> UploadTask:
        status = TaskStatus(task.status)
        return cls(
            task_id=upload.task_id,
            file_name=upload.file_name,
            file_size=upload.file_size,
            content_type=upload.content_type,
            hash=upload.hash,
            chunk_size=upload.chunk_size,
            chunks_count=upload.chunks_count,
            chunks_uploaded=upload.chunks_uploaded,
            bytes_uploaded=upload.bytes_uploaded,
            progress=100.0
            if status == TaskStatus.COMPLETED
            else upload_progress_percent(upload.bytes_uploaded, upload.file_size),
            status=status,
            status_message=task.status_message,
            error_code=task.error_code,
            error_message=task.error_message,
            pool_id=upload.pool_id,
            bundle_id=upload.bundle_id,
            expired_at=upload.expired_at,
            file_id=upload.file_id if status == TaskStatus.COMPLETED else None,
            created_at=upload.created_at,
            updated_at=max(task.updated_at, upload.last_activity),
            last_activity=max(task.last_activity, upload.last_activity),
        )


class UploadProgressResponse(CamelModel):
    task_id: str
    status: TaskStatus
    progress: float
    chunks_uploaded: int
    chunks_count: int
    bytes_uploaded: int
    file_size: int
    last_activity: datetime


class ResumeInfo(UploadTask):
    uploaded_chunks: list[int]


class PoolInfo(CamelModel):
    id: uuid.UUID
    name: str
    kind: str


class UploadTaskDetails(UploadTask):
    pool: PoolInfo
    current_speed_bytes_per_second: float
    estimated_time_remaining_seconds: float | None


class ChunkReceipt(CamelModel):
    task_id: str
    chunk_index: int
    size: int
    chunks_uploaded: int
    chunks_count: int
    progress: float


class CompleteAccepted(CamelModel):
    task_id: str
    status: TaskStatus
    message: str


class UploadStats(CamelModel):
    total_tasks: int
    in_progress_tasks: int
    completed_tasks: int
    failed_tasks: int
    expired_tasks: int
    cancelled_tasks: int
    paused_tasks: int
    total_uploaded_bytes: int
    average_progress: float
    recent_activity: list[UploadTask]


class CleanupResult(CamelModel):
    removed_tasks: int


class CancelResult(CamelModel):
    task_id: str
    status: TaskStatus


class SortBy(StrEnum):
    FILENAME = "filename"
    FILESIZE = "filesize"
    CREATED_AT = "createdAt"
    UPDATED_AT = "updatedAt"
    LAST_ACTIVITY = "lastActivity"


SortDirection = Literal["asc", "desc"]
