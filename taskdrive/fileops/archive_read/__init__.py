"""Safe streaming extraction of zip / tar.gz / tar.zst archives from untrusted uploads.

``read_archive`` turns an async stream of archive bytes into a sequence of ``Entry`` objects, each
with its own async stream of bytes, without ever holding a whole entry or the whole archive: the
caller stores an entry's chunks as they arrive and moves on. Decompression runs in one worker
thread per archive (``ThreadPipe``), connected to the loop by bounded queues.

Anything unsafe raises ``ArchiveRejected`` (with a stable ``code``) as soon as it is seen, in
the middle of the stream if need be; the caller then deletes what it stored so far:

* names: absolute (``/x``, ``C:\\x``, ``\\\\server``), escaping the root after resolving ``..``
  (``a/../../b``), containing NUL, or not valid UTF-8 (tar) -> PATH_TRAVERSAL / ABSOLUTE_PATH /
  INVALID_NAME. Backslashes count as separators. Names are returned normalised (``./a//b`` ->
  ``a/b``); ``a/../b`` is accepted as ``b``.
* entry types: tar symlinks and hard links -> LINK_ENTRY; devices, FIFOs and unknown tar types
  -> SPECIAL_ENTRY; GNU sparse files -> UNSUPPORTED_ARCHIVE. Directories are skipped, not yielded.
* zip symlinks: a zip records the Unix mode only in the central directory at the very end (the
  local headers that a stream reader sees carry none, and stream-unzip does not expose it), so
  a symlink reaches the caller as a small regular entry whose content is the link target. Once
  all entries have streamed, the central directory is parsed from the retained tail of the
  archive (the last ``_ZIP_TAIL_BYTES``; a larger directory is only counted, not mode-checked)
  and symlink / special modes are rejected then, before ``read_archive`` finishes. The same
  check rejects a central directory whose entry count differs from the local entries streamed
  (entries hidden from one kind of reader) and an archive truncated in its central directory,
  which stream-unzip does not notice.
* size: more than ``max_entries`` entries (directories included) -> TOO_MANY_ENTRIES; more than
  ``max_total_bytes`` of entry data, counted as it flows (a declared size that would exceed it
  fails early, but declared sizes are never trusted) -> TOO_LARGE; more than ``max_ratio`` bytes
  decompressed per compressed byte consumed so far, once ``ratio_grace_bytes`` have come out ->
  RATIO_EXCEEDED. For tar the ratio counts the whole decompressed tar stream (headers, padding,
  skipped data); the total counts entry data only.
* encryption and zip features stream-unzip cannot stream -> UNSUPPORTED_ARCHIVE; anything
  malformed or truncated -> CORRUPT_ARCHIVE. A tar stream must end with its end-of-archive
  marker followed by nothing but zeros; reading it to the very end also makes gzip check its CRC.
  (A zstd frame cut inside the final zero padding, after the marker, goes unnoticed: zstandard's
  stream reader reports a cut frame as a plain end of input, and no data is lost.)

Memory per archive stays around ten MiB: the loop reads ahead at most a few 1 MiB batches, entry
data travels in pieces of about 1 MiB (a few in flight), a zip keeps its last 4 MiB for the
central directory check, and tar metadata headers are capped at ``_MAX_TAR_METADATA_BYTES``. The
exception is zstd, whose decoder allocates the window the frame asks for, up to 128 MiB (zstd's
own default limit; ``zstd`` up to level 19 asks for 8 MiB at most, ``--ultra``/``--long`` more).
Decompressors are fed 64 KiB of input at a time and return at most 1 MiB per call, so the ratio
is checked at least every MiB of output, against input counted at that 64 KiB granularity.
"""

from __future__ import annotations

from taskdrive.fileops.archive_read.detect import detect_format
from taskdrive.fileops.archive_read.limits import (
    DEFAULT_LIMITS,
    ArchiveRejected,
    Limits,
    RejectCode,
)
from taskdrive.fileops.archive_read.reader import Entry, read_archive

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveRejected",
    "Entry",
    "Limits",
    "RejectCode",
    "detect_format",
    "read_archive",
]
