"""Streaming archive creation: many files in, one zip / tar.gz / tar.zst byte stream out.

``write_archive`` takes members whose sizes are known up front and whose bytes arrive from async
iterators (object storage downloads, typically) and yields the archive in pieces of at least
``OUTPUT_PIECE_BYTES`` (except the last). Memory stays bounded whatever the member sizes: a few
input batches, a few output pieces and the compressor's own state are in flight at any time.

Compression is CPU work, so it runs in one dedicated worker thread per archive, never on the event
loop. The loop reads the members and hands the thread batches of ``INPUT_BATCH_BYTES``; the thread
hands back pieces of at least ``OUTPUT_PIECE_BYTES``. One thread hop per several MiB keeps the
overhead small next to deflate/zstd themselves, and zlib and zstd release the GIL while they work,
so reading the next batch on the loop overlaps with compressing the current one.

Formats and levels (``validate_level``):

* ``zip``: deflate, level 0-9 (default 6), written by stream-zip. Member sizes are known, so each
  member uses ``ZIP_AUTO``: the small Zip32 layout when the member and its offset fit, ZIP64
  otherwise, so members and archives beyond 4 GiB work. Level 0 still means deflate (stored
  deflate blocks): zip's own "stored" method needs the CRC-32 in the local header, which would
  mean reading each member twice or holding it in memory.
* ``tar.gz``: level 1-9 (default 6). tar.zst: zstd level 1-22 (default 3); levels 20-22 are
  zstd's "ultra" levels, which use windows of up to 128 MiB in both the compressor and any
  decompressor, so they cost that much memory per archive. Negative (fast) zstd levels are not
  offered. The tar stream is PAX (POSIX.1-2001): unicode names and sizes beyond 8 GiB are
  recorded in extended headers; it is built here from ``tarfile.TarInfo.tobuf`` headers because
  ``tarfile``'s own stream writer fixes gzip at level 9 and has no zstd.

Timestamps: a naive ``modified`` is taken as UTC. Zip stores local-less DOS times plus a 32-bit
Unix time, so zip times are clamped to 1980-01-01 .. 2038-01-19 (UTC); tar times are clamped at
the epoch.

``ThreadPipe``, the loop <-> worker thread bridge, is also used by ``archive_read``.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, Protocol, get_args

import stream_zip
import zstandard

from taskdrive.fileops.pieces import regroup
from taskdrive.fileops.thread_pipe import ThreadPipe, Work

__all__ = [
    "ARCHIVE_FORMATS",
    "INPUT_BATCH_BYTES",
    "OUTPUT_PIECE_BYTES",
    "ArchiveFormat",
    "Member",
    "archive_suffix",
    "validate_level",
    "write_archive",
]

ArchiveFormat = Literal["zip", "tar.gz", "tar.zst"]
ARCHIVE_FORMATS: Final[tuple[ArchiveFormat, ...]] = get_args(ArchiveFormat)

# Bytes of member data handed to the worker thread per hop. Large enough that the hop (a queue
# put plus a wake-up on each side) is noise next to compressing it, small enough to keep memory
# per archive in the tens of MiB.
INPUT_BATCH_BYTES: Final = 4 * 1024 * 1024
# Minimum size of the pieces ``write_archive`` yields (the last one may be shorter).
OUTPUT_PIECE_BYTES: Final = 1024 * 1024
# Batches waiting for the worker / pieces waiting for the consumer. Two and four are enough to
# keep both sides busy; more would only cost memory.
_INPUT_DEPTH: Final = 2
_OUTPUT_DEPTH: Final = 4
# A batch made of many small chunks is joined before compressing: per-chunk Python overhead
# (crc32 call, compressor call, generator step) would otherwise dominate for tiny chunks.
_JOIN_BELOW_AVERAGE: Final = 64 * 1024

# (lowest, highest, default) compression level per format.
_LEVELS: Final[dict[ArchiveFormat, tuple[int, int, int]]] = {
    "zip": (0, 9, 6),
    "tar.gz": (1, 9, 6),
    "tar.zst": (1, 22, 3),
}
_SUFFIXES: Final[dict[ArchiveFormat, str]] = {
    "zip": ".zip",
    "tar.gz": ".tar.gz",
    "tar.zst": ".tar.zst",
}

_ZIP_FILE_MODE: Final = stat.S_IFREG | 0o644
_TAR_FILE_MODE: Final = 0o644
# DOS dates start in 1980; stream-zip's extended timestamp is a signed 32-bit Unix time.
_ZIP_EARLIEST: Final = datetime(1980, 1, 1, tzinfo=UTC)
_ZIP_LATEST: Final = datetime(2038, 1, 19, 3, 14, 6, tzinfo=UTC)
_DRIVE_PREFIX: Final = re.compile(r"^[A-Za-z]:")


def validate_level(fmt: ArchiveFormat, level: int | None) -> int:
    """The compression level to use for ``fmt``: ``level`` checked, or the format's default."""
    try:
        lowest, highest, default = _LEVELS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown archive format {fmt!r}; expected one of {', '.join(ARCHIVE_FORMATS)}"
        ) from None
    if level is None:
        return default
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"compression level must be an integer, got {level!r}")
    if not lowest <= level <= highest:
        raise ValueError(
            f"compression level {level} is out of range for {fmt}: "
            f"expected {lowest} to {highest} (default {default})"
        )
    return level


def archive_suffix(fmt: ArchiveFormat) -> str:
    """The file name suffix for ``fmt``, with its dot: ``.zip``, ``.tar.gz`` or ``.tar.zst``."""
    try:
        return _SUFFIXES[fmt]
    except KeyError:
        raise ValueError(
            f"unknown archive format {fmt!r}; expected one of {', '.join(ARCHIVE_FORMATS)}"
        ) from None


@dataclass(frozen=True)
class Member:
    """One file to put in an archive.

    ``name`` is the path inside the archive: relative, ``/``-separated, without empty, ``.`` or
    ``..`` segments. ``size`` must be exact: tar headers carry it before the data, and zip uses it
    to choose between the Zip32 and ZIP64 layouts. ``open`` is called once, when the member's turn
    comes, and must yield exactly ``size`` bytes.
    """

    name: str
    size: int
    modified: datetime
    open: Callable[[], AsyncIterator[bytes]]


def write_archive(
    fmt: ArchiveFormat, members: Sequence[Member], *, level: int
) -> AsyncGenerator[bytes, None]:
    """Stream an archive of ``members`` in format ``fmt``, compressed at ``level``.

    Arguments are checked before this returns, so bad names, duplicate names, negative sizes and
    out-of-range levels raise ``ValueError`` at the call, not at the first iteration. A member
    that yields more or fewer bytes than its ``size`` raises ``ValueError`` while streaming; an
    exception from a member's iterator is re-raised as it is. Close the generator (``aclosing``)
    when abandoning it early: that stops the worker thread and closes the member being read.
    """
    level = validate_level(fmt, level)
    frozen = tuple(members)
    _check_members(frozen)
    work: Work[_Batch, bytes]
    if fmt == "zip":
        work = _zip_work(frozen, level)
    elif fmt == "tar.gz":
        work = _tar_work(
            frozen, lambda: zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        )
    else:
        work = _tar_work(
            frozen, lambda: zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        )
    return _stream(frozen, work)


async def _stream(
    members: tuple[Member, ...], work: Work[_Batch, bytes]
) -> AsyncGenerator[bytes, None]:
    pipe = ThreadPipe(
        _read_members(members),
        work,
        input_depth=_INPUT_DEPTH,
        output_depth=_OUTPUT_DEPTH,
        name="archive-write",
    )
    async with pipe:
        async for piece in pipe:
            yield piece


def _check_members(members: Sequence[Member]) -> None:
    seen: set[str] = set()
    for member in members:
        _check_member_name(member.name)
        if member.name in seen:
            raise ValueError(f"duplicate member name {member.name!r}")
        seen.add(member.name)
        if member.size < 0:
            raise ValueError(f"member {member.name!r} has a negative size ({member.size})")


def _check_member_name(name: str) -> None:
    if not name:
        raise ValueError("member name must not be empty")
    if "\x00" in name:
        raise ValueError(f"member name {name!r} contains NUL")
    if name.startswith("/") or _DRIVE_PREFIX.match(name):
        raise ValueError(f"member name {name!r} must be a relative path")
    # Windows tools read a backslash as a separator, which would turn "..\\x" into a traversal.
    if "\\" in name:
        raise ValueError(f"member name {name!r} must use '/' as its only separator")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"member name {name!r} must not have empty, '.' or '..' segments")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"member name {name!r} is not valid unicode") from None


# --- the loop side: read members, in order, into batches --------------------------------------

# What the loop hands the worker: a batch of a member's chunks, or None at the end of a member.
_Batch = list[bytes] | None


async def _read_members(members: Sequence[Member]) -> AsyncGenerator[_Batch, None]:
    for member in members:
        received = 0
        batch: list[bytes] = []
        batch_bytes = 0
        chunks = member.open()
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                received += len(chunk)
                if received > member.size:
                    raise ValueError(
                        f"member {member.name!r} yielded more than its declared {member.size} bytes"
                    )
                batch.append(chunk)
                batch_bytes += len(chunk)
                if batch_bytes >= INPUT_BATCH_BYTES:
                    yield batch
                    batch = []
                    batch_bytes = 0
        finally:
            await _aclose(chunks)
        if received != member.size:
            raise ValueError(
                f"member {member.name!r} yielded {received} bytes, not its declared {member.size}"
            )
        if batch:
            yield batch
        yield None


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    # Member iterators are usually async generators (or response bodies) holding a connection.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# --- the worker side: compress in a thread ------------------------------------------------------


def _member_chunks(batches: Iterator[_Batch]) -> Iterator[bytes]:
    """The current member's chunks, up to its end marker."""
    for batch in batches:
        if batch is None:
            return
        if len(batch) > 1 and sum(map(len, batch)) < len(batch) * _JOIN_BELOW_AVERAGE:
            yield b"".join(batch)
        else:
            yield from batch
    raise RuntimeError("member input ended without an end marker")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _zip_work(members: tuple[Member, ...], level: int) -> Work[_Batch, bytes]:
    def work(batches: Iterator[_Batch], emit: Callable[[bytes], None]) -> None:
        files = (
            (
                member.name,
                min(max(_as_utc(member.modified), _ZIP_EARLIEST), _ZIP_LATEST),
                _ZIP_FILE_MODE,
                stream_zip.ZIP_AUTO(member.size, level=level),
                _member_chunks(batches),
            )
            for member in members
        )
        # stream-zip's chunk_size is the size it regroups its output into; ours regroups again
        # only around the small local headers, which it flushes separately.
        for piece in regroup(
            stream_zip.stream_zip(files, chunk_size=OUTPUT_PIECE_BYTES), OUTPUT_PIECE_BYTES
        ):
            emit(piece)

    return work


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


def _tar_header(member: Member) -> bytes:
    info = tarfile.TarInfo(member.name)
    info.size = member.size
    info.mtime = max(0, int(_as_utc(member.modified).timestamp()))
    info.mode = _TAR_FILE_MODE
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _tar_work(
    members: tuple[Member, ...], new_compressor: Callable[[], _Compressor]
) -> Work[_Batch, bytes]:
    def work(batches: Iterator[_Batch], emit: Callable[[bytes], None]) -> None:
        compressor = new_compressor()

        def compressed() -> Iterator[bytes]:
            offset = 0
            for member in members:
                header = _tar_header(member)
                offset += len(header)
                yield compressor.compress(header)
                for chunk in _member_chunks(batches):
                    yield compressor.compress(chunk)
                padding = -member.size % tarfile.BLOCKSIZE
                offset += member.size + padding
                if padding:
                    yield compressor.compress(bytes(padding))
            # Two zero blocks end the archive; zeros then fill the last record, as tar does.
            offset += 2 * tarfile.BLOCKSIZE
            trailer = 2 * tarfile.BLOCKSIZE + (-offset % tarfile.RECORDSIZE)
            yield compressor.compress(bytes(trailer))
            yield compressor.flush()

        for piece in regroup(compressed(), OUTPUT_PIECE_BYTES):
            emit(piece)

    return work
