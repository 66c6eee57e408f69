"""FileUpload's contracts, shared by the API, the type's workflow and its activities.

Chunk bytes never cross Temporal: the API writes them into the pool and records them in the
``upload_chunks`` ledger; the workflow hears only of progress (absolute counts, so a late or
repeated signal is harmless) and of the client's request to complete.
"""

from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from taskdrive.params import TaskParams

# The upload's own signals (pause, resume and cancel are the lifecycle's).
SIGNAL_PROGRESS = "chunks_progress"
SIGNAL_COMPLETE = "complete"


class FileUploadParams(TaskParams):
    """Everything fixed when the upload is created (by ``POST /api/files/upload/create``, not
    ``POST /api/tasks``): the declared file, where its bytes go, how long it may stay idle."""

    file_id: str
    """Reserved at create: the file record's id once the upload completes."""
    pool_id: str
    file_name: str
    file_size: int
    content_type: str
    hash: str
    chunk_size: int
    chunks_count: int
    storage_key: str
    multipart_upload_id: str | None = None
    bundle_id: str | None = None
    expired_at: str | None = None
    stale_after_seconds: float
    encrypt_password: SecretStr | None = None
    """Once verified, the file is stored age-encrypted with it. Sealed for this task
    (``taskdrive.secrets``) in the parameters the workflow gets: never plain in Temporal."""


@dataclass
class ChunkProgress:
    chunks_uploaded: int
    bytes_uploaded: int
    at: str

    def merged(self, other: "ChunkProgress") -> "ChunkProgress":
        """The furthest of two reports: they may arrive in any order."""
        return ChunkProgress(
            max(self.chunks_uploaded, other.chunks_uploaded),
            max(self.bytes_uploaded, other.bytes_uploaded),
            later_instant(self.at, other.at),
        )


def later_instant(a: str, b: str) -> str:
    """The later of two ISO-8601 instants, "" being none (string order breaks across offsets)."""
    if not a or not b:
        return a or b
    return b if datetime.fromisoformat(b) > datetime.fromisoformat(a) else a


def upload_progress_percent(bytes_uploaded: int, file_size: int) -> float:
    if file_size <= 0:
        return 0.0
    return round(100.0 * bytes_uploaded / file_size, 2)
