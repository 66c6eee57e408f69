"""The age file format (age-encryption.org/v1) with a passphrase, as a streaming codec.

An age file is a text header followed by a binary payload::

    age-encryption.org/v1
    -> scrypt <salt: 16 bytes> <work factor: log2 N>
    <the 16-byte file key, sealed with ChaCha20-Poly1305 under scrypt(passphrase, salt)>
    --- <HMAC-SHA256 over the header up to and including "---">
    <payload nonce: 16 bytes><payload chunks...>

Binary header fields are canonical, unpadded, standard base64, and a stanza body is wrapped at 64
columns and always ends with a line shorter than that (possibly empty). The header MAC is keyed
from the file key, so a header can only be verified after the passphrase has unwrapped the key.

The payload is the STREAM construction: the plaintext is cut into 64 KiB chunks, each sealed with
ChaCha20-Poly1305 under HKDF-SHA256(file key, salt=payload nonce, info="payload"). A chunk's
12-byte nonce is its index as an 11-byte big-endian counter plus a flag byte that is 1 only on
the last chunk, which is how truncation is detected: a stream must end on a chunk sealed as last.
Only the whole-file-empty case has an empty last chunk; a last chunk of exactly 64 KiB is flagged
last itself, so a reader cannot tell a full chunk is the last one until the input ends.

Only the scrypt recipient is implemented; the spec requires it to be the header's only stanza.
Other recipient types, and the ASCII-armored form, are rejected as malformed input.

``Encryptor`` and ``Decryptor`` are push-style and synchronous, holding at most one chunk besides
what the caller passes in; ``encrypt_stream`` and ``decrypt_stream`` drive them over async byte
iterators, doing the CPU work in a worker thread a few MiB at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MAX_WORK_FACTOR",
    "DEFAULT_WORK_FACTOR",
    "AgeError",
    "Decryptor",
    "Encryptor",
    "WrongPassphrase",
    "decrypt_stream",
    "encrypt_stream",
    "encrypted_size",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

# log2 of scrypt's N when encrypting: the value age's reference implementation uses, ~0.5-1 s and
# 256 MiB (scrypt with r=8 needs N KiB of memory).
DEFAULT_WORK_FACTOR: Final = 18
# The highest work factor accepted when decrypting, as in the reference implementation. The work
# factor comes from the file, so without a bound a crafted header makes us burn minutes of CPU and
# gigabytes of memory before the passphrase can even be checked. 22 already needs 4 GiB.
DEFAULT_MAX_WORK_FACTOR: Final = 22
# Refuse to encrypt with more than this: 2**30 KiB = 1 TiB of scrypt memory, beyond any machine we
# run on, and no reader would accept such a file with its default limit anyway.
_MAX_ENCRYPT_WORK_FACTOR: Final = 30
# The spec bounds the work factor below 64.
_MAX_DECRYPT_WORK_FACTOR: Final = 63

CHUNK_SIZE: Final = 64 * 1024
_TAG_SIZE: Final = 16
_SEALED_CHUNK_SIZE: Final = CHUNK_SIZE + _TAG_SIZE
# The counter is 11 bytes; unreachable in practice (2**88 chunks), checked because a reused nonce
# would be catastrophic.
_MAX_CHUNKS: Final = 1 << 88

_VERSION_LINE: Final = b"age-encryption.org/v1\n"
_SCRYPT_SALT_LABEL: Final = b"age-encryption.org/v1/scrypt"
_FILE_KEY_SIZE: Final = 16
_SALT_SIZE: Final = 16
_PAYLOAD_NONCE_SIZE: Final = 16
_MAC_SIZE: Final = 32
_COLUMNS: Final = 64
# A passphrase-only header is about 150 bytes. Cap how much we buffer while looking for its end,
# so that a non-age input (or a header with thousands of other recipients) fails fast instead of
# being accumulated whole.
_MAX_HEADER_SIZE: Final = 64 * 1024
# The wrapped file key is sealed once under a single-use key, so a zero nonce is safe (per spec).
_ZERO_NONCE: Final = bytes(12)

# Worker-thread batches in the async helpers: big enough that the thread hop is noise next to the
# crypto (~15 us per 64 KiB chunk), small enough to keep memory flat and the loop responsive.
DEFAULT_BLOCK_SIZE: Final = 4 * 1024 * 1024

_ARGUMENT = re.compile(rb"[\x21-\x7e]+")
_WORK_FACTOR = re.compile(rb"[1-9][0-9]?")


class AgeError(Exception):
    """The input is not a valid passphrase-encrypted age file, or it was modified or truncated."""


class WrongPassphrase(AgeError):
    """The scrypt stanza could not be unwrapped: wrong passphrase (or a corrupted stanza)."""


def encrypted_size(plaintext_size: int, header_size: int) -> int:
    """The ciphertext size for ``plaintext_size`` bytes; ``header_size`` is ``len(header())``.

    Every chunk adds a 16-byte tag, and an empty plaintext still has one (empty) chunk.
    """
    if plaintext_size < 0 or header_size < 0:
        raise ValueError("sizes must not be negative")
    chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
    return header_size + plaintext_size + chunks * _TAG_SIZE


class Encryptor:
    """Encrypts one file: ``header()`` first, then ``update()`` per piece, then ``finish()``.

    The output of the three, concatenated in call order, is the age file.
    """

    def __init__(self, passphrase: str, *, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        _check_passphrase(passphrase)
        if not 1 <= work_factor <= _MAX_ENCRYPT_WORK_FACTOR:
            raise ValueError(f"work_factor must be between 1 and {_MAX_ENCRYPT_WORK_FACTOR}")
        self._passphrase = passphrase.encode()
        self._work_factor = work_factor
        self._header: bytes | None = None
        self._stream: _Stream | None = None
        # Plaintext held back because it may be the last chunk: 0..CHUNK_SIZE bytes.
        self._pending = bytearray()
        self._finished = False

    def __repr__(self) -> str:
        return f"<Encryptor work_factor={self._work_factor}>"

    def header(self) -> bytes:
        """The header and payload nonce; does the scrypt work. Idempotent."""
        if self._header is None:
            file_key = os.urandom(_FILE_KEY_SIZE)
            salt = os.urandom(_SALT_SIZE)
            wrapped = ChaCha20Poly1305(_scrypt(self._passphrase, salt, self._work_factor)).encrypt(
                _ZERO_NONCE, file_key, None
            )
            # Only needed for the wrap key; drop the reference rather than keep the secret around
            # for the life of the object.
            self._passphrase = b""
            stanza = b"-> scrypt %b %d\n" % (_b64encode(salt), self._work_factor)
            text = _VERSION_LINE + stanza + _wrap_body(_b64encode(wrapped)) + b"---"
            nonce = os.urandom(_PAYLOAD_NONCE_SIZE)
            self._stream = _Stream(file_key, nonce)
            mac = _b64encode(_header_mac(file_key, text))
            self._header = text + b" " + mac + b"\n" + nonce
        return self._header

    def update(self, data: BytesLike) -> bytes:
        """Ciphertext for every chunk that is complete and known not to be the last one."""
        stream = self._require_stream()
        view = memoryview(data).cast("B")
        sealed: list[bytes] = []
        pending = self._pending
        if pending:
            take = min(CHUNK_SIZE - len(pending), len(view))
            pending += view[:take]
            view = view[take:]
            if not view:
                # Full or not, the pending chunk may still be the last: keep it.
                return b""
            sealed.append(stream.seal(pending, last=False))
            pending.clear()
        # Seal whole chunks straight out of the caller's buffer, keeping back the 1..CHUNK_SIZE
        # byte tail: only finish() knows whether it is the last chunk.
        count = (len(view) - 1) // CHUNK_SIZE if view else 0
        for start in range(0, count * CHUNK_SIZE, CHUNK_SIZE):
            sealed.append(stream.seal(view[start : start + CHUNK_SIZE], last=False))
        pending += view[count * CHUNK_SIZE :]
        return b"".join(sealed)

    def finish(self) -> bytes:
        """The last chunk (empty plaintext only if the whole file is empty)."""
        stream = self._require_stream()
        self._finished = True
        last = stream.seal(self._pending, last=True)
        self._pending = bytearray()
        return last

    def _require_stream(self) -> _Stream:
        if self._finished:
            raise RuntimeError("finish() was already called")
        if self._stream is None:
            raise RuntimeError("header() must be called before update() and finish()")
        return self._stream


class Decryptor:
    """Decrypts one file fed in pieces to ``update()``, then ``finish()``.

    Plaintext is released chunk by chunk as each chunk authenticates, before the end of the file
    has been seen: only ``finish()`` proves the file was not truncated, so a caller must treat
    output as untrusted until it returns.
    """

    def __init__(self, passphrase: str, *, max_work_factor: int = DEFAULT_MAX_WORK_FACTOR) -> None:
        _check_passphrase(passphrase)
        if not 1 <= max_work_factor <= _MAX_DECRYPT_WORK_FACTOR:
            raise ValueError(f"max_work_factor must be between 1 and {_MAX_DECRYPT_WORK_FACTOR}")
        self._passphrase = passphrase.encode()
        self._max_work_factor = max_work_factor
        # Before the payload starts: the header (and nonce) being accumulated. After: ciphertext
        # not yet opened, 0.._SEALED_CHUNK_SIZE bytes, since a full chunk might be the last one.
        self._buffer = bytearray()
        self._scanned = 0  # how much of the buffer is known not to contain the end of the header
        self._file_key: bytes | None = None
        self._stream: _Stream | None = None
        self._finished = False
        self._failed = False

    def __repr__(self) -> str:
        return f"<Decryptor max_work_factor={self._max_work_factor}>"

    def update(self, data: BytesLike) -> bytes:
        """Plaintext of every chunk that is complete and authenticated (possibly none).

        Raises ``WrongPassphrase`` or ``AgeError`` once the header has arrived and is unusable,
        and ``AgeError`` for a chunk that fails authentication.
        """
        self._check_usable()
        try:
            view = memoryview(data).cast("B")
            stream = self._stream
            if stream is None:
                self._buffer += view
                stream = self._read_preamble()
                if stream is None:
                    return b""
                # Whatever followed the nonce is payload: hand it to the chunk path below, which
                # starts from an empty pending buffer.
                view = memoryview(self._buffer)
                self._buffer = bytearray()
            return self._open_chunks(stream, view)
        except AgeError:
            self._failed = True
            raise

    def finish(self) -> bytes:
        """The last chunk's plaintext; raises ``AgeError`` if the file is truncated or damaged."""
        self._check_usable()
        self._finished = True
        try:
            if self._stream is None:
                if self._file_key is None:
                    raise AgeError("truncated age file: the header is incomplete")
                raise AgeError("truncated age file: the payload nonce is missing")
            return self._open_last(self._stream, self._buffer)
        except AgeError:
            self._failed = True
            raise
        finally:
            self._buffer = bytearray()

    def _check_usable(self) -> None:
        if self._failed:
            raise AgeError("the age stream already failed")
        if self._finished:
            raise RuntimeError("finish() was already called")

    def _read_preamble(self) -> _Stream | None:
        """Consume the header and payload nonce from the buffer; None if more bytes are needed."""
        buffer = self._buffer
        if self._file_key is None:
            end = self._find_header_end()
            if end is None:
                return None
            header = bytes(buffer[:end])
            del buffer[:end]
            # Needed once, whatever the outcome; don't keep the secret in a failed decryptor.
            passphrase, self._passphrase = self._passphrase, b""
            self._file_key = _open_header(header, passphrase, self._max_work_factor)
        if len(buffer) < _PAYLOAD_NONCE_SIZE:
            return None
        nonce = bytes(buffer[:_PAYLOAD_NONCE_SIZE])
        del buffer[:_PAYLOAD_NONCE_SIZE]
        self._stream = _Stream(self._file_key, nonce)
        self._file_key = None
        return self._stream

    def _find_header_end(self) -> int | None:
        buffer = self._buffer
        # Fail on the first bytes rather than after buffering _MAX_HEADER_SIZE of something else.
        prefix = bytes(buffer[: len(_VERSION_LINE)])
        if not _VERSION_LINE.startswith(prefix):
            hint = " (ASCII-armored files are not supported)" if prefix[:5] == b"-----" else ""
            raise AgeError("not an age-encryption.org/v1 file" + hint)
        # The MAC line is the first line starting with "---": stanza lines start with "->" and
        # body lines are base64, which has no "-". Binary payload follows its newline.
        start = max(self._scanned, len(_VERSION_LINE) - 1)
        mac_line = buffer.find(b"\n---", start)
        if mac_line >= 0:
            end = buffer.find(b"\n", mac_line + 1)
            if 0 <= end < _MAX_HEADER_SIZE:
                return end + 1
        else:
            # Resume the search where it stopped, minus a possibly split "\n--".
            self._scanned = max(0, len(buffer) - 3)
        if len(buffer) >= _MAX_HEADER_SIZE:
            raise AgeError(
                f"age header longer than {_MAX_HEADER_SIZE} bytes; a passphrase-encrypted file's "
                "header is a few hundred bytes"
            )
        return None

    def _open_chunks(self, stream: _Stream, view: memoryview) -> bytes:
        opened: list[bytes] = []
        pending = self._buffer
        if pending:
            take = min(_SEALED_CHUNK_SIZE - len(pending), len(view))
            pending += view[:take]
            view = view[take:]
            if not view:
                return b""
            opened.append(_open_middle(stream, pending))
            pending.clear()
        # As in Encryptor.update: a chunk is opened as a middle chunk only once a byte after it
        # has arrived; the 1.._SEALED_CHUNK_SIZE tail waits for more input or finish().
        count = (len(view) - 1) // _SEALED_CHUNK_SIZE if view else 0
        for start in range(0, count * _SEALED_CHUNK_SIZE, _SEALED_CHUNK_SIZE):
            opened.append(_open_middle(stream, view[start : start + _SEALED_CHUNK_SIZE]))
        pending += view[count * _SEALED_CHUNK_SIZE :]
        return b"".join(opened)

    @staticmethod
    def _open_last(stream: _Stream, chunk: bytearray) -> bytes:
        if len(chunk) < _TAG_SIZE:
            raise AgeError("truncated age file: the payload ends without a final chunk")
        try:
            plaintext = stream.open(chunk, last=True)
        except InvalidTag:
            # Distinguish a clean cut at a chunk boundary from damage, for a clearer message.
            if len(chunk) == _SEALED_CHUNK_SIZE and stream.can_open(chunk, last=False):
                raise AgeError(
                    "truncated age file: the payload ends without a final chunk"
                ) from None
            # A cut inside a chunk is indistinguishable from damage to the last chunk.
            raise AgeError(
                f"age payload chunk {stream.index} failed authentication as the final chunk: the "
                "file is truncated, damaged or was modified"
            ) from None
        if not plaintext and stream.index > 1:
            # Only an empty file may end with an empty chunk; anything else is a non-canonical
            # encoding that the spec requires readers to reject.
            raise AgeError("malformed age payload: empty final chunk after a full chunk")
        return plaintext


class _Stream:
    """STREAM state of one payload: the chunk AEAD and the index of the next chunk."""

    __slots__ = ("_aead", "index")

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(
            file_key
        )
        self._aead = ChaCha20Poly1305(key)
        self.index = 0

    def _nonce(self, last: bool) -> bytes:
        if self.index >= _MAX_CHUNKS:
            raise AgeError("age payload too long: chunk counter exhausted")
        return self.index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")

    def seal(self, chunk: BytesLike, *, last: bool) -> bytes:
        sealed = self._aead.encrypt(self._nonce(last), chunk, None)
        self.index += 1
        return sealed

    def open(self, chunk: BytesLike, *, last: bool) -> bytes:
        """Raises ``InvalidTag``; the index only advances when the chunk authenticates."""
        plaintext = self._aead.decrypt(self._nonce(last), chunk, None)
        self.index += 1
        return plaintext

    def can_open(self, chunk: BytesLike, *, last: bool) -> bool:
        try:
            self._aead.decrypt(self._nonce(last), chunk, None)
        except InvalidTag:
            return False
        return True


def _open_middle(stream: _Stream, chunk: BytesLike) -> bytes:
    try:
        return stream.open(chunk, last=False)
    except InvalidTag:
        # A full chunk that authenticates as the last one, yet more bytes follow: data was
        # appended to a complete file.
        if stream.can_open(chunk, last=True):
            raise AgeError("malformed age file: trailing data after the final chunk") from None
        raise AgeError(
            f"age payload chunk {stream.index} failed authentication: the file is damaged or "
            "was modified (or has trailing data)"
        ) from None


@dataclass(frozen=True, slots=True)
class _Stanza:
    type: bytes
    arguments: list[bytes]
    body: bytes


def _open_header(header: bytes, passphrase: bytes, max_work_factor: int) -> bytes:
    """Parse and verify a complete header (through its final newline); return the file key."""
    stanzas, mac_input, mac = _parse_header(header)
    if not any(stanza.type == b"scrypt" for stanza in stanzas):
        names = ", ".join(sorted({stanza.type.decode() for stanza in stanzas}))
        raise AgeError(f"the age file is not passphrase-encrypted (recipient types: {names})")
    if len(stanzas) != 1:
        # Any other recipient could read the file, silently voiding what a passphrase promises;
        # the spec forbids the mix.
        raise AgeError("malformed age header: an scrypt stanza must be the only stanza")
    stanza = stanzas[0]
    if len(stanza.arguments) != 2:
        raise AgeError("malformed age header: the scrypt stanza needs a salt and a work factor")
    salt_text, work_factor_text = stanza.arguments
    salt = _b64decode(salt_text, "scrypt salt")
    if len(salt) != _SALT_SIZE:
        raise AgeError("malformed age header: the scrypt salt is not 16 bytes")
    if _WORK_FACTOR.fullmatch(work_factor_text) is None:
        # No sign, no leading zero, not zero: one spelling per value, and at most two digits so
        # that parsing it is trivially cheap.
        raise AgeError("malformed age header: invalid scrypt work factor")
    work_factor = int(work_factor_text)
    # Checked before any scrypt work: this is the denial-of-service guard.
    if work_factor > max_work_factor:
        raise AgeError(
            f"age scrypt work factor {work_factor} exceeds the maximum {max_work_factor}"
        )
    if len(stanza.body) != _FILE_KEY_SIZE + _TAG_SIZE:
        raise AgeError("malformed age header: the scrypt stanza body has the wrong size")
    wrap_key = _scrypt(passphrase, salt, work_factor)
    try:
        file_key = ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        raise WrongPassphrase("incorrect passphrase for this age file") from None
    verifier = hmac.HMAC(_header_mac_key(file_key), hashes.SHA256())
    verifier.update(mac_input)
    try:
        verifier.verify(mac)
    except InvalidSignature:
        raise AgeError("age header MAC mismatch: the header was modified") from None
    return file_key


def _parse_header(header: bytes) -> tuple[list[_Stanza], bytes, bytes]:
    """Split a header into its stanzas, the bytes its MAC covers, and the MAC.

    Strict on purpose: the MAC authenticates bytes, so every header must have one encoding.
    """
    lines = header[:-1].split(b"\n")  # the caller cut the header just after a newline
    if lines[0] + b"\n" != _VERSION_LINE:
        raise AgeError("not an age-encryption.org/v1 file")
    stanzas: list[_Stanza] = []
    index = 1
    while lines[index].startswith(b"-> "):
        arguments = lines[index][3:].split(b" ")
        if not all(_ARGUMENT.fullmatch(argument) for argument in arguments):
            raise AgeError("malformed age header: invalid stanza line")
        # The body is 64-column lines ending with a shorter (maybe empty) one, so that a reader
        # knows where it stops without a length field.
        body: list[bytes] = []
        while True:
            index += 1
            if index >= len(lines) - 1:  # the last line is the MAC line
                raise AgeError("malformed age header: unterminated stanza body")
            line = lines[index]
            if len(line) > _COLUMNS:
                raise AgeError("malformed age header: stanza body line longer than 64 columns")
            body.append(line)
            if len(line) < _COLUMNS:
                break
        stanzas.append(_Stanza(arguments[0], arguments[1:], _b64decode(b"".join(body), "body")))
        index += 1
    if index != len(lines) - 1 or not lines[index].startswith(b"--- "):
        raise AgeError("malformed age header: expected a stanza or the MAC line")
    if not stanzas:
        raise AgeError("malformed age header: no recipient stanzas")
    mac = _b64decode(lines[index][4:], "header MAC")
    if len(mac) != _MAC_SIZE:
        raise AgeError("malformed age header: the MAC is not 32 bytes")
    # Covered: everything up to and including "---", i.e. not the space and MAC after it.
    mac_input = header[: len(header) - 1 - len(lines[index]) + 3]
    return stanzas, mac_input, mac


def _b64encode(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def _b64decode(text: bytes, what: str) -> bytes:
    """Decode canonical unpadded standard base64, rejecting every other spelling."""
    if b"=" in text or len(text) % 4 == 1:
        raise AgeError(f"malformed age header: {what} is not unpadded base64")
    try:
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise AgeError(f"malformed age header: {what} is not valid base64") from None
    # Unused low bits of the last character must be zero, or one value has several spellings.
    if _b64encode(raw) != text:
        raise AgeError(f"malformed age header: {what} is not canonical base64")
    return raw


def _wrap_body(text: bytes) -> bytes:
    # Always end with a line shorter than 64 columns, adding an empty one if need be.
    lines = [text[start : start + _COLUMNS] for start in range(0, len(text) + 1, _COLUMNS)]
    return b"".join(line + b"\n" for line in lines)


def _scrypt(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=_SCRYPT_SALT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase)


def _header_mac_key(file_key: bytes) -> bytes:
    # An empty HKDF salt, as the spec says; equivalent to HashLen zero bytes (RFC 5869).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"header").derive(file_key)


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    signer = hmac.HMAC(_header_mac_key(file_key), hashes.SHA256())
    signer.update(mac_input)
    return signer.finalize()


def _check_passphrase(passphrase: str) -> None:
    # Never echo the value, not even its length.
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("the passphrase must be a non-empty string")


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
