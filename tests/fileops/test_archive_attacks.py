"""``detect_format``, and ``read_archive`` against hostile and broken archives: bad names, links
and devices, bombs, limits, truncation, encryption."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator

import pytest
import stream_zip
import zstandard

from taskdrive.fileops.archive_read import (
    ArchiveRejected,
    Entry,
    Limits,
    RejectCode,
    detect_format,
    read_archive,
)
from taskdrive.fileops.archive_write import ARCHIVE_FORMATS, ArchiveFormat
from tests.fileops.archive_helpers import (
    FILES,
    MODIFIED,
    MiB,
    rejection,
    source,
    tar_info,
    tar_of,
    written,
    zip_of,
)


class Zeros(io.RawIOBase):
    """``size`` zero bytes, as a file, without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


class Counted:
    """A source that counts how much of the archive the reader pulled."""

    def __init__(self, data: bytes, chunk: int = 64 * 1024) -> None:
        self.data = data
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece


# --- detection ------------------------------------------------------------------------------


def test_detect_format() -> None:
    assert detect_format("a.bin", b"PK\x03\x04rest") == "zip"
    assert detect_format("empty.zip", b"PK\x05\x06" + bytes(18)) == "zip"
    assert detect_format("a.tgz", b"\x1f\x8b\x08\x00") == "tar.gz"
    assert detect_format("a.tar.zst", b"\x28\xb5\x2f\xfd\x04") == "tar.zst"
    with pytest.raises(ArchiveRejected) as caught:
        detect_format("a.zip", os.urandom(512).replace(b"P", b"Q").replace(b"\x1f", b"0"))
    assert caught.value.code == "UNSUPPORTED_ARCHIVE"
    plain_tar = io.BytesIO()
    with tarfile.open(fileobj=plain_tar, mode="w") as archive:
        archive.addfile(tar_info("a"), io.BytesIO())
    with pytest.raises(ArchiveRejected, match="uncompressed tar") as caught:
        detect_format("a.tar", plain_tar.getvalue()[:512])
    assert caught.value.code == "UNSUPPORTED_ARCHIVE"
    with pytest.raises(ArchiveRejected):
        detect_format("a.zip", b"")


# --- attacks --------------------------------------------------------------------------------

BAD_NAMES: list[tuple[str, RejectCode]] = [
    ("../evil", "PATH_TRAVERSAL"),
    ("a/../../b", "PATH_TRAVERSAL"),
    ("..\\..\\evil", "PATH_TRAVERSAL"),
    ("/etc/passwd", "ABSOLUTE_PATH"),
    ("C:\\Windows\\evil.dll", "ABSOLUTE_PATH"),
    ("\\\\server\\share\\evil", "ABSOLUTE_PATH"),
]


@pytest.mark.parametrize(("name", "code"), BAD_NAMES)
async def test_zip_bad_names(name: str, code: RejectCode) -> None:
    data = zip_of({"fine.txt": b"ok", zipfile.ZipInfo(name): b"evil"})
    assert await rejection(data, "zip") == code


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
@pytest.mark.parametrize(("name", "code"), BAD_NAMES)
async def test_tar_bad_names(fmt: ArchiveFormat, name: str, code: RejectCode) -> None:
    data = tar_of([(tar_info("fine.txt"), b"ok"), (tar_info(name), b"evil")], fmt)
    assert await rejection(data, fmt) == code


async def test_zip_name_with_nul() -> None:
    files = [("a\x00b.txt", MODIFIED, 0o100644, stream_zip.ZIP_32, iter([b"x"]))]
    assert await rejection(b"".join(stream_zip.stream_zip(files)), "zip") == "INVALID_NAME"


async def test_a_traversal_is_rejected_before_its_data_is_read() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("../evil", os.urandom(16 * MiB))
    counted = Counted(buffer.getvalue())
    with pytest.raises(ArchiveRejected, match="PATH_TRAVERSAL"):
        async for _ in read_archive(counted, "zip", Limits()):
            pass
    # The local header, plus the few MiB the loop reads ahead of the worker.
    assert counted.pulled < 6 * MiB


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (tarfile.SYMTYPE, "LINK_ENTRY"),
        (tarfile.LNKTYPE, "LINK_ENTRY"),
        (tarfile.FIFOTYPE, "SPECIAL_ENTRY"),
        (tarfile.CHRTYPE, "SPECIAL_ENTRY"),
        (tarfile.BLKTYPE, "SPECIAL_ENTRY"),
    ],
)
async def test_tar_links_and_devices(fmt: ArchiveFormat, kind: bytes, code: RejectCode) -> None:
    data = tar_of(
        [(tar_info("fine.txt"), b"ok"), (tar_info("link", kind, "/etc/passwd"), b"")], fmt
    )
    assert await rejection(data, fmt) == code


async def test_zip_symlink_is_rejected_from_the_central_directory() -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = zip_of({"fine.txt": b"ok", link: b"/etc/passwd"})
    seen = []
    with pytest.raises(ArchiveRejected) as caught:
        async for entry in read_archive(source(data), "zip", Limits()):
            seen.append(entry.name)
    assert caught.value.code == "LINK_ENTRY"
    # Local headers carry no mode, so the link streams as a file before the end is reached.
    assert seen == ["fine.txt", "link"]


async def test_zip_with_entries_hidden_from_the_central_directory() -> None:
    # Two archives glued together: stream readers see both entries, directory readers one.
    first = zip_of({"a.txt": b"a"})
    second = zip_of({"b.txt": b"b"})
    local_part = first[: first.index(b"PK\x01\x02")]
    assert await rejection(local_part + second, "zip") == "CORRUPT_ARCHIVE"


async def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("zeros.bin", "w") as file:
            block = bytes(4 * MiB)
            for _ in range(50):  # 200 MiB
                file.write(block)
    return buffer.getvalue()


def tar_bomb(fmt: ArchiveFormat, size: int = 200 * MiB) -> bytes:
    buffer = io.BytesIO()
    info = tar_info("zeros.bin")
    info.size = size
    compressed: gzip.GzipFile | zstandard.ZstdCompressionWriter
    if fmt == "tar.gz":
        compressed = gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9)
    else:
        compressed = zstandard.ZstdCompressor(level=3).stream_writer(buffer, closefd=False)
    with compressed, tarfile.TarFile(fileobj=compressed, mode="w", copybufsize=MiB) as tar:
        tar.addfile(info, Zeros(size))
    return buffer.getvalue()


async def assert_bomb_stopped(data: bytes, fmt: ArchiveFormat, limits: Limits) -> RejectCode:
    counted = Counted(data, chunk=16 * 1024)
    received = 0
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRejected) as caught:
            async for entry in read_archive(counted, fmt, limits):
                async for chunk in entry.chunks:
                    received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received < 8 * MiB, f"{received} bytes got through"
    assert peak < 24 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"
    return caught.value.code


async def test_zip_bomb_by_ratio() -> None:
    data = await zip_bomb()
    assert len(data) < 400_000  # ~1000:1
    limits = Limits(max_ratio=100, max_total_bytes=1024**3)
    assert await assert_bomb_stopped(data, "zip", limits) == "RATIO_EXCEEDED"


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
async def test_tar_bomb_by_ratio(fmt: ArchiveFormat) -> None:
    data = tar_bomb(fmt)
    limits = Limits(max_ratio=100, max_total_bytes=1024**3)
    assert await assert_bomb_stopped(data, fmt, limits) == "RATIO_EXCEEDED"


async def test_zip_bomb_by_total_size_counted_as_it_flows() -> None:
    # stream-zip (like zipfile on a pipe) declares no size up front: the bytes are counted.
    data = await written("zip", {"zeros.bin": bytes(32 * MiB)})
    limits = Limits(max_total_bytes=4 * MiB, max_ratio=1e9)
    assert await assert_bomb_stopped(data, "zip", limits) == "TOO_LARGE"


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
async def test_tar_declared_size_over_total_fails_before_any_data(fmt: ArchiveFormat) -> None:
    data = tar_bomb(fmt, size=32 * MiB)
    limits = Limits(max_total_bytes=4 * MiB, max_ratio=1e9)
    with pytest.raises(ArchiveRejected, match="declares") as caught:
        async for _ in read_archive(source(data), fmt, limits):
            pytest.fail("no entry should be produced")
    assert caught.value.code == "TOO_LARGE"


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_total_size_over_many_entries(fmt: ArchiveFormat) -> None:
    files = {f"f{i}.bin": os.urandom(MiB) for i in range(5)}
    data = await written(fmt, files)
    assert await rejection(data, fmt, Limits(max_total_bytes=3 * MiB + 1)) == "TOO_LARGE"


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_too_many_entries(fmt: ArchiveFormat) -> None:
    data = await written(fmt, {f"f{i}.txt": b"x" for i in range(12)})
    seen = []
    with pytest.raises(ArchiveRejected) as caught:
        async for entry in read_archive(source(data), fmt, Limits(max_entries=10)):
            seen.append(entry.name)
    assert caught.value.code == "TOO_MANY_ENTRIES"
    assert len(seen) == 10


async def test_directories_count_as_entries() -> None:
    data = zip_of({f"d{i}/": b"" for i in range(11)})
    assert await rejection(data, "zip", Limits(max_entries=10)) == "TOO_MANY_ENTRIES"


async def test_oversized_tar_metadata_header() -> None:
    info = tar_info("x" * 100_000)  # a pax path record beyond the metadata cap
    assert await rejection(tar_of([(info, b"x")]), "tar.gz") == "TOO_LARGE"


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_garbage(fmt: ArchiveFormat) -> None:
    assert await rejection(os.urandom(100_000), fmt) == "CORRUPT_ARCHIVE"


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_empty_input(fmt: ArchiveFormat) -> None:
    assert await rejection(b"", fmt) == "CORRUPT_ARCHIVE"


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9, 0.999])
async def test_truncated(fmt: ArchiveFormat, keep: float) -> None:
    data = await written(fmt, FILES)
    assert await rejection(data[: int(len(data) * keep)], fmt) == "CORRUPT_ARCHIVE"


async def test_zip_truncated_in_its_central_directory() -> None:
    data = await written("zip", FILES)
    assert await rejection(data[:-30], "zip") == "CORRUPT_ARCHIVE"


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
async def test_tar_with_data_after_its_end(fmt: ArchiveFormat) -> None:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as archive:
        archive.addfile(tar_info("a"), io.BytesIO())
    glued = plain.getvalue() + b"sneaky" * 1000
    data = zlib.compress(glued, wbits=31) if fmt == "tar.gz" else zstandard.compress(glued)
    assert await rejection(data, fmt) == "CORRUPT_ARCHIVE"


@pytest.mark.filterwarnings("ignore:PBKDF2:DeprecationWarning")  # stream-zip's AES key derivation
async def test_encrypted_zip() -> None:
    files = [("secret.txt", MODIFIED, 0o100644, stream_zip.ZIP_32, iter([b"secret"]))]
    data = b"".join(stream_zip.stream_zip(files, password="hunter2"))
    assert await rejection(data, "zip") == "UNSUPPORTED_ARCHIVE"


async def test_source_errors_pass_through() -> None:
    data = await written("tar.gz", FILES)

    async def failing() -> AsyncIterator[bytes]:
        yield data[:50_000]
        raise ConnectionResetError("download went away")

    with pytest.raises(ConnectionResetError, match="download went away"):
        async for entry in read_archive(failing(), "tar.gz", Limits()):
            async for _ in entry.chunks:
                pass


async def test_rejection_surfaces_inside_an_entrys_chunks() -> None:
    data = await written("zip", {"big.bin": os.urandom(16 * MiB)}, level=1)
    entries: list[Entry] = []
    with pytest.raises(ArchiveRejected, match="TOO_LARGE"):
        async for entry in read_archive(source(data), "zip", Limits(max_total_bytes=2 * MiB)):
            entries.append(entry)
            async for _ in entry.chunks:
                pass
    assert [e.name for e in entries] == ["big.bin"]


def test_limits_validation() -> None:
    with pytest.raises(ValueError):
        Limits(max_ratio=0.5)
    with pytest.raises(ValueError):
        Limits(max_entries=-1)


def test_rejection_pickles() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(ArchiveRejected("LINK_ENTRY", "'x' is a link")))
    assert (error.code, error.message, str(error)) == (
        "LINK_ENTRY",
        "'x' is a link",
        "LINK_ENTRY: 'x' is a link",
    )
