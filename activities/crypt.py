"""Pool objects rewritten through age: what FileEncrypt, FileDecrypt and encrypted uploads share.

A rewrite streams an object through an age codec (``encrypt_stream`` or ``decrypt_stream``)
into a new object, hashing both sides on the way: the input's SHA-256 must match the record
(the bytes transformed are the bytes the catalogue vouches for), the output's becomes the new
record's. Memory stays at the codec's blocks plus the pool's write batches, whatever the size.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from activities.files import storage_key
from activities.streams import Digesting
from taskdrive.pools import Pool

AGE_SUFFIX = ".age"
AGE_CONTENT_TYPE = "application/age-encrypted"

Codec = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


class SourceMismatch(Exception):
    """The bytes read do not hash to what the record says (storage changed under the file)."""


@dataclass(frozen=True)
class Rewritten:
    hash: str
    size: int


async def rewrite(
    source: AsyncIterator[bytes], codec: Codec, pool: Pool, key: str, *, expected_hash: str
) -> Rewritten:
    """Writes ``codec(source)`` as the object ``key`` in ``pool``; returns its SHA-256 and size.

    The object exists only if the codec ran to its end: ``write_stream`` publishes nothing when
    its body raises, so a wrong password, a damaged or truncated age file (the final chunk must
    authenticate) leave no object behind. Raises SourceMismatch, the object removed, when the
    source does not hash to ``expected_hash``.
    """
    read = Digesting(source)
    written = Digesting(codec(aiter(read)))
    size = await pool.write_stream(key, aiter(written))
    if read.hexdigest() != expected_hash:
        await pool.delete(key)
        raise SourceMismatch(
            f"the stored bytes hash to {read.hexdigest()}, the record says {expected_hash}"
        )
    return Rewritten(written.hexdigest(), size)


def rewritten_key(file_id: uuid.UUID | str, task_id: str) -> str:
    """Where a task writes a file's new bytes: a key of its own, so the old object stays whole
    until the record points at the new one, and the same task repeating a file (a retry, a
    crash) writes the same key rather than a second object."""
    return f"{storage_key(file_id)}.{task_id.replace('-', '')[:16]}"


def encrypted_name(name: str) -> str:
    return name + AGE_SUFFIX


def decrypted_name(name: str) -> str:
    """``name`` without ``.age``; unchanged when that is not its suffix (or all of it)."""
    stem = name.removesuffix(AGE_SUFFIX)
    return stem if stem else name
