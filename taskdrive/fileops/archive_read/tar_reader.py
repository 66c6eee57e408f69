"""Reading a tar.gz or tar.zst in the worker thread."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, Final, Protocol, Self, cast

import zstandard

from taskdrive.fileops.archive_read.limits import ArchiveRejected, Limits, _Meter
from taskdrive.fileops.archive_read.names import _normalise
from taskdrive.fileops.archive_read.worker import (
    _FEED_PIECE_BYTES,
    _OUTPUT_PIECE_BYTES,
    _Emit,
    _emit_entry,
    _Input,
)
from taskdrive.fileops.archive_write import ArchiveFormat

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
