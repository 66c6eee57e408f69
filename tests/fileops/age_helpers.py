"""Helpers of the age codec tests: files encrypted and decrypted in pieces, and header fields."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from taskdrive.fileops.age import CHUNK_SIZE, DEFAULT_MAX_WORK_FACTOR, Decryptor, Encryptor

PASSPHRASE = "correct horse battery staple"
# scrypt at log2 N = 10 takes about a millisecond; the default (18) would dominate the suite.
FAST = 10
SEALED = CHUNK_SIZE + 16
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 1024 * 1024 + 12345]
PIECES = [1, 7, 4096, 100_000]


def pieces(data: bytes, size: int | Iterable[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of ``size`` bytes, or of sizes cycling through ``size``."""
    sizes = [size] if isinstance(size, int) else list(size)
    offset = 0
    turn = 0
    while offset < len(data):
        step = sizes[turn % len(sizes)]
        yield data[offset : offset + step]
        offset += step
        turn += 1


def encrypt(data: bytes, piece: int | Iterable[int] = 100_000, work_factor: int = FAST) -> bytes:
    encryptor = Encryptor(PASSPHRASE, work_factor=work_factor)
    out = [encryptor.header()]
    out += [encryptor.update(p) for p in pieces(data, piece)]
    out.append(encryptor.finish())
    return b"".join(out)


def decrypt(
    ciphertext: bytes,
    piece: int | Iterable[int] = 100_000,
    passphrase: str = PASSPHRASE,
    max_work_factor: int = DEFAULT_MAX_WORK_FACTOR,
) -> bytes:
    decryptor = Decryptor(passphrase, max_work_factor=max_work_factor)
    out = [decryptor.update(p) for p in pieces(ciphertext, piece)]
    out.append(decryptor.finish())
    return b"".join(out)


def header_of(ciphertext: bytes) -> bytes:
    """The text header, through the MAC line's newline (without the payload nonce)."""
    return ciphertext[: ciphertext.index(b"\n---") + 1 + 47 + 1]


def work_factor_of(ciphertext: bytes) -> int:
    match = re.search(rb"^-> scrypt \S+ (\d+)$", ciphertext, re.MULTILINE)
    assert match is not None
    return int(match[1])
