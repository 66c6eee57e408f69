"""FileUpload: the resumable chunked upload. Contracts shared by the API, workflow and activities.

Chunk bytes never cross Temporal: the API writes them into the pool and records them in the
``upload_chunks`` ledger; the workflow hears only of progress (absolute counts, so a late or
repeated signal is harmless) and of the client's request to complete.
"""

from dataclasses import dataclass

from taskdrive.projection import TaskHeader
from taskdrive.registry import TaskType, register

FILE_UPLOAD = register(
    TaskType(
        name="FileUpload",
        category="uploads",
        default_priority=50,
        description="Resumable chunked upload",
    )
)

# Signal, query and activity names: the API and the workflow meet on these strings.
SIGNAL_PROGRESS = "chunks_progress"
SIGNAL_COMPLETE = "complete"
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_CANCEL = "cancel"
QUERY_PROGRESS = "progress"


@dataclass
class UploadSpec:
    """Everything fixed at create time."""

    header: TaskHeader
    file_id: str
    pool_id: str
    file_name: str
    file_size: int
    content_type: str
    hash: str
    chunk_size: int
    chunks_count: int
    storage_key: str
    multipart_upload_id: str | None
    bundle_id: str | None
    expired_at: str | None
    stale_after_seconds: float
    heartbeat_timeout_seconds: float
    sealed_password: str | None = None
    """``encryptPassword`` sealed for this task (``taskdrive.secrets``): once verified, the
    file is stored age-encrypted. Never the plain text; absent on uploads that predate it."""


@dataclass
class UploadState:
    """The workflow's mutable state; carried across continue-as-new."""

    status: str
    last_activity: str
    seq: int = 0
    chunks_uploaded: int = 0
    bytes_uploaded: int = 0
    paused: bool = False
    complete_requested: bool = False
    cancel_requested: bool = False
    cancel_reason: str | None = None
    phase: str = "receiving"


@dataclass
class UploadInput:
    spec: UploadSpec
    state: UploadState | None = None


@dataclass
class ChunkProgress:
    chunks_uploaded: int
    bytes_uploaded: int
    at: str


@dataclass
class LifecycleSignal:
    reason: str | None = None
    by: str | None = None


@dataclass
class UploadProgress:
    task_id: str
    status: str
    phase: str
    progress: float
    chunks_uploaded: int
    chunks_count: int
    bytes_uploaded: int
    file_size: int
    last_activity: str


@dataclass
class UploadOutcome:
    status: str
    file_id: str | None = None


@dataclass
class AssembleRequest:
    spec: UploadSpec


@dataclass
class AssembleResult:
    file_id: str
    size: int
    hash: str
    file_name: str | None = None
    """The stored name where it is not the upload's (encrypted: with ".age")."""


@dataclass
class DiscardRequest:
    spec: UploadSpec
    delete_object: bool
    """Also delete a finished object (cancel after assembly began); staging is always removed."""


def upload_progress_percent(bytes_uploaded: int, file_size: int) -> float:
    if file_size <= 0:
        return 0.0
    return round(100.0 * bytes_uploaded / file_size, 2)
