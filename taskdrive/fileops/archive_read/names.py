"""Entry name checks: reject absolute and escaping names, normalise the rest."""

from __future__ import annotations

import re
from typing import Final

from taskdrive.fileops.archive_read.limits import ArchiveRejected

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
