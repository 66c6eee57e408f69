"""What an archive may expand to, and how it is rejected: ``Limits``, ``ArchiveRejected``.

``_Meter`` counts an archive against its limits in the worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

RejectCode = Literal[
    "PATH_TRAVERSAL",
    "ABSOLUTE_PATH",
    "INVALID_NAME",
    "LINK_ENTRY",
    "SPECIAL_ENTRY",
    "TOO_LARGE",
    "RATIO_EXCEEDED",
    "TOO_MANY_ENTRIES",
    "UNSUPPORTED_ARCHIVE",
    "CORRUPT_ARCHIVE",
]


class ArchiveRejected(Exception):
    """The archive is unsafe or unreadable; ``code`` says why, ``message`` says where."""

    def __init__(self, code: RejectCode, message: str) -> None:
        # Both in args, so the exception pickles and crosses process boundaries intact.
        super().__init__(code, message)
        self.code: RejectCode = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Limits:
    """What an archive may expand to; see the module docstring for how each is counted."""

    max_total_bytes: int = 10 * 1024**3
    max_entries: int = 10_000
    max_ratio: float = 100.0
    # Output allowed before the ratio is enforced: the first bytes of any archive have consumed
    # little input yet (a small file compresses well, headers are tiny).
    ratio_grace_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_total_bytes < 0 or self.max_entries < 0 or self.ratio_grace_bytes < 0:
            raise ValueError(f"limits must not be negative: {self}")
        if not self.max_ratio >= 1:
            raise ValueError(f"max_ratio must be at least 1: {self}")


DEFAULT_LIMITS: Final = Limits()


class _Meter:
    """Counts bytes and entries in the worker and raises ArchiveRejected past a limit."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self.compressed = 0  # archive bytes handed to the decompressor
        self.inflated = 0  # bytes the decompressor produced
        self.extracted = 0  # entry data passed on to the caller
        self.entries = 0

    def consumed(self, size: int) -> None:
        self.compressed += size

    def decompressed(self, size: int) -> None:
        self.inflated += size
        limits = self._limits
        if self.inflated > limits.ratio_grace_bytes and (
            self.inflated > limits.max_ratio * self.compressed
        ):
            raise ArchiveRejected(
                "RATIO_EXCEEDED",
                f"{self.inflated} bytes decompressed from {self.compressed} compressed bytes "
                f"exceeds the limit of {limits.max_ratio:g}:1",
            )

    def extracted_bytes(self, size: int) -> None:
        self.extracted += size
        if self.extracted > self._limits.max_total_bytes:
            raise ArchiveRejected(
                "TOO_LARGE",
                f"entries exceed the limit of {self._limits.max_total_bytes} bytes in total",
            )

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self._limits.max_entries:
            raise ArchiveRejected(
                "TOO_MANY_ENTRIES", f"more than {self._limits.max_entries} entries"
            )

    def declared(self, name: str, size: int | None) -> None:
        # Only an early exit for honest archives: the bytes are counted again as they flow.
        if size is not None and self.extracted + size > self._limits.max_total_bytes:
            raise ArchiveRejected(
                "TOO_LARGE",
                f"{name!r} declares {size} bytes, over the limit of "
                f"{self._limits.max_total_bytes} bytes in total",
            )
