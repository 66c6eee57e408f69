"""Upload activities: assemble and verify a finished upload (and store it encrypted when asked),
discard an abandoned one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.crypt import (
    AGE_CONTENT_TYPE,
    SourceMismatch,
    encrypted_name,
    rewrite,
    rewritten_key,
)
from activities.hashing import sha256_of
from activities.streams import Pacer
from taskdrive.db.models import File, Upload, UploadChunk
from taskdrive.errors import ErrorCode
from taskdrive.fileops.age import encrypt_stream
from taskdrive.pools import Pool, PoolRegistry, UploadNotFound, UploadTarget
from taskdrive.secrets import SecretError, unseal
from taskdrive.settings import Settings
from taskdrive.tasktypes.upload import AssembleRequest, AssembleResult, DiscardRequest, UploadSpec


def _target(spec: UploadSpec) -> UploadTarget:
    return UploadTarget(
        key=spec.storage_key,
        upload_id=spec.multipart_upload_id,
        size=spec.file_size,
        chunk_size=spec.chunk_size,
    )


class UploadActivities:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], pools: PoolRegistry
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._pools = pools

    def _pool(self, spec: UploadSpec) -> Pool:
        return self._pools.get(uuid.UUID(spec.pool_id))

    @activity.defn(name="assemble_upload")
    async def assemble_upload(self, request: AssembleRequest) -> AssembleResult:
        """Turns the stored chunks into the file, verifies its SHA-256 and records it.

        Safe to run again after a crash at any point: finishing is idempotent, the hash is
        recomputed from the stored bytes, and the file record is keyed by the reserved file id.
        """
        spec = request.spec
        file_id = uuid.UUID(spec.file_id)
        async with self._sessions() as session:
            existing = await session.get(File, file_id)
        if existing is not None:
            return AssembleResult(file_id=spec.file_id, size=existing.size, hash=existing.hash)

        pool = self._pool(spec)
        try:
            await pool.finish_upload(_target(spec))
        except UploadNotFound as exc:
            raise ApplicationError(
                f"the upload's stored chunks are gone: {exc}",
                type="UPLOAD_NOT_FOUND",
                non_retryable=True,
            ) from exc
        async with self._sessions() as session:
            verified = await session.scalar(
                select(Upload.verified_hash).where(Upload.task_id == spec.header.task_id)
            )
        if verified is not None:
            # The API hashed every stored chunk in order as it arrived (api.frontier_hash).
            digest, size = verified, await pool.size(spec.storage_key)
        else:
            digest, size = await sha256_of(
                pool,
                spec.storage_key,
                max_bytes_per_second=self._settings.assembly_max_bytes_per_second,
            )
        if digest != spec.hash or size != spec.file_size:
            await pool.delete(spec.storage_key)
            raise ApplicationError(
                f"SHA-256 of the uploaded bytes is {digest}, the client declared {spec.hash}",
                {"expected": spec.hash, "actual": digest, "size": size},
                type=ErrorCode.HASH_MISMATCH.code,
                non_retryable=True,
            )
        async with self._sessions.begin() as session:
            if spec.sealed_password is None:
                # An encrypted upload is recorded by encrypt_upload, once stored encrypted: its
                # plaintext never appears in the catalogue.
                await _record(
                    session, spec, spec.file_name, spec.content_type, spec.storage_key, size, digest
                )
            await session.execute(
                delete(UploadChunk).where(UploadChunk.task_id == spec.header.task_id)
            )
        activity.logger.info("upload %s assembled into file %s", spec.header.task_id, file_id)
        return AssembleResult(file_id=spec.file_id, size=size, hash=digest)

    @activity.defn(name="encrypt_upload")
    async def encrypt_upload(self, request: AssembleRequest) -> AssembleResult:
        """Stores an assembled, verified upload age-encrypted with its password, and records it.

        The encrypted bytes go to a key of their own while the plaintext is hashed again on
        the way (it must still be what the client declared); the record, keyed by the reserved
        file id, is written once they are whole, and the plaintext object is removed after it.
        Safe to run again after a crash at any point.
        """
        spec = request.spec
        assert spec.sealed_password is not None, "only encrypted uploads are encrypted"
        pool = self._pool(spec)
        async with self._sessions() as session:
            row = await session.get(File, uuid.UUID(spec.file_id))
        if row is not None:  # recorded before a crash
            result = AssembleResult(spec.file_id, row.size, row.hash, row.name)
        else:
            result = await self._encrypt(spec, spec.sealed_password, pool)
        await pool.delete(spec.storage_key)
        activity.logger.info(
            "upload %s stored encrypted as file %s", spec.header.task_id, spec.file_id
        )
        return result

    async def _encrypt(self, spec: UploadSpec, sealed: str, pool: Pool) -> AssembleResult:
        try:
            password = unseal(self._settings, spec.header.task_id, sealed)
        except SecretError as exc:
            raise ApplicationError(
                str(exc), type=ErrorCode.UPLOAD_FAILED.code, non_retryable=True
            ) from None
        key = rewritten_key(spec.file_id, spec.header.task_id)
        try:
            new = await rewrite(
                _paced_read(pool, spec.storage_key, self._settings.assembly_max_bytes_per_second),
                lambda plain: encrypt_stream(plain, password),
                pool,
                key,
                expected_hash=spec.hash,
            )
        except SourceMismatch as exc:
            raise ApplicationError(
                f"the assembled upload changed before it was encrypted: {exc}",
                type=ErrorCode.HASH_MISMATCH.code,
                non_retryable=True,
            ) from None
        name = encrypted_name(spec.file_name)
        async with self._sessions.begin() as session:
            await _record(session, spec, name, AGE_CONTENT_TYPE, key, new.size, new.hash)
        return AssembleResult(spec.file_id, new.size, new.hash, name)

    @activity.defn(name="discard_upload")
    async def discard_upload(self, request: DiscardRequest) -> None:
        """Removes an upload's staging (aborting an S3 multipart upload) and its ledger."""
        spec = request.spec
        pool = self._pool(spec)
        await pool.abort_upload(_target(spec))
        if request.delete_object:
            await pool.delete(spec.storage_key)
            if spec.sealed_password is not None:  # cancelled while or after it was encrypted
                await pool.delete(rewritten_key(spec.file_id, spec.header.task_id))
        async with self._sessions.begin() as session:
            await session.execute(
                delete(UploadChunk).where(UploadChunk.task_id == spec.header.task_id)
            )
            if request.delete_object:
                await session.execute(delete(File).where(File.id == uuid.UUID(spec.file_id)))

    @activity.defn(name="upload_last_activity")
    async def upload_last_activity(self, task_id: str) -> str | None:
        """The last time the API stored a chunk of this upload (ISO-8601, UTC)."""
        async with self._sessions() as session:
            last = await session.scalar(
                select(Upload.last_activity).where(Upload.task_id == task_id)
            )
        return last.astimezone(UTC).isoformat() if last is not None else None


async def _record(
    session: AsyncSession,
    spec: UploadSpec,
    name: str,
    content_type: str,
    key: str,
    size: int,
    digest: str,
) -> None:
    """The upload's file record, under the id reserved at create; a repeat changes nothing."""
    await session.execute(
        insert(File)
        .values(
            id=uuid.UUID(spec.file_id),
            account_id=uuid.UUID(spec.header.account_id),
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
