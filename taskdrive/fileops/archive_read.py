"""Safe streaming extraction of zip / tar.gz / tar.zst archives from untrusted uploads.

``read_archive`` turns an async stream of archive bytes into a sequence of ``Entry`` objects, each
with its own async stream of bytes, without ever holding a whole entry or the whole archive: the
caller stores an entry's chunks as they arrive and moves on. Decompression runs in one worker
thread per archive (``ThreadPipe``), connected to the loop by bounded queues.

Anything unsafe raises ``ArchiveRejected`` (with a stable ``code``) as soon as it is seen, in
the middle of the stream if need be; the caller then deletes what it stored so far:

* names: absolute (``/x``, ``C:\\x``, ``\\\\server``), escaping the root after resolving ``..``
  (``a/../../b``), containing NUL, or not valid UTF-8 (tar) -> PATH_TRAVERSAL / ABSOLUTE_PATH /
  INVALID_NAME. Backslashes count as separators. Names are returned normalised (``./a//b`` ->
  ``a/b``); ``a/../b`` is accepted as ``b``.
* entry types: tar symlinks and hard links -> LINK_ENTRY; devices, FIFOs and unknown tar types
  -> SPECIAL_ENTRY; GNU sparse files -> UNSUPPORTED_ARCHIVE. Directories are skipped, not yielded.
* zip symlinks: a zip records the Unix mode only in the central directory at the very end (the
  local headers that a stream reader sees carry none, and stream-unzip does not expose it), so
  a symlink reaches the caller as a small regular entry whose content is the link target. Once
  all entries have streamed, the central directory is parsed from the retained tail of the
  archive (the last ``_ZIP_TAIL_BYTES``; a larger directory is only counted, not mode-checked)
  and symlink / special modes are rejected then, before ``read_archive`` finishes. The same
  check rejects a central directory whose entry count differs from the local entries streamed
  (entries hidden from one kind of reader) and an archive truncated in its central directory,
  which stream-unzip does not notice.
* size: more than ``max_entries`` entries (directories included) -> TOO_MANY_ENTRIES; more than
  ``max_total_bytes`` of entry data, counted as it flows (a declared size that would exceed it
  fails early, but declared sizes are never trusted) -> TOO_LARGE; more than ``max_ratio`` bytes
  decompressed per compressed byte consumed so far, once ``ratio_grace_bytes`` have come out ->
  RATIO_EXCEEDED. For tar the ratio counts the whole decompressed tar stream (headers, padding,
  skipped data); the total counts entry data only.
* encryption and zip features stream-unzip cannot stream -> UNSUPPORTED_ARCHIVE; anything
  malformed or truncated -> CORRUPT_ARCHIVE. A tar stream must end with its end-of-archive
  marker followed by nothing but zeros; reading it to the very end also makes gzip check its CRC.
  (A zstd frame cut inside the final zero padding, after the marker, goes unnoticed: zstandard's
  stream reader reports a cut frame as a plain end of input, and no data is lost.)

Memory per archive stays around ten MiB: the loop reads ahead at most a few 1 MiB batches, entry
data travels in pieces of about 1 MiB (a few in flight), a zip keeps its last 4 MiB for the
central directory check, and tar metadata headers are capped at ``_MAX_TAR_METADATA_BYTES``. The
exception is zstd, whose decoder allocates the window the frame asks for, up to 128 MiB (zstd's
own default limit; ``zstd`` up to level 19 asks for 8 MiB at most, ``--ultra``/``--long`` more).
Decompressors are fed 64 KiB of input at a time and return at most 1 MiB per call, so the ratio
is checked at least every MiB of output, against input counted at that 64 KiB granularity.
"""

from __future__ import annotations

import gzip
import io
import re
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, Final, Literal, Protocol, Self, cast

import stream_inflate  # type: ignore[import-untyped]  # stream-unzip's deflate64, untyped
import stream_unzip
import zstandard

from taskdrive.fileops.archive_write import ARCHIVE_FORMATS, ArchiveFormat
from taskdrive.fileops.thread_pipe import ThreadPipe

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveRejected",
    "Entry",
    "Limits",
    "RejectCode",
    "detect_format",
    "read_archive",
]

RejectCode = Literal[
    "PATH_TRAVERSAL",
    "ABSOLUTE_PATH",
    "INVALID_NAME",
    "LINK_ENTRY",
    "SPECIAL_ENTRY",
    "TOO_LARGE",
    "RATIO_EXCEEDED",
    "TOO_MANY_ENTRIES",
    "UNSUPPORTED_ARCHIVE",
    "CORRUPT_ARCHIVE",
]


class ArchiveRejected(Exception):
    """The archive is unsafe or unreadable; ``code`` says why, ``message`` says where."""

    def __init__(self, code: RejectCode, message: str) -> None:
        # Both in args, so the exception pickles and crosses process boundaries intact.
        super().__init__(code, message)
        self.code: RejectCode = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Limits:
    """What an archive may expand to; see the module docstring for how each is counted."""

    max_total_bytes: int = 10 * 1024**3
    max_entries: int = 10_000
    max_ratio: float = 100.0
    # Output allowed before the ratio is enforced: the first bytes of any archive have consumed
    # little input yet (a small file compresses well, headers are tiny).
    ratio_grace_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_total_bytes < 0 or self.max_entries < 0 or self.ratio_grace_bytes < 0:
            raise ValueError(f"limits must not be negative: {self}")
        if not self.max_ratio >= 1:
            raise ValueError(f"max_ratio must be at least 1: {self}")


DEFAULT_LIMITS: Final = Limits()


@dataclass
class Entry:
    """One file of the archive.

    ``chunks`` must be consumed, or abandoned, before asking ``read_archive`` for the next entry;
    whatever is left is then read and discarded (still under the limits). ``size`` is the
    declared size, when the archive declares one up front; the bytes actually yielded are what
    counts.
    """

    name: str
    size: int | None
    chunks: AsyncIterator[bytes]


def detect_format(file_name: str, head: bytes) -> ArchiveFormat:
    """The archive format of a file, from its first bytes (``file_name`` only names it in errors).

    Magic bytes decide, not the extension: ``PK\\x03\\x04`` (or ``PK\\x05\\x06``, an empty zip)
    is zip, ``1f 8b`` gzip and ``28 b5 2f fd`` zstd, both taken to hold a tar stream. Anything
    else raises ``ArchiveRejected("UNSUPPORTED_ARCHIVE")``.
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "tar.zst"
    for magic, offset, kind in _OTHER_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            raise ArchiveRejected(
                "UNSUPPORTED_ARCHIVE",
                f"{file_name!r} looks like {kind}; supported are zip, tar.gz and tar.zst",
            )
    raise ArchiveRejected(
        "UNSUPPORTED_ARCHIVE", f"{file_name!r} is not a zip, tar.gz or tar.zst archive"
    )


# Recognised only to say what a rejected file is.
_OTHER_FORMATS: Final = (
    (b"ustar", 257, "an uncompressed tar archive"),
    (b"BZh", 0, "a bzip2 file"),
    (b"\xfd7zXZ\x00", 0, "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"PK\x07\x08", 0, "a split zip archive"),
)


def read_archive(
    source: AsyncIterable[bytes], fmt: ArchiveFormat, limits: Limits = DEFAULT_LIMITS
) -> AsyncGenerator[Entry, None]:
    """Stream the regular-file entries of the archive in ``source``, enforcing ``limits``.

    Raises ``ArchiveRejected`` from the iteration (from ``read_archive`` itself, or from an
    entry's ``chunks``) as soon as something is wrong; an exception from ``source`` is re-raised
    as it is. ``source`` is closed (``aclose``, if it has one) when extraction ends. Close the
    generator (``aclosing``) when abandoning it early, to stop the worker thread at once.
    """
    if fmt not in ARCHIVE_FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}; expected one of {ARCHIVE_FORMATS}")
    work = partial(_read_zip, limits) if fmt == "zip" else partial(_read_tar, fmt, limits)
    return _entries(source, work)


# --- loop side ----------------------------------------------------------------------------------

# Loop -> worker: source chunks, grouped into batches of about this many bytes (one hop each).
_SOURCE_BATCH_BYTES: Final = 1024 * 1024
_INPUT_DEPTH: Final = 2
_OUTPUT_DEPTH: Final = 4


@dataclass(frozen=True, slots=True)
class _Start:
    name: str
    size: int | None


class _EntryEnd:
    __slots__ = ()


_ENTRY_END: Final = _EntryEnd()

# Worker -> loop: an entry starts, a piece of its data, it ends.
_Event = _Start | bytes | _EntryEnd
_Emit = Callable[[_Event], None]


async def _entries(
    source: AsyncIterable[bytes], work: Callable[[Iterator[list[bytes]], _Emit], None]
) -> AsyncGenerator[Entry, None]:
    pipe = ThreadPipe(
        _batched(source),
        work,
        input_depth=_INPUT_DEPTH,
        output_depth=_OUTPUT_DEPTH,
        name="archive-read",
    )
    async with pipe:
        while (event := await anext(pipe, None)) is not None:
            if not isinstance(event, _Start):
                raise RuntimeError(f"archive reader out of step: {type(event).__name__}")
            chunks = _EntryChunks(pipe)
            yield Entry(event.name, event.size, chunks)
            await chunks.drain()


async def _batched(source: AsyncIterable[bytes]) -> AsyncGenerator[list[bytes], None]:
    iterator = aiter(source)
    batch: list[bytes] = []
    batch_bytes = 0
    try:
        async for chunk in iterator:
            if not chunk:
                continue
            batch.append(chunk)
            batch_bytes += len(chunk)
            if batch_bytes >= _SOURCE_BATCH_BYTES:
                yield batch
                batch = []
                batch_bytes = 0
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    if batch:
        yield batch


class _EntryChunks:
    """An entry's data, read off the pipe until the worker marks the entry's end."""

    def __init__(self, pipe: ThreadPipe[list[bytes], _Event]) -> None:
        self._pipe = pipe
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            event = await anext(self._pipe, None)
        except BaseException:
            self._done = True
            raise
        if isinstance(event, bytes):
            return event
        self._done = True
        if isinstance(event, _EntryEnd):
            raise StopAsyncIteration
        if event is None:
            raise RuntimeError("the archive was closed before this entry was read")
        raise RuntimeError(f"archive reader out of step: {type(event).__name__}")

    async def drain(self) -> None:
        async for _ in self:
            pass


# --- worker side: shared ------------------------------------------------------------------------

# Compressed bytes per decompressor call: the granularity of "compressed bytes consumed".
_FEED_PIECE_BYTES: Final = 64 * 1024
# Entry data is handed to the loop in pieces of about this size.
_OUTPUT_PIECE_BYTES: Final = 1024 * 1024


class _Meter:
    """Counts bytes and entries in the worker and raises ArchiveRejected past a limit."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.compressed = 0  # archive bytes handed to the decompressor
        self.inflated = 0  # bytes the decompressor produced
        self.extracted = 0  # entry data passed on to the caller
        self.entries = 0

    def consumed(self, size: int) -> None:
        self.compressed += size

    def decompressed(self, size: int) -> None:
        self.inflated += size
        limits = self._limits
        if self.inflated > limits.ratio_grace_bytes and (
            self.inflated > limits.max_ratio * self.compressed
        ):
            raise ArchiveRejected(
                "RATIO_EXCEEDED",
                f"{self.inflated} bytes decompressed from {self.compressed} compressed bytes "
                f"exceeds the limit of {limits.max_ratio:g}:1",
            )

    def extracted_bytes(self, size: int) -> None:
        self.extracted += size
        if self.extracted > self._limits.max_total_bytes:
            raise ArchiveRejected(
                "TOO_LARGE",
                f"entries exceed the limit of {self._limits.max_total_bytes} bytes in total",
            )

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise ArchiveRejected(
                "TOO_MANY_ENTRIES", f"more than {self._limits.max_entries} entries"
            )

    def declared(self, name: str, size: int | None) -> None:
        # Only an early exit for honest archives: the bytes are counted again as they flow.
        if size is not None and self.extracted + size > self._limits.max_total_bytes:
            raise ArchiveRejected(
                "TOO_LARGE",
                f"{name!r} declares {size} bytes, over the limit of "
                f"{self._limits.max_total_bytes} bytes in total",
            )


class _Input:
    """The compressed archive as the worker reads it: a blocking file-like over the loop's batches.

    ``read`` returns at most what is left of the current chunk, which is what zstandard's and
    gzip's readers expect of a raw stream, and counts every byte it returns as consumed.
    """

    def __init__(self, batches: Iterator[list[bytes]], meter: _Meter) -> None:
        self._chunks = (chunk for batch in batches for chunk in batch)
        self._current = b""
        self._offset = 0
        self._meter = meter

    def read(self, size: int = -1, /) -> bytes:
        while self._offset >= len(self._current):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._current = chunk
            self._offset = 0
        end = len(self._current) if size < 0 else self._offset + size
        piece = self._current[self._offset : end]
        self._offset += len(piece)
        self._meter.consumed(len(piece))
        return piece

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, /) -> int:
        # Declared by gzip's reader protocol; reading forward never calls it.
        raise io.UnsupportedOperation("the archive is read as a stream")

    def pieces(self, size: int) -> Iterator[bytes]:
        return iter(partial(self.read, size), b"")


_DRIVE_PREFIX: Final = re.compile(r"^[A-Za-z]:")


def _normalise(raw: str) -> tuple[str, bool]:
    """``raw`` as a relative POSIX path, and whether it names a directory (trailing slash)."""
    if "\x00" in raw:
        raise ArchiveRejected("INVALID_NAME", f"entry name {raw!r} contains NUL")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveRejected("INVALID_NAME", f"entry name {raw!r} is not valid UTF-8") from None
    name = raw.replace("\\", "/")
    if name.startswith("/") or _DRIVE_PREFIX.match(name):
        raise ArchiveRejected("ABSOLUTE_PATH", f"entry name {raw!r} is an absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ArchiveRejected(
                    "PATH_TRAVERSAL", f"entry name {raw!r} leads outside the archive"
                )
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts), name.endswith("/")


def _emit_entry(
    name: str,
    size: int | None,
    data: Iterator[bytes],
    meter: _Meter,
    emit: _Emit,
    *,
    data_is_decompressed: bool,
) -> None:
    if not name:
        raise ArchiveRejected("INVALID_NAME", "an entry has an empty name")
    meter.declared(name, size)
    emit(_Start(name, size))
    pending: list[bytes] = []
    pending_bytes = 0
    for chunk in data:
        if data_is_decompressed:
            meter.decompressed(len(chunk))
        meter.extracted_bytes(len(chunk))
        pending.append(chunk)
        pending_bytes += len(chunk)
        if pending_bytes >= _OUTPUT_PIECE_BYTES:
            emit(pending[0] if len(pending) == 1 else b"".join(pending))
            pending = []
            pending_bytes = 0
    if pending:
        emit(b"".join(pending))
    emit(_ENTRY_END)


# --- worker side: zip ---------------------------------------------------------------------------

# The last bytes of a zip kept for the central directory check. Directory records are 46 bytes
# plus name and extras, so this covers tens of thousands of entries (beyond the default limit).
_ZIP_TAIL_BYTES: Final = 4 * 1024 * 1024
_EOCD: Final = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR: Final = struct.Struct("<4sIQI")
_ZIP64_EOCD: Final = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL_HEADER: Final = struct.Struct("<4sBBHHHHHIIIHHHHHII")
_UNIX_HOSTS: Final = (3, 19)  # "version made by" hosts whose external attributes hold a mode


def _read_zip(limits: Limits, batches: Iterator[list[bytes]], emit: _Emit) -> None:
    meter = _Meter(limits)
    tail = _Tail(_ZIP_TAIL_BYTES)
    archive = tail.record(_Input(batches, meter).pieces(_FEED_PIECE_BYTES))
    try:
        for raw_name, size, data in stream_unzip.stream_unzip(
            archive, chunk_size=_OUTPUT_PIECE_BYTES
        ):
            meter.entry()
            name, is_dir = _normalise(_decode_zip_name(raw_name))
            # stream-unzip's annotation says int, but it is None when a data descriptor follows.
            declared = cast(int | None, size)
            if is_dir:
                for chunk in data:  # directories carry no data; if one does, it still counts
                    meter.decompressed(len(chunk))
                continue
            _emit_entry(name, declared, data, meter, emit, data_is_decompressed=True)
    except stream_unzip.UnzipError as error:
        raise _zip_rejection(error) from error
    except stream_inflate.StreamInflateError as error:
        raise ArchiveRejected("CORRUPT_ARCHIVE", f"invalid deflate64 data ({error!r})") from error
    _check_central_directory(tail.joined(), meter.compressed, meter.entries)


def _decode_zip_name(raw: bytes) -> str:
    # Zip names are UTF-8 when flag bit 11 is set, else CP437. stream-unzip does not expose the
    # flags, so try UTF-8 first: CP437 text that also decodes as UTF-8 is vanishingly rare.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def _zip_rejection(error: stream_unzip.UnzipError) -> ArchiveRejected:
    if isinstance(error, stream_unzip.MissingPasswordError | stream_unzip.PasswordError):
        return ArchiveRejected("UNSUPPORTED_ARCHIVE", "encrypted zip entries are not supported")
    if isinstance(error, stream_unzip.NotStreamUnzippable):
        return ArchiveRejected(
            "UNSUPPORTED_ARCHIVE",
            "the zip has an uncompressed entry whose size is only known after its data, "
            "which cannot be read as a stream",
        )
    if isinstance(error, stream_unzip.UnsupportedFeatureError):
        return ArchiveRejected(
            "UNSUPPORTED_ARCHIVE", f"the zip uses an unsupported feature ({error!r})"
        )
    if isinstance(error, stream_unzip.TruncatedDataError):
        return ArchiveRejected("CORRUPT_ARCHIVE", "the zip is truncated")
    return ArchiveRejected("CORRUPT_ARCHIVE", f"invalid zip data ({error!r})")


class _Tail:
    """Keeps the last ``keep`` bytes (or a little more) of what passes through ``record``."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._parts: deque[bytes] = deque()
        self._size = 0

    def record(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._parts.append(piece)
            self._size += len(piece)
            while self._size - len(self._parts[0]) >= self._keep:
                self._size -= len(self._parts.popleft())
            yield piece

    def joined(self) -> bytes:
        return b"".join(self._parts)


def _corrupt_directory(detail: str) -> ArchiveRejected:
    return ArchiveRejected("CORRUPT_ARCHIVE", f"bad zip central directory: {detail}")


def _check_central_directory(tail: bytes, archive_size: int, entries_seen: int) -> None:
    """Check the central directory against the streamed entries, and reject link modes."""
    base = archive_size - len(tail)  # archive offset of tail[0]
    end = _find_end_record(tail)
    if end is None:
        raise _corrupt_directory("no end record (truncated?)")
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, end)
    if 0xFFFF in (disk, cd_disk, count) or 0xFFFFFFFF in (cd_size, cd_offset):
        locator = end - _ZIP64_LOCATOR.size
        if locator < 0:
            raise _corrupt_directory("no ZIP64 locator")
        signature, _, zip64_end, _ = _ZIP64_LOCATOR.unpack_from(tail, locator)
        zip64_end -= base
        if signature != b"PK\x06\x07" or not 0 <= zip64_end <= locator - _ZIP64_EOCD.size:
            raise _corrupt_directory("bad ZIP64 locator")
        signature, *_, count, cd_size, cd_offset = _ZIP64_EOCD.unpack_from(tail, zip64_end)
        if signature != b"PK\x06\x06":
            raise _corrupt_directory("bad ZIP64 end record")
    if count != entries_seen:
        raise _corrupt_directory(f"it lists {count} entries, the archive holds {entries_seen}")
    start = cd_offset - base
    if start < 0:
        return  # larger than the kept tail: entry counts matched, modes go unchecked
    if start + cd_size > end:
        raise _corrupt_directory("it overlaps its end record")
    position = start
    for _ in range(count):
        if position + _CENTRAL_HEADER.size > start + cd_size:
            raise _corrupt_directory("it is shorter than its entry count")
        fields = _CENTRAL_HEADER.unpack_from(tail, position)
        signature, host, name_length, extra_length, comment_length, attributes = (
            fields[0],
            fields[2],
            fields[11],
            fields[12],
            fields[13],
            fields[16],
        )
        if signature != b"PK\x01\x02":
            raise _corrupt_directory("bad entry signature")
        name_start = position + _CENTRAL_HEADER.size
        name = _decode_zip_name(tail[name_start : name_start + name_length])
        mode = attributes >> 16
        if host in _UNIX_HOSTS and stat.S_ISLNK(mode):
            raise ArchiveRejected("LINK_ENTRY", f"{name!r} is a symbolic link")
        if host in _UNIX_HOSTS and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveRejected("SPECIAL_ENTRY", f"{name!r} is not a regular file")
        position = name_start + name_length + extra_length + comment_length


def _find_end_record(tail: bytes) -> int | None:
    # The end record is the last 22 bytes plus a comment of up to 64 KiB; scan back for a
    # signature whose comment fits in what follows it.
    lowest = max(0, len(tail) - _EOCD.size - 0xFFFF)
    position = tail.rfind(b"PK\x05\x06", lowest)
    while position >= 0:
        if position + _EOCD.size <= len(tail):
            comment_length = _EOCD.unpack_from(tail, position)[7]
            if position + _EOCD.size + comment_length <= len(tail):
                return position
        position = tail.rfind(b"PK\x05\x06", lowest, position)
    return None


# --- worker side: tar ---------------------------------------------------------------------------

# tarfile reads a pax or GNU long-name header's whole payload in one go, and Python before 3.11.10
# parses pax payloads with a quadratic regex (CVE-2024-6232): keep them small. Real ones hold a
# path and a few attributes.
_MAX_TAR_METADATA_BYTES: Final = 64 * 1024
_TAR_METADATA_TYPES: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_ZSTD_MAX_WINDOW_BYTES: Final = 1 << 27


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _Decompressed:
    """The decompressed tar stream, counted for the ratio limit; what tarfile reads from."""

    def __init__(self, reader: _Readable, meter: _Meter) -> None:
        self._reader = reader
        self._meter = meter

    def read(self, size: int = -1, /) -> bytes:
        # tarfile asks for one record (10 KiB) at a time; never let anyone ask for everything.
        if size < 0 or size > _OUTPUT_PIECE_BYTES:
            size = _OUTPUT_PIECE_BYTES
        data = self._reader.read(size)
        self._meter.decompressed(len(data))
        return data


@dataclass
class _TarState:
    ended_with_marker: bool = False


def _guarded_tarinfo(state: _TarState) -> type[tarfile.TarInfo]:
    class GuardedTarInfo(tarfile.TarInfo):
        """Checks every header block as tarfile parses it (frombuf sees them all)."""

        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            # A zero block is the end-of-archive marker; tarfile also stops, silently, on an
            # empty, short or garbled header, which is how truncation looks.
            state.ended_with_marker = (
                len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE
            )
            info = super().frombuf(buf, encoding, errors)
            if info.size < 0:
                raise ArchiveRejected("CORRUPT_ARCHIVE", f"{info.name!r} has a negative size")
            if info.type in _TAR_METADATA_TYPES and info.size > _MAX_TAR_METADATA_BYTES:
                raise ArchiveRejected(
                    "TOO_LARGE",
                    f"a tar metadata header of {info.size} bytes exceeds "
                    f"{_MAX_TAR_METADATA_BYTES} bytes",
                )
            return info

    return GuardedTarInfo


def _read_tar(
    fmt: ArchiveFormat, limits: Limits, batches: Iterator[list[bytes]], emit: _Emit
) -> None:
    meter = _Meter(limits)
    source = _Input(batches, meter)
    state = _TarState()
    try:
        # gzip.GzipFile rather than tarfile's "r|gz": it bounds each read's output (tarfile's
        # own stream inflates a whole 10 KiB record at once) and reads multi-member gzip.
        reader: _Readable = (
            gzip.GzipFile(fileobj=source, mode="rb")
            if fmt == "tar.gz"
            else zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW_BYTES).stream_reader(
                cast(IO[bytes], source), read_size=_FEED_PIECE_BYTES, read_across_frames=True
            )
        )
        stream = _Decompressed(reader, meter)
        with tarfile.open(
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            tarinfo=_guarded_tarinfo(state),
            encoding="utf-8",
            errors="surrogateescape",
        ) as archive:
            for info in archive:
                meter.entry()
                name, _ = _normalise(info.name)
                _check_tar_type(info, name)
                if info.isdir():
                    continue
                data = archive.extractfile(info)
                if data is None:  # cannot happen for a regular file; keeps the types honest
                    raise ArchiveRejected("SPECIAL_ENTRY", f"{name!r} has no data")
                chunks = iter(partial(data.read, _OUTPUT_PIECE_BYTES), b"")
                _emit_entry(name, info.size, chunks, meter, emit, data_is_decompressed=False)
            if not state.ended_with_marker:
                raise ArchiveRejected(
                    "CORRUPT_ARCHIVE", "the tar stream ends without its end marker (truncated?)"
                )
            # Only zero padding may follow. Reading to the very end also has gzip check its CRC
            # and length, and zstd its checksum.
            while rest := archive.fileobj.read(_OUTPUT_PIECE_BYTES):
                if rest.count(0) != len(rest):
                    raise ArchiveRejected(
                        "CORRUPT_ARCHIVE", "data follows the tar end-of-archive marker"
                    )
    except (tarfile.TarError, EOFError, OSError, zlib.error, zstandard.ZstdError) as error:
        # OSError: gzip.BadGzipFile. EOFError: gzip stream cut short. Errors of the source
        # itself cannot land here: the pipe raises those as BaseExceptions.
        raise ArchiveRejected("CORRUPT_ARCHIVE", f"invalid {fmt} data ({error!r})") from error


def _check_tar_type(info: tarfile.TarInfo, name: str) -> None:
    if info.issym() or info.islnk():
        kind = "symbolic" if info.issym() else "hard"
        raise ArchiveRejected("LINK_ENTRY", f"{name!r} is a {kind} link to {info.linkname!r}")
    if info.issparse():
        raise ArchiveRejected("UNSUPPORTED_ARCHIVE", f"{name!r} is a sparse file")
    if not (info.isreg() or info.isdir()):
        raise ArchiveRejected("SPECIAL_ENTRY", f"{name!r} is not a regular file or directory")
