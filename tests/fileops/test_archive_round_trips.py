"""Archive round trips through our writer and reader, and archives made by other tools read by
ours (or ours read by theirs)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import stat
import tarfile
import threading
import zipfile
import zlib

import pytest
import stream_zip
import zstandard

from taskdrive.fileops.archive_read import Limits, detect_format, read_archive
from taskdrive.fileops.archive_write import ARCHIVE_FORMATS, ArchiveFormat, archive_suffix
from tests.fileops.archive_helpers import (
    FILES,
    MODIFIED,
    extracted,
    rejection,
    source,
    tar_info,
    written,
)

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
