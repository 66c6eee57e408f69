"""Streaming archive writing and safe streaming extraction, checked against independent readers.

Pure unit tests: archives are built in memory, with our writer or with zipfile / tarfile /
zstandard / stream-zip, and fed to ``read_archive`` in chunks of awkward sizes.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import zstandard

from taskdrive.fileops.archive_read import ArchiveRejected, Limits, RejectCode, read_archive
from taskdrive.fileops.archive_write import (
    OUTPUT_PIECE_BYTES,
    ArchiveFormat,
    Member,
    validate_level,
    write_archive,
)

MODIFIED = datetime(2024, 5, 17, 12, 30, 42, tzinfo=UTC)
MiB = 1024 * 1024

# Several members covering the awkward cases: empty, more than a 1 MiB output piece of random
# (incompressible) data, unicode names, nested directories.
FILES: dict[str, bytes] = {
    "readme.txt": b"hello archive\n" * 100,
    "empty.bin": b"",
    "nested/deeper/random.bin": os.urandom(MiB + MiB // 2),
    "nested/ünïcödé 名前.txt": "ünïcödé ✓\n".encode() * 500,
    "nested/deeper/zeros.bin": bytes(300_000),
}


def member(name: str, data: bytes, chunk: int = 100_003) -> Member:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return Member(name, len(data), MODIFIED, chunks)


async def source(data: bytes, chunk: int = 7_777) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def written(fmt: ArchiveFormat, files: dict[str, bytes], level: int | None = None) -> bytes:
    members = [member(name, data) for name, data in files.items()]
    pieces = [p async for p in write_archive(fmt, members, level=validate_level(fmt, level))]
    # Every piece but the last is a full output piece: no tiny writes downstream.
    assert all(len(p) >= OUTPUT_PIECE_BYTES for p in pieces[:-1])
    return b"".join(pieces)


async def extracted(
    data: bytes, fmt: ArchiveFormat, limits: Limits | None = None, chunk: int = 7_777
) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    async for entry in read_archive(source(data, chunk), fmt, limits or Limits()):
        assert entry.name not in result
        result[entry.name] = b"".join([c async for c in entry.chunks])
    return result


async def rejection(
    data: bytes, fmt: ArchiveFormat, limits: Limits | None = None, chunk: int = 7_777
) -> RejectCode:
    with pytest.raises(ArchiveRejected) as caught:
        await extracted(data, fmt, limits, chunk)
    return caught.value.code


def zip_of(entries: dict[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_of(infos: list[tuple[tarfile.TarInfo, bytes]], fmt: ArchiveFormat = "tar.gz") -> bytes:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in infos:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    if fmt == "tar.gz":
        return zlib.compress(plain.getvalue(), wbits=31)
    return zstandard.ZstdCompressor().compress(plain.getvalue())


def tar_info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info
