"""The upload session: create, chunks, complete, cancel (seed 000)."""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import select

from activities.files import storage_key
from api import task_runs
from api.chunk_body import chunk_stream
from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.schemas.common import CloudFile
from api.schemas.uploads import (
    CancelResult,
    ChunkReceipt,
    CompleteAccepted,
    CreateUploadRequest,
    CreateUploadResponse,
)
from api.temporal_calls import signal, wait_result
from taskdrive.db import uploads as ledger
from taskdrive.db.chunk_ledger import ChunkClaim, ChunkUpload
from taskdrive.db.models import File, Upload
from taskdrive.errors import ErrorCode, TaskdriveError
from taskdrive.params import REDACTED, sealed_wire
from taskdrive.pools import Pool, UploadNotFound, UploadTarget
from taskdrive.projection import TaskHeader
from taskdrive.secrets import seal
from taskdrive.statuses import TaskStatus
from taskdrive.tasks import SIGNAL_CANCEL, LifecycleSignal, TaskInput, TaskOutcome
from taskdrive.upload_params import (
    SIGNAL_COMPLETE,
    ChunkProgress,
    FileUploadParams,
    upload_progress_percent,
)
from tasktypes.file_upload import FILE_UPLOAD

router = APIRouter(prefix="/api/files/upload", tags=["uploads"])
log = logging.getLogger("taskdrive.api.uploads")

PROGRESS_STEPS = 20  # task.progress every 5%
TaskIdPath = Annotated[str, Path(max_length=64)]


def _target(upload: Upload | ChunkUpload) -> UploadTarget:
    return UploadTarget(
        upload.storage_key, upload.multipart_upload_id, upload.file_size, upload.chunk_size
    )


def _ensure_accepting(status: str) -> None:
    """Chunks and complete are taken only while the upload is open."""
    current = TaskStatus(status)
    if current == TaskStatus.PAUSED:
        raise TaskdriveError(
            ErrorCode.TASK_PAUSED, "the upload is paused; resume it first", status=current
        )
    if current.is_terminal:
        raise TaskdriveError(
            ErrorCode.TASK_GONE, f"the upload is {current} and takes no more chunks", status=current
        )


def _choose_chunk_size(body: CreateUploadRequest, pool: Pool, services: ServicesDep) -> int:
    settings = services.settings
    chunk_size = body.chunk_size or settings.upload_default_chunk_size
    if chunk_size > settings.upload_max_chunk_size:
        raise TaskdriveError(
            ErrorCode.VALIDATION_ERROR,
            f"chunkSize may be at most {settings.upload_max_chunk_size} bytes",
            field="chunkSize",
        )
    smallest = max(settings.upload_min_chunk_size, pool.min_chunk_size)
    if chunk_size < smallest and chunk_size < body.file_size:
        raise TaskdriveError(
            ErrorCode.VALIDATION_ERROR,
            f"chunkSize must be at least {smallest} bytes for pool {pool.name}",
            field="chunkSize",
        )
    chunks = math.ceil(body.file_size / chunk_size)
    most = min(settings.upload_max_chunks, pool.max_chunks)
    if chunks > most:
        raise TaskdriveError(
            ErrorCode.VALIDATION_ERROR,
            f"{chunks} chunks is more than the {most} allowed; use a larger chunkSize",
            field="chunkSize",
        )
    return chunk_size


@router.post("/create")
async def create_upload(
    *,
    body: CreateUploadRequest,
    principal: CurrentPrincipal,
    services: ServicesDep,
    session: SessionDep,
) -> CreateUploadResponse:
    """Start a resumable upload, or answer with the file the account already has.

    With ``encryptPassword`` the file is stored age-encrypted, so it is always uploaded: the
    account's plaintext copy, if any, is not that file."""
    if body.encrypt_password is None:
        existing = await session.scalar(
            select(File)
            .where(
                File.account_id == principal.account_id,
                File.hash == body.hash,
                File.deleted_at.is_(None),
            )
            .order_by(File.created_at)
            .limit(1)
        )
        if existing is not None:
            return CreateUploadResponse(file_exists=True, file=CloudFile.of(existing))

    settings = services.settings
    pool_id = body.pool_id or settings.default_pool_id
    try:
        pool = services.pools.get(pool_id)
    except KeyError:
        raise TaskdriveError(
            ErrorCode.POOL_NOT_FOUND, f"pool {pool_id} not found", poolId=str(pool_id)
        ) from None
    chunk_size = _choose_chunk_size(body, pool, services)
    chunks_count = math.ceil(body.file_size / chunk_size)
    task_id, file_id = str(uuid.uuid4()), uuid.uuid4()
    task_type = FILE_UPLOAD
    header = TaskHeader(
        task_id=task_id,
        account_id=str(principal.account_id),
        type=task_type.name,
        name=f"Upload {body.file_name}",
        category=task_type.category,
        priority=task_type.default_priority,
        parameters=body.model_dump(mode="json", by_alias=True, exclude={"encrypt_password"})
        | {"poolId": str(pool_id), "chunkSize": chunk_size}
        | ({"encryptPassword": REDACTED} if body.encrypt_password is not None else {}),
    )
    client = await services.temporal()
    key = storage_key(file_id)
    target = await pool.begin_upload(key, body.file_size, chunk_size)
    try:
        await task_runs.record_created(session, header, task_type.retry.max_retries, principal)
        spec = FileUploadParams(
            file_id=str(file_id),
            pool_id=str(pool_id),
            file_name=body.file_name,
            file_size=body.file_size,
            content_type=body.content_type,
            hash=body.hash,
            chunk_size=chunk_size,
            chunks_count=chunks_count,
            storage_key=key,
            multipart_upload_id=target.upload_id,
            bundle_id=str(body.bundle_id) if body.bundle_id else None,
            expired_at=body.expired_at.isoformat() if body.expired_at else None,
            stale_after_seconds=settings.upload_stale_threshold_seconds,
            encrypt_password=body.encrypt_password,
        )
        session.add(_upload_row(header, spec, body.expired_at))
        await session.flush()
        # Rows first, then the workflow, then commit: the workflow's first projection write waits
        # on these rows, and a failed start leaves nothing behind.
        inp = TaskInput(
            header=header,
            # Sealed for this task before it goes to Temporal; Postgres sees the placeholder.
            params=sealed_wire(spec, lambda secret: seal(settings, task_id, secret)),
            retry=task_type.retry,
            heartbeat_timeout_seconds=settings.activity_heartbeat_timeout_seconds,
        )
        await task_runs.start(services, client, inp)
        await session.commit()
    except BaseException:
        await pool.abort_upload(target)
        raise
    return CreateUploadResponse(
        file_exists=False, task_id=task_id, chunk_size=chunk_size, chunks_count=chunks_count
    )


def _upload_row(header: TaskHeader, spec: FileUploadParams, expired_at: datetime | None) -> Upload:
    return Upload(
        task_id=header.task_id,
        account_id=uuid.UUID(header.account_id),
        file_id=uuid.UUID(spec.file_id),
        file_name=spec.file_name,
        file_size=spec.file_size,
        content_type=spec.content_type,
        hash=spec.hash,
        chunk_size=spec.chunk_size,
        chunks_count=spec.chunks_count,
        pool_id=uuid.UUID(spec.pool_id),
        bundle_id=uuid.UUID(spec.bundle_id) if spec.bundle_id else None,
        expired_at=expired_at,
        storage_key=spec.storage_key,
        multipart_upload_id=spec.multipart_upload_id,
    )


@router.post("/chunk/{task_id}/{chunk_index}")
async def upload_chunk(
    *,
    task_id: TaskIdPath,
    chunk_index: int,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> ChunkReceipt:
    """Store one chunk (raw body or multipart field ``chunk``); 200 once it is durable."""
    async with services.ledger.transaction() as chunks:
        # The claim lives as long as this transaction: one writer per chunk.
        upload, claim = await chunks.claim(task_id, chunk_index, principal)
        _ensure_accepting(upload.status)
        if not 0 <= chunk_index < upload.chunks_count:
            raise TaskdriveError(
                ErrorCode.CHUNK_INDEX_OUT_OF_RANGE,
                f"chunk index must be between 0 and {upload.chunks_count - 1}",
                chunkIndex=chunk_index,
                chunksCount=upload.chunks_count,
            )
        target = _target(upload)
        expected = target.chunk_length(chunk_index)
        body = chunk_stream(request, max_bytes=services.settings.upload_max_chunk_size)
        declared = request.headers.get("content-length")
        raw = not request.headers.get("content-type", "").startswith("multipart/")
        if raw and declared is not None and declared.isdigit() and int(declared) != expected:
            raise _size_mismatch(chunk_index, expected, int(declared))
        if claim == ChunkClaim.STORED:
            raise TaskdriveError(
                ErrorCode.CHUNK_ALREADY_UPLOADED, "chunk already uploaded", chunkIndex=chunk_index
            )
        if claim == ChunkClaim.BUSY:
            raise TaskdriveError(
                ErrorCode.CHUNK_IN_PROGRESS,
                "this chunk is being uploaded by another request",
                chunkIndex=chunk_index,
            )
        pool = services.pools.get(upload.pool_id)
        # The body's pieces, kept for the upload's digest (api.frontier_hash).
        held = services.frontier.holder(pool)
        try:
            try:
                size = await pool.write_chunk(
                    target, chunk_index, held.tee(body) if held is not None else body
                )
            except ValueError as exc:
                raise _size_mismatch(chunk_index, expected, None, str(exc)) from exc
            except UploadNotFound as exc:
                raise TaskdriveError(
                    ErrorCode.TASK_GONE, "the upload has ended", taskId=task_id
                ) from exc
            totals = await chunks.record(task_id, chunk_index, size)
        except BaseException:
            if held is not None:
                held.release()
            raise
        services.frontier.chunk_stored(upload, pool, chunk_index, held)

    before = math.floor((totals.bytes_uploaded - size) / upload.file_size * PROGRESS_STEPS)
    after = math.floor(totals.bytes_uploaded / upload.file_size * PROGRESS_STEPS)
    if after != before or totals.chunks_uploaded in (1, upload.chunks_count):
        # Progress steps only (every 5%, the first and the last chunk), as seed 000's
        # task.progress: the ledger holds every chunk, the workflow needs just enough to report
        # progress and keep the upload alive, and each signal costs Temporal a workflow task
        # and history events (so their number is bounded whatever the upload's length). Sent
        # in the background, steps close together merged (api.progress_reports).
        progress = ChunkProgress(
            totals.chunks_uploaded,
            totals.bytes_uploaded,
            totals.last_activity.astimezone(UTC).isoformat(),
        )
        services.progress.report(task_id, progress)
    return ChunkReceipt(
        task_id=task_id,
        chunk_index=chunk_index,
        size=size,
        chunks_uploaded=totals.chunks_uploaded,
        chunks_count=upload.chunks_count,
        progress=upload_progress_percent(totals.bytes_uploaded, upload.file_size),
    )


def _size_mismatch(index: int, expected: int, got: int | None, detail: str = "") -> TaskdriveError:
    message = f"chunk {index} must be exactly {expected} bytes"
    return TaskdriveError(
        ErrorCode.CHUNK_SIZE_MISMATCH,
        f"{message}: {detail}" if detail else message,
        chunkIndex=index,
        expectedSize=expected,
        **({"receivedSize": got} if got is not None else {}),
    )


@router.post(
    "/complete/{task_id}",
    response_model=CloudFile,
    responses={202: {"model": CompleteAccepted, "description": "Still assembling"}},
)
async def complete_upload(
    *, task_id: TaskIdPath, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> CloudFile | JSONResponse:
    """Assemble and verify the file; the CloudFile, or 202 while that takes longer."""
    upload, task = await ledger.get_upload(session, task_id, principal)
    current = TaskStatus(task.status)
    if current == TaskStatus.COMPLETED:
        return await _file(session, upload.file_id)
    if current == TaskStatus.FAILED and task.error_code:
        code = ErrorCode.from_code(task.error_code) or ErrorCode.UPLOAD_FAILED
        raise TaskdriveError(code, task.error_message or "the upload failed", taskId=task_id)
    _ensure_accepting(task.status)
    missing = await ledger.missing_indices(session, upload)
    if missing:
        raise TaskdriveError(
            ErrorCode.MISSING_CHUNKS,
            f"{len(missing)} chunk(s) have not been uploaded",
            missingChunks=missing[:1000],
            missingCount=len(missing),
        )
    # Release the connection before waiting on Temporal.
    await session.close()
    await services.frontier.settle(upload, services.pools.get(upload.pool_id))
    client = await services.temporal()
    progress = ChunkProgress(
        upload.chunks_uploaded, upload.bytes_uploaded, datetime.now(UTC).isoformat()
    )
    await signal(client, task_id, SIGNAL_COMPLETE, progress, required=True)
    outcome = await wait_result(
        client, task_id, TaskOutcome, services.settings.upload_complete_wait_seconds
    )
    if outcome is None:
        accepted = CompleteAccepted(
            task_id=task_id,
            status=TaskStatus.IN_PROGRESS,
            message="assembling; the file appears when the task completes",
        )
        return JSONResponse(
            accepted.model_dump(mode="json", by_alias=True), status_code=status.HTTP_202_ACCEPTED
        )
    if outcome.status != TaskStatus.COMPLETED:
        raise TaskdriveError(
            ErrorCode.TASK_GONE, f"the upload ended {outcome.status}", status=outcome.status
        )
    async with services.sessions() as fresh:
        return await _file(fresh, uuid.UUID(outcome.results["fileId"]))


async def _file(session: SessionDep, file_id: uuid.UUID) -> CloudFile:
    row = await session.get(File, file_id)
    if row is None:
        raise TaskdriveError(ErrorCode.FILE_NOT_FOUND, f"file {file_id} not found")
    return CloudFile.of(row)


@router.delete("/task/{task_id}")
async def cancel_upload(
    *, task_id: TaskIdPath, principal: CurrentPrincipal, services: ServicesDep, session: SessionDep
) -> CancelResult:
    """Cancel the upload; its staging is removed (an S3 multipart upload is aborted)."""
    _, task = await ledger.get_upload(session, task_id, principal)
    current = TaskStatus(task.status)
    if current == TaskStatus.CANCELLED:
        return CancelResult(task_id=task_id, status=current)
    if current.is_terminal:
        raise TaskdriveError(
            ErrorCode.INVALID_TASK_STATE, f"a {current} upload cannot be cancelled", status=current
        )
    await session.close()
    services.frontier.forget(task_id)
    client = await services.temporal()
    reason = LifecycleSignal(reason="cancelled by the owner", by=str(principal.account_id))
    await services.progress.flush(task_id)
    await signal(client, task_id, SIGNAL_CANCEL, reason, required=True)
    outcome = await wait_result(
        client, task_id, TaskOutcome, services.settings.upload_complete_wait_seconds
    )
    return CancelResult(task_id=task_id, status=TaskStatus(outcome.status) if outcome else current)
