"""What the upload benchmark reads of the machine (``/proc``) and what it does to it between
uploads, so that every timed upload meets the same conditions. Linux only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path

from bench.client import BenchError
from taskdrive.settings import MiB

LET_GO_TIMEOUT = 120.0  # seconds for a server to close the files it was writing


def prime_page_cache(folder: Path, size: int) -> None:
    """Writes ``size`` bytes into a scratch file in ``folder`` and removes it unwritten-back.

    The memory a VM's guest frees may be handed back to its host (free page reporting, which
    this machine's kernel does), and the host faults it in again when the guest reuses it.
    Without this, an upload's page cache came by turns from memory the host still backed and
    from memory it had taken back: in alternate pairs of uploads the server's threads spent 1.0
    to 1.3 instead of 0.3 to 0.4 kernel core-seconds per GiB, whichever side was measured, and
    a round's ratio swung from 0.75 to 1.38. Done before every timed upload, this hands each
    the same freshly freed memory."""
    scratch = folder / f".prime-{uuid.uuid4().hex}"
    block = bytes(MiB)
    try:
        with scratch.open("wb") as out:
            for _ in range(-(-size // MiB)):
                out.write(block)
    finally:
        scratch.unlink(missing_ok=True)


async def files_let_go(pid: int, folder: Path) -> None:
    """Waits until process ``pid`` holds no descriptor of a removed file under ``folder``.

    Both servers keep a file open for a moment after its last chunk (see
    ``taskdrive.pools.local``): until then the removed file's page cache is not freed, and
    freeing it during the next upload would land in that upload's time."""
    async with asyncio.timeout(LET_GO_TIMEOUT):
        while True:
            targets = _descriptor_targets(pid)
            if not any(t.startswith(str(folder)) and t.endswith(" (deleted)") for t in targets):
                return
            await asyncio.sleep(0.05)  # polling /proc; nothing to wait on instead


def _descriptor_targets(pid: int) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(fd))
    return targets


def peak_rss_reset(pid: int) -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the next reading is one run's peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (field 10 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[7])


def peak_rss(pid: int) -> int:
    """VmHWM: the kernel's exact high-water mark of the resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")
