"""A chunk's bytes as they arrive: a raw body, or the ``chunk`` field of multipart/form-data,
streamed without spooling to disk or holding the whole chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from taskdrive.errors import ErrorCode, TaskdriveError

CHUNK_FIELD = "chunk"
# Boundaries and part headers of a multipart body, on top of the chunk itself.
MULTIPART_OVERHEAD = 64 * 1024


def chunk_stream(request: Request, *, max_bytes: int) -> AsyncIterator[bytes]:
    """The chunk's bytes; rejects bodies past ``max_bytes`` (413) before and while reading."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length")
    multipart = content_type == b"multipart/form-data"
    limit = max_bytes + (MULTIPART_OVERHEAD if multipart else 0)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_bytes)
    if multipart:
        boundary = options.get(b"boundary")
        if not boundary:
            raise TaskdriveError(ErrorCode.BAD_REQUEST, "multipart/form-data without a boundary")
        return _multipart_field(_limited(request, limit, max_bytes), boundary)
    if content_type in (b"application/octet-stream", b""):
        return _limited(request, limit, max_bytes)
    raise TaskdriveError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        "send the chunk as application/octet-stream or as the 'chunk' field of multipart/form-data",
        contentType=content_type.decode("latin-1"),
    )


def _too_large(max_bytes: int) -> TaskdriveError:
    return TaskdriveError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"a chunk may not exceed {max_bytes} bytes",
        maxChunkSize=max_bytes,
    )


async def _limited(request: Request, limit: int, max_bytes: int) -> AsyncIterator[bytes]:
    received = 0
    try:
        async for piece in request.stream():
            received += len(piece)
            if received > limit:
                raise _too_large(max_bytes)
            if piece:
                yield piece
    except ClientDisconnect as exc:
        raise TaskdriveError(ErrorCode.BAD_REQUEST, "the client disconnected mid-chunk") from exc


class _Parts:
    """Follows the parser's callbacks; keeps the bytes of the ``chunk`` field only."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.found = False
        self._in_chunk = False
        self._field = b""
        self._value = b""
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            self._disposition = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        self._in_chunk = params.get(b"name") == CHUNK_FIELD.encode()
        self.found = self.found or self._in_chunk
        self._disposition = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_chunk:
            self.pending.append(data[start:end])

    def on_part_end(self) -> None:
        self._in_chunk = False


async def _multipart_field(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    parts = _Parts()
    callbacks = {
        name: getattr(parts, name)
        for name in (
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for piece in body:
            parser.write(piece)
            if parts.pending:
                yield b"".join(parts.pending)
                parts.pending.clear()
        parser.finalize()
    except TaskdriveError:
        raise
    except Exception as exc:  # the parser's errors: a malformed body is the client's fault
        raise TaskdriveError(ErrorCode.BAD_REQUEST, f"malformed multipart body: {exc}") from exc
    if parts.pending:
        yield b"".join(parts.pending)
    if not parts.found:
        raise TaskdriveError(
            ErrorCode.BAD_REQUEST, f"multipart/form-data body has no '{CHUNK_FIELD}' field"
        )
