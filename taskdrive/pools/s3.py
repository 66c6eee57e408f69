"""A pool in an S3 bucket (AWS, MinIO, or anything speaking the S3 API).

An upload is a multipart upload: chunk ``i`` is part ``i + 1``, and finishing completes the
upload, which S3 assembles server-side without the bytes passing through us again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from typing import TYPE_CHECKING, NoReturn

import aioboto3  # type: ignore[import-untyped]  # untyped; the client is typed below
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from taskdrive.pools.base import ObjectNotFound, PoolError, UploadNotFound, UploadTarget
from taskdrive.settings import S3PoolConfig

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, GetObjectRequestTypeDef

MiB = 1024 * 1024
PIECE_SIZE = MiB
STREAM_PART_SIZE = 8 * MiB
"""Part size of ``write_stream``'s multipart uploads (10,000 parts: objects up to 80 GiB)."""
"""Largest piece ``read`` yields."""
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# Per-part checksums that CompleteMultipartUpload must repeat when the parts carry them.
_CHECKSUMS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


class S3Pool:
    """A :class:`~taskdrive.pools.base.Pool` over one S3 bucket.

    One client (and its connection pool) serves the pool for its lifetime; it is created on
    first use, or by :meth:`open`, and released by :meth:`close`.
    """

    kind = "s3"
    min_chunk_size = 5 * MiB  # S3's smallest part, except the last one
    max_chunks = 10_000  # S3's most parts per upload

    def __init__(self, config: S3PoolConfig) -> None:
        self.id: uuid.UUID = config.id
        self.name: str = config.name
        self.bucket: str = config.bucket
        self.endpoint: str | None = config.endpoint
        self._config = config
        self._client: S3Client | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # no credentials, ever
        where = self.endpoint or "aws"
        return (
            f"S3Pool(id={self.id}, name={self.name!r}, bucket={self.bucket!r}, endpoint={where!r})"
        )

    async def open(self) -> S3Client:
        """The pool's client, created on the first call. Does no network I/O by itself."""
        if self._client is None:
            async with self._lock:  # two first calls at once must not make two clients
                if self._client is None:
                    self._client = await self._connect()
        return self._client

    async def _connect(self) -> S3Client:
        config = self._config
        access_key = config.access_key.get_secret_value() if config.access_key else None
        secret_key = config.secret_key.get_secret_value() if config.secret_key else None
        client_config = AioConfig(
            s3={"addressing_style": "path"},  # works with MinIO, moto and any bucket name
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Several chunks upload at once, beside downloads: more than the default 10.
            max_pool_connections=64,
        )
        stack = AsyncExitStack()
        client: S3Client = await stack.enter_async_context(
            aioboto3.Session().client(
                "s3",
                endpoint_url=config.endpoint,
                region_name=config.region,
                aws_access_key_id=access_key,  # None: the default credential chain
                aws_secret_access_key=secret_key,
                config=client_config,
            )
        )
        self._stack = stack
        return client

    async def close(self) -> None:
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @contextmanager
    def _errors(self, operation: str, key: str = "") -> Iterator[None]:
        """Turns botocore and network errors into PoolError naming the pool and operation."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            self._fail(operation, key, f"{code}: {message}", exc)
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            # OSError covers TimeoutError and connection failures outside botocore's wrapping.
            self._fail(operation, key, f"{type(exc).__name__}: {exc}", exc)

    def _fail(self, operation: str, key: str, detail: str, exc: BaseException) -> NoReturn:
        what = f"{operation} {key!r}" if key else operation
        where = f"s3 pool {self.name!r} (bucket {self.bucket!r})"
        raise PoolError(f"{where}: {what} failed: {detail}") from exc

    async def check(self) -> None:
        client = await self.open()
        with self._errors("HeadBucket"):
            try:
                await client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) in {"404", "NoSuchBucket"}:
                    raise PoolError(
                        f"s3 pool {self.name!r}: bucket {self.bucket!r} does not exist"
                    ) from exc
                raise

    async def begin_upload(self, key: str, size: int, chunk_size: int) -> UploadTarget:
        if size < 1 or chunk_size < 1:
            raise ValueError(f"size ({size}) and chunk_size ({chunk_size}) must be positive")
        if chunk_size < min(self.min_chunk_size, size):
            raise ValueError(f"chunk_size must be at least {self.min_chunk_size} bytes")
        if -(-size // chunk_size) > self.max_chunks:
            raise ValueError(f"more than {self.max_chunks} chunks of {chunk_size} bytes")
        client = await self.open()
        with self._errors("CreateMultipartUpload", key):
            created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        return UploadTarget(key, created["UploadId"], size, chunk_size)

    async def write_chunk(
        self, target: UploadTarget, index: int, body: AsyncIterator[bytes]
    ) -> int:
        if index < 0 or target.chunk_offset(index) >= target.size:
            raise ValueError(f"chunk index {index} is out of range for {target.key!r}")
        expected = target.chunk_length(index)
        # UploadPart needs its length up front, so the chunk is gathered in memory first.
        pieces: list[bytes] = []
        received = 0
        async for piece in body:
            received += len(piece)
            if received > expected:
                raise ValueError(f"chunk {index} is longer than {expected} bytes")
            pieces.append(piece)
        if received != expected:
            raise ValueError(f"chunk {index} is {received} bytes, expected {expected}")
        data = b"".join(pieces)
        del pieces
        client = await self.open()
        with self._errors("UploadPart", target.key):
            try:
                await client.upload_part(
                    Bucket=self.bucket,
                    Key=target.key,
                    UploadId=_upload_id(target),
                    PartNumber=index + 1,
                    Body=data,
                    ContentLength=expected,
                )
            except ClientError as exc:
                if _code(exc) == "NoSuchUpload":
                    raise UploadNotFound(f"no multipart upload for {target.key!r}") from exc
                raise
        return expected

    async def finish_upload(self, target: UploadTarget) -> None:
        client = await self.open()
        with self._errors("CompleteMultipartUpload", target.key):
            try:
                parts = await self._parts(client, target)
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target.key,
                    UploadId=_upload_id(target),
                    MultipartUpload={"Parts": parts},
                )
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    raise
                # Completed before (a retry after a crash), or aborted: the object tells which.
                if await self._exists(client, target.key):
                    return
                raise UploadNotFound(f"no upload or object for {target.key!r}") from exc

    async def _parts(self, client: S3Client, target: UploadTarget) -> list[CompletedPartTypeDef]:
        """Every stored part, in order (ListParts pages hold at most 1,000 parts)."""
        parts: list[CompletedPartTypeDef] = []
        pages = client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=target.key, UploadId=_upload_id(target)
        )
        async for page in pages:
            for part in page.get("Parts", []):
                completed: CompletedPartTypeDef = {
                    "PartNumber": part["PartNumber"],
                    "ETag": part["ETag"],
                }
                for name in _CHECKSUMS:
                    if name in part:
                        completed[name] = part[name]  # type: ignore[literal-required]
                parts.append(completed)
        parts.sort(key=lambda part: part.get("PartNumber", 0))
        return parts

    async def _exists(self, client: S3Client, key: str) -> bool:
        try:
            await client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return False
            raise
        return True

    async def abort_upload(self, target: UploadTarget) -> None:
        client = await self.open()
        with self._errors("AbortMultipartUpload", target.key):
            try:
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target.key, UploadId=_upload_id(target)
                )
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    raise

    async def write_stream(self, key: str, body: AsyncIterator[bytes]) -> int:
        client = await self.open()
        part = bytearray()
        source = aiter(body)
        pieces: AsyncIterator[bytes] | None = source
        # Small objects go in one PutObject; past one part, a multipart upload of
        # STREAM_PART_SIZE parts, so memory holds one part whatever the object's size.
        async for piece in source:
            part += piece
            if len(part) >= STREAM_PART_SIZE:
                break
        else:
            with self._errors("PutObject", key):
                await client.put_object(Bucket=self.bucket, Key=key, Body=bytes(part))
            return len(part)
        with self._errors("CreateMultipartUpload", key):
            created = await client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = created["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            size = 0
            while True:
                # A part is sent once it is full and more bytes follow: the last may be short.
                while len(part) > STREAM_PART_SIZE or (part and pieces is None):
                    data = bytes(part[:STREAM_PART_SIZE])
                    del part[:STREAM_PART_SIZE]
                    with self._errors("UploadPart", key):
                        sent = await client.upload_part(
                            Bucket=self.bucket,
                            Key=key,
                            UploadId=upload_id,
                            PartNumber=len(parts) + 1,
                            Body=data,
                        )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": sent["ETag"]})
                    size += len(data)
                if pieces is None:
                    break
                try:
                    part += await anext(pieces)
                except StopAsyncIteration:
                    pieces = None
            with self._errors("CompleteMultipartUpload", key):
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with suppress(Exception):
                await asyncio.shield(
                    client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
            raise
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range {start}..{end}")
        client = await self.open()
        with self._errors("GetObject", key):
            if end == start:  # S3 has no empty range; the object must still exist
                if not await self._exists(client, key):
                    raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}")
                return
            request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": key}
            if start or end is not None:
                request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            try:
                response = await client.get_object(**request)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}") from exc
                if _code(exc) == "InvalidRange":
                    return  # starts at or past the end: nothing to read, as with a file
                raise
            stream = response["Body"]
            async with stream:  # releases the connection, even when the reader stops early
                # The network hands over small pieces; gathering them up to PIECE_SIZE spares
                # consumers (hashing in a thread, say) a hop per few kilobytes.
                pending: list[bytes] = []
                pending_size = 0
                while piece := await stream.read(PIECE_SIZE - pending_size):
                    pending.append(piece)
                    pending_size += len(piece)
                    if pending_size == PIECE_SIZE:
                        yield b"".join(pending)
                        pending, pending_size = [], 0
                if pending:
                    yield b"".join(pending)

    async def size(self, key: str) -> int:
        client = await self.open()
        with self._errors("HeadObject", key):
            try:
                head = await client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}") from exc
                raise
        return head["ContentLength"]

    async def delete(self, key: str) -> None:
        client = await self.open()
        with self._errors("DeleteObject", key):
            await client.delete_object(Bucket=self.bucket, Key=key)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _upload_id(target: UploadTarget) -> str:
    if target.upload_id is None:
        raise UploadNotFound(f"target {target.key!r} has no multipart upload id")
    return target.upload_id
