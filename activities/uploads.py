"""FileUpload's work: assemble and verify a finished upload (and store it encrypted when asked),
discard an abandoned one. The type's steps (``tasktypes.file_upload``) call these."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.crypt import (
    AGE_CONTENT_TYPE,
    SourceMismatch,
    encrypted_name,
    rewrite,
    rewritten_key,
)
from activities.hashing import sha256_of
from activities.runtime import Runtime
from activities.steps import StepFailed
from activities.streams import Pacer
from taskdrive.db.models import File, Upload, UploadChunk
from taskdrive.errors import ErrorCode
from taskdrive.fileops.age import encrypt_stream
from taskdrive.pools import Pool, UploadNotFound, UploadTarget
from taskdrive.upload_params import FileUploadParams

# Where the step may stop when asked (``StepContext.save``); the work is redone from the start.
StopPoint = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class UploadJob:
    """One upload, as its steps see it."""

    runtime: Runtime
    task_id: str
    account_id: str
    spec: FileUploadParams

    @property
    def pool(self) -> Pool:
        return self.runtime.pools.get(uuid.UUID(self.spec.pool_id))

    @property
    def target(self) -> UploadTarget:
        spec = self.spec
        return UploadTarget(
            key=spec.storage_key,
            upload_id=spec.multipart_upload_id,
            size=spec.file_size,
            chunk_size=spec.chunk_size,
        )


def file_results(file_id: str, name: str, size: int) -> dict[str, Any]:
    """The upload task's results: the file it made."""
    return {"fileId": file_id, "fileName": name, "fileSize": size}


async def assemble(job: UploadJob, stop_point: StopPoint) -> dict[str, Any]:
    """Turns the stored chunks into the file, verifies its SHA-256 and records it (an
    encrypted upload is recorded by ``encrypt``, once stored encrypted: its plaintext never
    appears in the catalogue). ``stop_point`` comes just before the record: a cancel or pause
    asked for meanwhile stops the step there, before the file exists for anyone.

    Safe to run again after a crash at any point: finishing is idempotent, the hash is
    recomputed from the stored bytes, and the file record is keyed by the reserved file id.
    """
    spec, sessions = job.spec, job.runtime.sessions
    async with sessions() as session:
        existing = await session.get(File, uuid.UUID(spec.file_id))
    if existing is not None:
        return file_results(spec.file_id, existing.name, existing.size)

    pool = job.pool
    try:
        await pool.finish_upload(job.target)
    except UploadNotFound as exc:
        raise StepFailed(
            ErrorCode.UPLOAD_FAILED, f"the upload's stored chunks are gone: {exc}", permanent=True
        ) from exc
    async with sessions() as session:
        verified = await session.scalar(
            select(Upload.verified_hash).where(Upload.task_id == job.task_id)
        )
    if verified is not None:
        # The API hashed every stored chunk in order as it arrived (api.frontier_hash).
        digest, size = verified, await pool.size(spec.storage_key)
    else:
        digest, size = await sha256_of(
            pool,
            spec.storage_key,
            max_bytes_per_second=job.runtime.settings.assembly_max_bytes_per_second,
        )
    if digest != spec.hash or size != spec.file_size:
        await pool.delete(spec.storage_key)
        raise StepFailed(
            ErrorCode.HASH_MISMATCH,
            f"SHA-256 of the uploaded bytes is {digest}, the client declared {spec.hash}",
            permanent=True,
        )
    await stop_point()
    async with sessions.begin() as session:
        if spec.encrypt_password is None:
            await _record(
                session, job, spec.file_name, spec.content_type, spec.storage_key, size, digest
            )
        await session.execute(delete(UploadChunk).where(UploadChunk.task_id == job.task_id))
    activity.logger.info("upload %s assembled into file %s", job.task_id, spec.file_id)
    return file_results(spec.file_id, spec.file_name, size)


async def encrypt(job: UploadJob, password: str, stop_point: StopPoint) -> dict[str, Any]:
    """Stores an assembled, verified upload age-encrypted with its password, and records it.

    The encrypted bytes go to a key of their own while the plaintext is hashed again on the
    way (it must still be what the client declared); the record, keyed by the reserved file
    id, is written once they are whole, and the plaintext object is removed after it. Safe to
    run again after a crash at any point. ``stop_point``: as for ``assemble``.
    """
    spec, pool = job.spec, job.pool
    async with job.runtime.sessions() as session:
        row = await session.get(File, uuid.UUID(spec.file_id))
    if row is not None:  # recorded before a crash
        results = file_results(spec.file_id, row.name, row.size)
    else:
        key = rewritten_key(spec.file_id, job.task_id)
        try:
            new = await rewrite(
                _paced_read(
                    pool, spec.storage_key, job.runtime.settings.assembly_max_bytes_per_second
                ),
                lambda plain: encrypt_stream(plain, password),
                pool,
                key,
                expected_hash=spec.hash,
            )
        except SourceMismatch as exc:
            raise StepFailed(
                ErrorCode.HASH_MISMATCH,
                f"the assembled upload changed before it was encrypted: {exc}",
                permanent=True,
            ) from None
        name = encrypted_name(spec.file_name)
        await stop_point()
        async with job.runtime.sessions.begin() as session:
            await _record(session, job, name, AGE_CONTENT_TYPE, key, new.size, new.hash)
        results = file_results(spec.file_id, name, new.size)
    await pool.delete(spec.storage_key)
    activity.logger.info("upload %s stored encrypted as file %s", job.task_id, spec.file_id)
    return results


async def discard(job: UploadJob) -> None:
    """Removes an upload's staging (aborting an S3 multipart upload), its ledger, and whatever
    it had finished: the object (plain or encrypted) and the file record."""
    spec, pool = job.spec, job.pool
    await pool.abort_upload(job.target)
    await pool.delete(spec.storage_key)
    if spec.encrypt_password is not None:  # cancelled while or after it was encrypted
        await pool.delete(rewritten_key(spec.file_id, job.task_id))
    async with job.runtime.sessions.begin() as session:
        await session.execute(delete(UploadChunk).where(UploadChunk.task_id == job.task_id))
        await session.execute(delete(File).where(File.id == uuid.UUID(spec.file_id)))


async def last_activity(runtime: Runtime, task_id: str) -> str | None:
    """The last time the API stored a chunk of this upload (ISO-8601, UTC)."""
    async with runtime.sessions() as session:
        last: datetime | None = await session.scalar(
            select(Upload.last_activity).where(Upload.task_id == task_id)
        )
    return last.astimezone(UTC).isoformat() if last is not None else None


async def _record(
    session: AsyncSession,
    job: UploadJob,
    name: str,
    content_type: str,
    key: str,
    size: int,
    digest: str,
) -> None:
    """The upload's file record, under the id reserved at create; a repeat changes nothing."""
    spec = job.spec
    await session.execute(
        insert(File)
        .values(
            id=uuid.UUID(spec.file_id),
            account_id=uuid.UUID(job.account_id),
            name=name,
            size=size,
            content_type=content_type,
            hash=digest,
            pool_id=uuid.UUID(spec.pool_id),
            bundle_id=uuid.UUID(spec.bundle_id) if spec.bundle_id else None,
            storage_key=key,
            expired_at=spec.expired_at,
        )
        .on_conflict_do_nothing(index_elements=[File.id])
    )


async def _paced_read(pool: Pool, key: str, max_bytes_per_second: int) -> AsyncIterator[bytes]:
    """The object's bytes at the assembly rate cap, heartbeating as they flow."""
    pacer = Pacer(max_bytes_per_second, activity.heartbeat)
    async for piece in pool.read(key):
        activity.heartbeat()
        yield piece
        await pacer.advance(len(piece))
