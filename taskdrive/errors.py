"""Domain errors: one table of stable codes with their HTTP status.

Activities raise ``ApplicationError(type=<code>)`` with these codes, the API raises
``TaskdriveError``; ``api/errors.py`` turns both into the body ``{code, message, status, details}``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorCode(Enum):
    def __init__(self, code: str, status: int) -> None:
        self.code = code
        self.status = status

    VALIDATION_ERROR = ("VALIDATION_ERROR", 400)
    BAD_REQUEST = ("BAD_REQUEST", 400)
    NOT_SUPPORTED = ("NOT_SUPPORTED", 400)
    CHUNK_INDEX_OUT_OF_RANGE = ("CHUNK_INDEX_OUT_OF_RANGE", 400)
    CHUNK_SIZE_MISMATCH = ("CHUNK_SIZE_MISMATCH", 400)
    MISSING_CHUNKS = ("MISSING_CHUNKS", 400)
    UNKNOWN_TASK_TYPE = ("UNKNOWN_TASK_TYPE", 400)
    UNSUPPORTED_CONVERSION = ("UNSUPPORTED_CONVERSION", 400)
    UNAUTHORIZED = ("UNAUTHORIZED", 401)
    FORBIDDEN = ("FORBIDDEN", 403)
    NOT_FOUND = ("NOT_FOUND", 404)
    TASK_NOT_FOUND = ("TASK_NOT_FOUND", 404)
    FILE_NOT_FOUND = ("FILE_NOT_FOUND", 404)
    POOL_NOT_FOUND = ("POOL_NOT_FOUND", 404)
    METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405)
    CHUNK_ALREADY_UPLOADED = ("CHUNK_ALREADY_UPLOADED", 409)
    CHUNK_IN_PROGRESS = ("CHUNK_IN_PROGRESS", 409)
    INVALID_TASK_STATE = ("INVALID_TASK_STATE", 409)
    FILE_CHANGED = ("FILE_CHANGED", 409)
    TASK_GONE = ("TASK_GONE", 410)
    PAYLOAD_TOO_LARGE = ("PAYLOAD_TOO_LARGE", 413)
    RANGE_NOT_SATISFIABLE = ("RANGE_NOT_SATISFIABLE", 416)
    UNSUPPORTED_MEDIA_TYPE = ("UNSUPPORTED_MEDIA_TYPE", 415)
    HASH_MISMATCH = ("HASH_MISMATCH", 422)
    IDEMPOTENCY_KEY_REUSED = ("IDEMPOTENCY_KEY_REUSED", 422)
    ARCHIVE_REJECTED = ("ARCHIVE_REJECTED", 422)
    WRONG_PASSWORD = ("WRONG_PASSWORD", 422)
    DECRYPTION_FAILED = ("DECRYPTION_FAILED", 422)
    IMAGE_REJECTED = ("IMAGE_REJECTED", 422)
    TASK_PAUSED = ("TASK_PAUSED", 423)
    UPLOAD_FAILED = ("UPLOAD_FAILED", 500)
    INTERNAL_ERROR = ("INTERNAL_ERROR", 500)
    SERVICE_UNAVAILABLE = ("SERVICE_UNAVAILABLE", 503)

    @classmethod
    def from_code(cls, code: str | None) -> ErrorCode | None:
        for member in cls:
            if member.code == code:
                return member
        return None


class TaskdriveError(Exception):
    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
