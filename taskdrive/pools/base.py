"""The storage pool contract.

A pool holds file bytes under string keys. Uploads are written chunk by chunk, in any order and
concurrently, into an *upload target* that becomes the object at ``key`` when finished, without
copying bytes (an S3 multipart upload; a preallocated local file written at each chunk's offset).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


class PoolError(Exception):
    """A storage operation failed (I/O error, unreachable service, missing bucket)."""


class ObjectNotFound(PoolError):
    """No object is stored under the key."""


class UploadNotFound(PoolError):
    """The upload target does not exist (never begun, finished, or aborted)."""


@dataclass(frozen=True)
class UploadTarget:
    """Where an upload's chunks go. ``upload_id`` is the S3 multipart upload id (None locally)."""

    key: str
    upload_id: str | None
    size: int
    chunk_size: int

    def chunk_offset(self, index: int) -> int:
        return index * self.chunk_size

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.size - self.chunk_offset(index))


@runtime_checkable
class Pool(Protocol):
    id: uuid.UUID
    name: str
    kind: str
    min_chunk_size: int
    """Smallest chunk an upload into this pool may use (S3: 5 MiB, except the last part)."""
    max_chunks: int
    """Most chunks one upload may have (S3: 10,000 parts)."""

    async def check(self) -> None:
        """Raises PoolError when the pool cannot be reached or written."""

    async def begin_upload(self, key: str, size: int, chunk_size: int) -> UploadTarget:
        """Prepares an upload of ``size`` bytes that will become the object at ``key``.

        Raises ValueError when ``size`` is below 1, when ``chunk_size`` is below
        ``min_chunk_size`` (unless one chunk holds the whole upload), or when it makes more
        than ``max_chunks`` chunks.
        """

    async def write_chunk(
        self, target: UploadTarget, index: int, body: AsyncIterator[bytes]
    ) -> int:
        """Stores chunk ``index`` from ``body`` and returns its length once it is durable.

        Writing the same index again replaces it. Raises ValueError (nothing recorded as
        stored) when the body is not exactly ``target.chunk_length(index)`` bytes long (it
        stops reading as soon as the body is too long) or ``index`` is outside the upload;
        UploadNotFound when the target is gone.
        """

    async def finish_upload(self, target: UploadTarget) -> None:
        """Makes the chunks the object at ``target.key``, copying no bytes.

        Idempotent: when the object already exists and the target is gone (a retry after a
        crash), it returns normally. Raises UploadNotFound when neither exists.
        """

    async def abort_upload(self, target: UploadTarget) -> None:
        """Discards the target and every chunk written to it. Idempotent."""

    async def write_stream(self, key: str, body: AsyncIterator[bytes]) -> int:
        """Stores everything ``body`` yields as the object at ``key`` and returns its size.

        For outputs whose size is not known up front (archives, encrypted files, copies from
        another pool); memory stays bounded whatever the size. The object appears whole or
        not at all: when the body raises or the write is cancelled, partial bytes are removed
        and an object already at ``key`` is left as it was.
        """

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yields the object's bytes from ``start`` up to ``end`` (exclusive; None: to the end),
        in pieces of at most 1 MiB. Raises ObjectNotFound on the first step when there is no
        such object. A range starting at or past the end yields nothing."""

    async def size(self, key: str) -> int:
        """The object's size; raises ObjectNotFound."""

    async def delete(self, key: str) -> None:
        """Removes the object. Idempotent."""

    async def close(self) -> None:
        """Releases clients and connections."""


@runtime_checkable
class LocalFiles(Protocol):
    """Optional capability: the pool's objects are files on this machine, so readers that
    stream whole objects (hashing) can read them directly in large blocks, and stored chunks
    of an unfinished upload can be read back."""

    def object_path(self, key: str) -> Path:
        """The file holding the object at ``key``; it may not exist."""

    def staging_path(self, key: str) -> Path:
        """The file an unfinished upload to ``key`` writes its chunks into, at their offsets."""
