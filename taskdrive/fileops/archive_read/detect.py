"""Recognising an archive's format from its first bytes."""

from __future__ import annotations

from typing import Final

from taskdrive.fileops.archive_read.limits import ArchiveRejected
from taskdrive.fileops.archive_write import ArchiveFormat


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
