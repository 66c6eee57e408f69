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

from taskdrive.fileops.age.async_stream import DEFAULT_BLOCK_SIZE, decrypt_stream, encrypt_stream
from taskdrive.fileops.age.errors import AgeError, WrongPassphrase
from taskdrive.fileops.age.header import DEFAULT_MAX_WORK_FACTOR, DEFAULT_WORK_FACTOR
from taskdrive.fileops.age.stream import CHUNK_SIZE, Decryptor, Encryptor, encrypted_size

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
