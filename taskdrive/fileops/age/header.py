"""The age header: its stanzas, the scrypt recipient that wraps the file key, and the header MAC.

See the package docstring for the format.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from taskdrive.fileops.age.errors import AgeError, WrongPassphrase

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

# The ChaCha20-Poly1305 tag, on the wrapped file key as on every payload chunk.
_TAG_SIZE: Final = 16

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

_ARGUMENT = re.compile(rb"[\x21-\x7e]+")
_WORK_FACTOR = re.compile(rb"[1-9][0-9]?")


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
