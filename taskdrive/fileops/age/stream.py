"""The age payload: the STREAM construction, as the push-style ``Encryptor`` and ``Decryptor``.

See the package docstring for the format.
"""

from __future__ import annotations

import os
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from taskdrive.fileops.age.errors import AgeError
from taskdrive.fileops.age.header import (
    _FILE_KEY_SIZE,
    _MAX_DECRYPT_WORK_FACTOR,
    _MAX_ENCRYPT_WORK_FACTOR,
    _MAX_HEADER_SIZE,
    _PAYLOAD_NONCE_SIZE,
    _SALT_SIZE,
    _TAG_SIZE,
    _VERSION_LINE,
    _ZERO_NONCE,
    DEFAULT_MAX_WORK_FACTOR,
    DEFAULT_WORK_FACTOR,
    _b64encode,
    _check_passphrase,
    _header_mac,
    _open_header,
    _scrypt,
    _wrap_body,
)

BytesLike: TypeAlias = bytes | bytearray | memoryview

CHUNK_SIZE: Final = 64 * 1024
_SEALED_CHUNK_SIZE: Final = CHUNK_SIZE + _TAG_SIZE
# The counter is 11 bytes; unreachable in practice (2**88 chunks), checked because a reused nonce
# would be catastrophic.
_MAX_CHUNKS: Final = 1 << 88


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
