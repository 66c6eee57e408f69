"""``write_archive``: argument checks, errors and size mismatches, abandonment, memory and the
event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from taskdrive.fileops.archive_write import (
    ARCHIVE_FORMATS,
    ArchiveFormat,
    Member,
    archive_suffix,
    validate_level,
    write_archive,
)
from tests.fileops.archive_helpers import MODIFIED, MiB, member

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
