"""Regrouping a stream of small byte strings into pieces worth a thread hop or a write."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def regroup(parts: Iterable[bytes], min_bytes: int) -> Iterator[bytes]:
    """``parts`` joined into pieces of at least ``min_bytes`` (the last may be smaller); a
    part that is large enough on its own passes through without a copy."""
    pending: list[bytes] = []
    pending_bytes = 0
    for part in parts:
        if not part:
            continue
        pending.append(part)
        pending_bytes += len(part)
        if pending_bytes >= min_bytes:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending = []
            pending_bytes = 0
    if pending:
        yield b"".join(pending)
