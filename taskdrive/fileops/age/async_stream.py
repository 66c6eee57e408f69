"""``encrypt_stream`` and ``decrypt_stream``: the codec driven over async byte iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

from taskdrive.fileops.age.header import DEFAULT_MAX_WORK_FACTOR, DEFAULT_WORK_FACTOR
from taskdrive.fileops.age.stream import BytesLike, Decryptor, Encryptor

# Worker-thread batches in the async helpers: big enough that the thread hop is noise next to the
# crypto (~15 us per 64 KiB chunk), small enough to keep memory flat and the loop responsive.
DEFAULT_BLOCK_SIZE: Final = 4 * 1024 * 1024


async def encrypt_stream(
    source: AsyncIterable[bytes],
    passphrase: str,
    *,
    work_factor: int = DEFAULT_WORK_FACTOR,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> AsyncIterator[bytes]:
    """Encrypt an async byte stream to an age file, yielded in pieces of about ``block_size``.

    scrypt and the chunk encryption run in a worker thread, ``block_size`` bytes at a time, so
    the event loop keeps running; memory stays around two blocks whatever the file size.
    """
    encryptor = Encryptor(passphrase, work_factor=work_factor)
    # This frame outlives the key derivation; keep the passphrase out of tracebacks that capture
    # local variables (error reporters do).
    del passphrase
    yield await asyncio.to_thread(encryptor.header)
    async for block in _reblock(source, block_size):
        ciphertext = await asyncio.to_thread(encryptor.update, block)
        if ciphertext:
            yield ciphertext
    # At most one chunk: cheaper inline than a thread hop.
    yield encryptor.finish()


async def decrypt_stream(
    source: AsyncIterable[bytes],
    passphrase: str,
    *,
    max_work_factor: int = DEFAULT_MAX_WORK_FACTOR,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> AsyncIterator[bytes]:
    """Decrypt an async byte stream holding an age file, yielding plaintext as it authenticates.

    Raises ``WrongPassphrase`` or ``AgeError`` from the iteration. The file is only known to be
    complete when the iteration ends without error: a consumer writing the plaintext somewhere
    must discard it if an error is raised, even after many pieces were yielded.
    """
    decryptor = Decryptor(passphrase, max_work_factor=max_work_factor)
    del passphrase  # as in encrypt_stream
    async for block in _reblock(source, block_size):
        plaintext = await asyncio.to_thread(decryptor.update, block)
        if plaintext:
            yield plaintext
    plaintext = decryptor.finish()
    if plaintext:
        yield plaintext


async def _reblock(source: AsyncIterable[bytes], size: int) -> AsyncIterator[BytesLike]:
    """Regroup arbitrary pieces into blocks of ``size`` bytes (the last may be shorter).

    Small pieces are gathered so each thread hop carries real work; large ones are sliced
    without copying so no single hop holds more than a block.
    """
    if size < 1:
        raise ValueError("block_size must be positive")
    gathered = bytearray()
    async for piece in source:
        view = memoryview(piece).cast("B")
        if gathered:
            take = min(size - len(gathered), len(view))
            gathered += view[:take]
            view = view[take:]
            if len(gathered) < size:
                continue
            yield gathered
            gathered = bytearray()  # the consumer may still hold the block it was given
        while len(view) >= size:
            yield view[:size]
            view = view[size:]
        gathered += view
    if gathered:
        yield gathered
