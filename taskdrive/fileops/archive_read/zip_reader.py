"""Reading a zip in the worker thread, and checking its central directory afterwards."""

from __future__ import annotations

import stat
import struct
from collections import deque
from collections.abc import Iterator
from typing import Final, cast

import stream_inflate  # type: ignore[import-untyped]  # stream-unzip's deflate64, untyped
import stream_unzip

from taskdrive.fileops.archive_read.limits import ArchiveRejected, Limits, _Meter
from taskdrive.fileops.archive_read.names import _normalise
from taskdrive.fileops.archive_read.worker import (
    _FEED_PIECE_BYTES,
    _OUTPUT_PIECE_BYTES,
    _Emit,
    _emit_entry,
    _Input,
)

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
