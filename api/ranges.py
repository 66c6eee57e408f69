"""HTTP Range parsing for downloads: one byte range, as browsers and download managers send."""

from __future__ import annotations

from taskdrive.errors import ErrorCode, TaskdriveError


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) to send, or None for the whole object.

    Several ranges or a malformed header are ignored (the whole object is sent, as RFC 9110
    allows); a range that starts past the end is 416.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise _unsatisfiable(size)
            return max(size - suffix, 0), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        raise _unsatisfiable(size)
    return start, min(end, size)


def _unsatisfiable(size: int) -> TaskdriveError:
    return TaskdriveError(
        ErrorCode.RANGE_NOT_SATISFIABLE, "the requested range is outside the file", size=size
    )
