"""Streaming archive writing and safe streaming extraction, checked against independent readers.

Pure unit tests: archives are built in memory, with our writer or with zipfile / tarfile /
zstandard / stream-zip, and fed to ``read_archive`` in chunks of awkward sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import os
import stat
import tarfile
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
from taskdrive.fileops.archive_write import (
    ARCHIVE_FORMATS,
    OUTPUT_PIECE_BYTES,
    ArchiveFormat,
    Member,
    archive_suffix,
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


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_round_trip(fmt: ArchiveFormat) -> None:
    data = await written(fmt, FILES)
    assert detect_format("x" + archive_suffix(fmt), data[:16]) == fmt
    got = await extracted(data, fmt)
    assert list(got) == list(FILES)
    assert got == FILES


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_round_trip_with_one_big_source_chunk(fmt: ArchiveFormat) -> None:
    data = await written(fmt, FILES)
    assert await extracted(data, fmt, chunk=len(data)) == FILES


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
async def test_empty_archive(fmt: ArchiveFormat) -> None:
    data = await written(fmt, {})
    assert await extracted(data, fmt) == {}


async def test_zip_read_by_zipfile() -> None:
    data = await written("zip", FILES, level=9)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert {i.filename: archive.read(i) for i in archive.infolist()} == FILES
        info = archive.getinfo("readme.txt")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.date_time == (2024, 5, 17, 12, 30, 42)
        assert stat.S_ISREG(info.external_attr >> 16)


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst"])
async def test_tar_read_by_tarfile(fmt: ArchiveFormat) -> None:
    data = await written(fmt, FILES)
    if fmt == "tar.gz":
        plain = zlib.decompress(data, wbits=31)
    else:
        plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == list(FILES)
        assert all(m.isreg() and m.mtime == int(MODIFIED.timestamp()) for m in members)
        got = {}
        for m in members:
            file = archive.extractfile(m)
            assert file is not None
            got[m.name] = file.read()
    assert got == FILES
    assert len(plain) % tarfile.RECORDSIZE == 0


async def test_gzip_level_is_applied() -> None:
    text = {"a.txt": b"".join(b"line %d of some text\n" % i for i in range(50_000))}
    fast = await written("tar.gz", text, level=1)
    small = await written("tar.gz", text, level=9)
    assert len(small) < len(fast)


async def test_read_zip_made_by_zipfile_with_directories_and_stored_entries() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.mkdir("top")
        archive.mkdir("top/sub")
        archive.writestr("top/sub/stored.txt", b"stored " * 1000, zipfile.ZIP_STORED)
        archive.writestr(
            "top/deflated.bin", FILES["nested/deeper/random.bin"], zipfile.ZIP_DEFLATED
        )
        archive.writestr("./dot/../plain.txt", b"plain", zipfile.ZIP_DEFLATED)
    got = await extracted(buffer.getvalue(), "zip")
    assert got == {
        "top/sub/stored.txt": b"stored " * 1000,
        "top/deflated.bin": FILES["nested/deeper/random.bin"],
        "plain.txt": b"plain",
    }


class NonSeekable(io.RawIOBase):
    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buffer += data
        return len(data)


async def test_read_zip_with_data_descriptors() -> None:
    # zipfile writing to an unseekable stream puts sizes after the data, like stream-zip.
    out = NonSeekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("streamed.txt", "w") as file:
            file.write(b"streamed " * 10_000)
    assert await extracted(bytes(out.buffer), "zip") == {"streamed.txt": b"streamed " * 10_000}


async def test_read_tar_gz_made_by_tarfile() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tar_info("./top", tarfile.DIRTYPE))
        for name, data in FILES.items():
            info = tarfile.TarInfo("./top/" + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    got = await extracted(buffer.getvalue(), "tar.gz")
    assert got == {"top/" + name: data for name, data in FILES.items()}


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
async def test_read_tar_zst_made_by_zstandard(tar_format: int) -> None:
    buffer = io.BytesIO()
    long_name = "long/" + "n" * 150 + "/file.txt"  # needs a GNU long name / pax path record
    entries = {**FILES, long_name: b"long"}
    with zstandard.ZstdCompressor(level=5).stream_writer(buffer, closefd=False) as compressed:
        with tarfile.open(fileobj=compressed, mode="w|", format=tar_format) as archive:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    assert await extracted(buffer.getvalue(), "tar.zst") == entries


def zip64_of(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A zip in ZIP64 layout throughout (ZIP64 end records too), as stream-zip writes it."""
    members = [
        (name, MODIFIED, mode, stream_zip.ZIP_64, iter([data]))
        for name, (mode, data) in files.items()
    ]
    return b"".join(stream_zip.stream_zip(members))


async def test_read_zip64() -> None:
    data = zip64_of({name: (0o100644, content) for name, content in FILES.items()})
    assert b"PK\x06\x06" in data[-200:]  # a ZIP64 end of central directory record
    assert await extracted(data, "zip") == FILES


async def test_zip64_symlink_is_rejected() -> None:
    data = zip64_of({"fine.txt": (0o100644, b"ok"), "link": (stat.S_IFLNK | 0o777, b"/etc")})
    assert await rejection(data, "zip") == "LINK_ENTRY"


async def test_entries_left_unread_are_drained() -> None:
    data = await written("zip", FILES)
    names = []
    async for entry in read_archive(source(data), "zip", Limits()):
        names.append(entry.name)
        if entry.name == "nested/deeper/random.bin":
            await anext(entry.chunks)  # read a little, leave the rest
    assert names == list(FILES)


async def test_read_stops_when_abandoned() -> None:
    threads_before = threading.active_count()
    data = await written("tar.zst", FILES)
    async with contextlib.aclosing(read_archive(source(data), "tar.zst", Limits())) as entries:
        async for entry in entries:
            assert await anext(entry.chunks)
            break
    with pytest.raises(RuntimeError, match="closed"):
        await anext(entry.chunks)
    for _ in range(100):
        if threading.active_count() <= threads_before:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() <= threads_before


# --- writer arguments and behaviour ---------------------------------------------------------


def test_validate_level() -> None:
    assert validate_level("zip", None) == 6
    assert validate_level("tar.gz", None) == 6
    assert validate_level("tar.zst", None) == 3
    assert validate_level("zip", 0) == 0
    assert validate_level("tar.zst", 22) == 22
    for fmt, bad in [("zip", 10), ("zip", -1), ("tar.gz", 0), ("tar.zst", 23), ("tar.zst", 0)]:
        with pytest.raises(ValueError, match="out of range"):
            validate_level(fmt, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer"):
        validate_level("zip", True)
    with pytest.raises(ValueError, match="unknown archive format"):
        validate_level("rar", 5)  # type: ignore[arg-type]


def test_archive_suffix() -> None:
    assert [archive_suffix(f) for f in ARCHIVE_FORMATS] == [".zip", ".tar.gz", ".tar.zst"]


@pytest.mark.parametrize(
    "names",
    [
        ["a", "a"],
        [""],
        ["/etc/passwd"],
        ["../evil"],
        ["a/../b"],
        ["a//b"],
        ["./a"],
        ["dir/"],
        ["C:/x"],
        ["a\\b"],
        ["nul\x00"],
    ],
)
def test_write_rejects_bad_members_up_front(names: list[str]) -> None:
    with pytest.raises(ValueError):
        write_archive("zip", [member(n, b"x") for n in names], level=6)


def test_write_rejects_bad_level_up_front() -> None:
    with pytest.raises(ValueError, match="out of range"):
        write_archive("tar.gz", [member("a", b"x")], level=0)


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
@pytest.mark.parametrize("declared", [3, 5])
async def test_write_rejects_size_mismatch(fmt: ArchiveFormat, declared: int) -> None:
    async def four() -> AsyncIterator[bytes]:
        yield b"four"

    members = [Member("a", declared, MODIFIED, four)]
    with pytest.raises(ValueError, match="declared"):
        async for _ in write_archive(fmt, members, level=validate_level(fmt, None)):
            pass


async def test_write_passes_member_errors_through() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 10
        raise ConnectionResetError("storage went away")

    with pytest.raises(ConnectionResetError, match="storage went away"):
        async for _ in write_archive("zip", [Member("a", 20, MODIFIED, broken)], level=6):
            pass


async def test_write_stops_when_abandoned() -> None:
    closed = asyncio.Event()
    threads_before = threading.active_count()

    async def endless() -> AsyncIterator[bytes]:
        block = os.urandom(MiB)
        try:
            while True:
                yield block
        finally:
            closed.set()

    archive = write_archive("zip", [Member("big", 1 << 40, MODIFIED, endless)], level=1)
    first = await anext(archive)
    assert first.startswith(b"PK\x03\x04")
    await archive.aclose()
    assert closed.is_set()
    for _ in range(100):  # the worker thread exits once it notices
        if threading.active_count() <= threads_before:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() <= threads_before


async def test_write_keeps_the_event_loop_free_and_memory_bounded() -> None:
    # Semi-compressible data at the slowest level: seconds of CPU if it ran on the loop.
    size = 48 * MiB
    block = os.urandom(4 * MiB).translate(bytes(64 + i % 32 for i in range(256)))

    async def data() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    gaps: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    tracemalloc.start()
    try:
        total = 0
        async for piece in write_archive("zip", [Member("d", size, MODIFIED, data)], level=9):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        done = True
        await tick
    assert 0 < total < size
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f}s"
    assert peak < 40 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"


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
