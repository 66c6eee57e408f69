"""A pool in a local directory.

Objects live at ``<root>/<key>``. An upload is staged in one file, ``<root>/.uploads/<hash>.part``,
preallocated to the upload's size; every chunk is written at its own offset with ``pwrite``, so
chunks may arrive in any order and concurrently, and finishing is a ``rename`` (no copy).
Blocking syscalls run in worker threads so the event loop keeps serving other requests.

Each chunk's bytes are written as they arrive, their writeback started at once
(``taskdrive.pools.writeback``), and made durable with ``fdatasync`` before the chunk counts as
stored. The chunk writes of an upload share one descriptor of its staging file
(``taskdrive.pools.descriptors.SharedFiles``): opening it for every chunk cost a thread hop,
about 1.5 ms of each chunk's answer under load. This process forgets a staging file before it
renames or removes it; when another process does (the worker finishing an upload, or aborting
a cancelled one), the next write's check that the path still names its file fails and forgets
it, and an idle descriptor is closed after ``IDLE_CLOSE_SECONDS`` anyway, so a removed file's
disk space comes back soon after.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from taskdrive.pools.base import ObjectNotFound, PoolError, UploadNotFound, UploadTarget
from taskdrive.pools.descriptors import Descriptor, SharedFiles
from taskdrive.pools.writeback import start_writeback
from taskdrive.settings import LocalPoolConfig

MiB = 1024 * 1024
PIECE_SIZE = MiB
"""Largest piece ``read`` yields, and the size writes are batched into."""
STAGING_DIR = ".uploads"
WRITE_BATCH = 8 * MiB
"""``write_stream`` gathers pieces up to this size per write (one thread hop each)."""
IDLE_CLOSE_SECONDS = 2.0
"""How long a staging file stays open after its last chunk write."""
# pwritev takes at most IOV_MAX buffers (1024 on Linux); beyond that the pieces are joined.
_IOV_MAX = min(getattr(os, "IOV_MAX", 1024), 1024)


class LocalPool:
    """A :class:`~taskdrive.pools.base.Pool` over a directory of the local file system."""

    kind = "local"
    min_chunk_size = 1
    max_chunks = 10**9

    def __init__(
        self, config: LocalPoolConfig, *, idle_close_seconds: float = IDLE_CLOSE_SECONDS
    ) -> None:
        self.id: uuid.UUID = config.id
        self.name: str = config.name
        self.root: Path = config.path
        self._staging_files = SharedFiles(os.O_WRONLY, idle_close_seconds)

    def __repr__(self) -> str:
        return f"LocalPool(id={self.id}, name={self.name!r}, root={str(self.root)!r})"

    def object_path(self, key: str) -> Path:
        """Where the object ``key`` lives; ValueError for keys that could leave the root."""
        segments = key.split("/")
        if (
            "\x00" in key
            or "\\" in key
            or segments[0] == STAGING_DIR  # staging files are no objects
            or any(segment in ("", ".", "..") for segment in segments)  # also "/abs", "a//b"
        ):
            raise ValueError(f"invalid object key {key!r}")
        return self.root.joinpath(*segments)

    def staging_path(self, key: str) -> Path:
        # Hashed, so staging files stay flat and no key can name one.
        self.object_path(key)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / STAGING_DIR / f"{digest}.part"

    @contextmanager
    def _io(self, operation: str, key: str) -> Iterator[None]:
        """Turns OS errors not mapped by the caller into PoolError naming pool and operation."""
        try:
            yield
        except OSError as exc:
            raise PoolError(f"local pool {self.name!r}: {operation} {key!r} failed: {exc}") from exc

    async def check(self) -> None:
        """The root exists (or can be created) and a file can be written and removed in it."""

        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".check-{uuid.uuid4().hex}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"ok")
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)

        with self._io("check", str(self.root)):
            await asyncio.to_thread(probe)

    async def begin_upload(self, key: str, size: int, chunk_size: int) -> UploadTarget:
        _check_shape(size, chunk_size, self.max_chunks)
        staging = self.staging_path(key)

        def create() -> None:
            _make_dirs(staging.parent, self.root)
            # Truncating first makes a fresh, all-zero target even if a stale one was left over.
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(fd, size)  # sparse: no blocks are written here
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(staging.parent)

        with self._io("begin_upload", key):
            await asyncio.to_thread(create)
        return UploadTarget(key=key, upload_id=None, size=size, chunk_size=chunk_size)

    async def write_chunk(
        self, target: UploadTarget, index: int, body: AsyncIterator[bytes]
    ) -> int:
        expected = _chunk_length(target, index)
        staging = self.staging_path(target.key)
        offset = target.chunk_offset(index)
        with self._io("write_chunk", target.key):
            try:
                fd = await self._staging_files.open(staging)
            except FileNotFoundError as exc:
                raise UploadNotFound(f"no upload target for {target.key!r}") from exc
            try:
                written = 0  # bytes already handed to pwrite
                pending: list[bytes] = []
                pending_size = 0
                async for piece in body:
                    if written + pending_size + len(piece) > expected:
                        raise ValueError(f"chunk {index} is longer than {expected} bytes")
                    if piece:
                        pending.append(piece)
                        pending_size += len(piece)
                    if pending_size >= PIECE_SIZE:
                        await fd.submit(_write_ahead, pending, offset + written)
                        written += pending_size
                        pending, pending_size = [], 0
                if written + pending_size != expected:
                    raise ValueError(
                        f"chunk {index} is {written + pending_size} bytes, expected {expected}"
                    )
                # The last write and the flush share one thread hop: fewer hops per chunk.
                same = await fd.run(_write_and_sync, pending, offset + written, staging)
            finally:
                fd.close()
        if not same:
            # Aborted or finished while we wrote (here or by another process): the bytes did
            # not land in the target, and the descriptor must not be used again.
            self._staging_files.forget(staging)
            raise UploadNotFound(f"the upload target for {target.key!r} went away during a write")
        return expected

    async def finish_upload(self, target: UploadTarget) -> None:
        staging = self.staging_path(target.key)
        final = self.object_path(target.key)

        self._staging_files.forget(staging)

        def finish() -> None:
            _make_dirs(final.parent, self.root)
            try:
                os.replace(staging, final)  # atomic: readers see no object or the whole object
            except FileNotFoundError:
                if final.is_file():
                    return  # finished before: a retry after a crash
                raise UploadNotFound(f"no upload target or object for {target.key!r}") from None
            _fsync_dir(final.parent)
            _fsync_dir(staging.parent)

        with self._io("finish_upload", target.key):
            await asyncio.to_thread(finish)

    async def abort_upload(self, target: UploadTarget) -> None:
        staging = self.staging_path(target.key)
        self._staging_files.forget(staging)
        with self._io("abort_upload", target.key):
            await asyncio.to_thread(staging.unlink, missing_ok=True)

    async def write_stream(self, key: str, body: AsyncIterator[bytes]) -> int:
        final = self.object_path(key)
        # A private staging file per write: two writers to one key never mix their bytes.
        staging = self.root / STAGING_DIR / f"{uuid.uuid4().hex}.stream"
        with self._io("write_stream", key):
            await asyncio.to_thread(_make_dirs, staging.parent, self.root)
            fd = await Descriptor.open_new(staging)
            try:
                size = 0
                pending: list[bytes] = []
                pending_size = 0
                async for piece in body:
                    if piece:
                        pending.append(piece)
                        pending_size += len(piece)
                    if pending_size >= WRITE_BATCH:
                        await fd.submit(_write_ahead, pending, size)
                        size += pending_size
                        pending, pending_size = [], 0
                await fd.run(_pwrite_all, pending, size)
                size += pending_size
                await fd.run(os.fsync)

                def publish() -> None:
                    _make_dirs(final.parent, self.root)
                    os.replace(staging, final)  # atomic: the whole object or the old one
                    _fsync_dir(final.parent)

                await asyncio.to_thread(publish)
            except BaseException:
                staging.unlink(missing_ok=True)
                raise
            finally:
                fd.close()
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        _check_range(start, end)
        path = self.object_path(key)
        with self._io("read", key):
            try:
                fd = await Descriptor.open(path, os.O_RDONLY)
            except FileNotFoundError as exc:
                raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}") from exc
            try:
                position = start
                while end is None or position < end:
                    want = PIECE_SIZE if end is None else min(PIECE_SIZE, end - position)
                    piece = await fd.run(os.pread, want, position)
                    if not piece:
                        break
                    position += len(piece)
                    yield piece
            finally:
                fd.close()

    async def size(self, key: str) -> int:
        path = self.object_path(key)
        with self._io("size", key):
            try:
                info = await asyncio.to_thread(os.stat, path)
            except FileNotFoundError as exc:
                raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise ObjectNotFound(f"no object {key!r} in pool {self.name!r}")
        return info.st_size

    async def delete(self, key: str) -> None:
        path = self.object_path(key)
        with self._io("delete", key):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def close(self) -> None:
        """Closes the staging files kept open; those in use close when their writes end."""
        self._staging_files.close()


# Helpers shared by the methods above; the blocking ones run in worker threads.


def _check_shape(size: int, chunk_size: int, max_chunks: int) -> None:
    if size < 1 or chunk_size < 1:
        raise ValueError(f"size ({size}) and chunk_size ({chunk_size}) must be positive")
    if -(-size // chunk_size) > max_chunks:
        raise ValueError(f"more than {max_chunks} chunks of {chunk_size} bytes")


def _chunk_length(target: UploadTarget, index: int) -> int:
    if index < 0 or target.chunk_offset(index) >= target.size:
        raise ValueError(f"chunk index {index} is out of range for {target.key!r}")
    return target.chunk_length(index)


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid range {start}..{end}")


def _pwrite_all(fd: int, pieces: list[bytes], offset: int) -> int:
    total = sum(len(piece) for piece in pieces)
    if not total:
        return 0
    # pwritev spares joining the pieces into one buffer (one copy less per byte).
    buffers = pieces if len(pieces) <= _IOV_MAX else [b"".join(pieces)]
    done = os.pwritev(fd, buffers, offset)
    if done < total:  # short writes are rare on regular files, but allowed
        rest = memoryview(b"".join(pieces))[done:]
        while rest:
            n = os.pwrite(fd, rest, offset + done)
            done += n
            rest = rest[n:]
    return total


def _write_ahead(fd: int, pieces: list[bytes], offset: int) -> None:
    """Writes pieces that more will follow, and starts their writeback at once, so the flush
    that ends the write finds them mostly on disk already (``taskdrive.pools.writeback``)."""
    start_writeback(fd, offset, _pwrite_all(fd, pieces, offset))


def _write_and_sync(fd: int, pieces: list[bytes], offset: int, staging: Path) -> bool:
    """Writes the last pieces and makes the chunk durable.

    Returns whether ``staging`` is still the file written to (False when the target was
    removed or renamed meanwhile)."""
    _pwrite_all(fd, pieces, offset)
    os.fdatasync(fd)
    ours = os.fstat(fd)
    try:
        now = os.stat(staging)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)


def _make_dirs(directory: Path, root: Path) -> None:
    """Creates ``directory`` and its missing parents, durably (each new entry is fsynced)."""
    if directory.is_dir():
        return
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    for created in missing:
        if created == root or root in created.parents:
            _fsync_dir(created.parent)


def _fsync_dir(directory: Path) -> None:
    # A rename or a new file is durable only once its directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
