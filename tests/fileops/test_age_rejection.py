"""The streaming age codec: rejection of bad input (wrong passphrase, tampering, truncation,
malformed headers) and of API misuse."""

from __future__ import annotations

import base64
import os
import re

import pyrage  # type: ignore[import-untyped]
import pytest

from taskdrive.fileops.age import CHUNK_SIZE, AgeError, Decryptor, Encryptor, WrongPassphrase
from tests.fileops.age_helpers import FAST, PASSPHRASE, SEALED, decrypt, encrypt, header_of


@pytest.fixture(scope="module")
def sample() -> bytes:
    return os.urandom(2 * CHUNK_SIZE + 999)


@pytest.fixture(scope="module")
def sample_ciphertext(sample: bytes) -> bytes:
    return encrypt(sample)


# --- rejection ----------------------------------------------------------------------------------


def test_wrong_passphrase(sample_ciphertext: bytes) -> None:
    with pytest.raises(WrongPassphrase) as raised:
        decrypt(sample_ciphertext, passphrase="Tr0ub4dor&3")
    assert "Tr0ub4dor" not in str(raised.value)


def test_rage_rejects_a_wrong_passphrase_on_ours() -> None:
    ciphertext = encrypt(b"secret")
    with pytest.raises(pyrage.DecryptError):
        pyrage.passphrase.decrypt(ciphertext, "nope")


@pytest.mark.parametrize("where", ["first chunk", "last chunk", "payload nonce", "tag"])
def test_tampered_payload(sample_ciphertext: bytes, where: str) -> None:
    start = len(header_of(sample_ciphertext))
    offset = {
        "payload nonce": start + 3,
        "first chunk": start + 16 + 100,
        "last chunk": len(sample_ciphertext) - 20,
        "tag": len(sample_ciphertext) - 1,
    }[where]
    tampered = bytearray(sample_ciphertext)
    tampered[offset] ^= 0x01
    with pytest.raises(AgeError) as raised:
        decrypt(bytes(tampered))
    assert not isinstance(raised.value, WrongPassphrase)


def test_tampered_header_mac(sample_ciphertext: bytes) -> None:
    mac_at = sample_ciphertext.index(b"\n--- ") + 5
    tampered = bytearray(sample_ciphertext)
    # A middle character, so the MAC stays canonical base64 and only its value is wrong.
    tampered[mac_at + 10] = ord("A") if tampered[mac_at + 10] != ord("A") else ord("B")
    with pytest.raises(AgeError, match="MAC") as raised:
        decrypt(bytes(tampered))
    assert not isinstance(raised.value, WrongPassphrase)


def test_modified_work_factor_fails_to_unwrap() -> None:
    # The work factor is an input to scrypt: a different one derives a different wrap key.
    ciphertext = encrypt(b"data")
    with pytest.raises(WrongPassphrase):
        decrypt(ciphertext.replace(b" 10\n", b" 11\n", 1))


@pytest.mark.parametrize(
    "cut",
    ["inside header", "before nonce", "inside nonce", "after nonce", "mid chunk", "last chunk"],
)
def test_truncated(sample_ciphertext: bytes, cut: str) -> None:
    start = len(header_of(sample_ciphertext))
    end = {
        "inside header": 40,
        "before nonce": start,
        "inside nonce": start + 5,
        "after nonce": start + 16,
        "mid chunk": start + 16 + 1000,
        # Drop the whole last chunk: what remains ends cleanly on a middle chunk.
        "last chunk": start + 16 + 2 * SEALED,
    }[cut]
    with pytest.raises(AgeError, match="truncated"):
        decrypt(sample_ciphertext[:end])


def test_truncated_at_each_chunk_boundary() -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    ciphertext = encrypt(data)
    payload_start = len(header_of(ciphertext)) + 16
    for chunks in (1, 2):
        with pytest.raises(AgeError, match="truncated"):
            decrypt(ciphertext[: payload_start + chunks * SEALED])


@pytest.mark.parametrize("size", [10, CHUNK_SIZE])
@pytest.mark.parametrize("garbage", [b"x", b"\x00" * 16, os.urandom(SEALED + 1)])
def test_trailing_data(size: int, garbage: bytes) -> None:
    with pytest.raises(AgeError):
        decrypt(encrypt(os.urandom(size)) + garbage)


def test_trailing_data_after_full_final_chunk_is_named() -> None:
    with pytest.raises(AgeError, match="trailing data"):
        decrypt(encrypt(os.urandom(CHUNK_SIZE)) + b"extra")


def test_empty_final_chunk_after_full_chunk() -> None:
    # Encryptor never produces this, so seal the chunks by hand with its payload stream.
    encryptor = Encryptor(PASSPHRASE, work_factor=FAST)
    header = encryptor.header()
    stream = encryptor._stream
    assert stream is not None
    data = os.urandom(CHUNK_SIZE)
    ciphertext = header + stream.seal(data, last=False) + stream.seal(b"", last=True)
    with pytest.raises(AgeError, match="empty final chunk"):
        decrypt(ciphertext)


def test_work_factor_above_maximum() -> None:
    ciphertext = encrypt(b"data", work_factor=12)
    with pytest.raises(AgeError, match="work factor 12 exceeds") as raised:
        decrypt(ciphertext, max_work_factor=11)
    assert not isinstance(raised.value, WrongPassphrase)
    assert decrypt(ciphertext, max_work_factor=12) == b"data"


def test_huge_work_factor_is_rejected_before_scrypt() -> None:
    # Were it attempted, 2**40 scrypt would need a terabyte; the check must come first.
    ciphertext = encrypt(b"data").replace(b" 10\n", b" 40\n", 1)
    with pytest.raises(AgeError, match="work factor 40 exceeds the maximum 22"):
        decrypt(ciphertext)


@pytest.mark.parametrize("spelling", [b"0", b"010", b"+10", b"-1", b"1e1", b"100"])
def test_invalid_work_factor_spelling(spelling: bytes) -> None:
    ciphertext = encrypt(b"data").replace(b" 10\n", b" " + spelling + b"\n", 1)
    with pytest.raises(AgeError, match="work factor"):
        decrypt(ciphertext, max_work_factor=63)


def _replace_salt(ciphertext: bytes, salt: bytes) -> bytes:
    return re.sub(
        rb"^-> scrypt \S+ ", b"-> scrypt " + salt + b" ", ciphertext, count=1, flags=re.MULTILINE
    )


def test_non_canonical_base64() -> None:
    ciphertext = encrypt(b"data")
    salt = re.search(rb"^-> scrypt (\S+) ", ciphertext, re.MULTILINE)
    assert salt is not None
    text = salt[1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # 16 bytes take 22 characters, the last one carrying 2 bits; setting an unused low bit
    # spells the same bytes differently.
    last = alphabet.index(text[-1:])
    variant = text[:-1] + alphabet[last | 1 : (last | 1) + 1]
    assert base64.b64decode(variant + b"==") == base64.b64decode(text + b"==")
    for bad in [variant, text + b"==", text[:-1], text.replace(text[:1], b"*", 1)]:
        with pytest.raises(AgeError, match="salt") as raised:
            decrypt(_replace_salt(ciphertext, bad))
        assert not isinstance(raised.value, WrongPassphrase)


def test_scrypt_stanza_must_be_alone() -> None:
    ciphertext = encrypt(b"data")
    extra = b"-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n" + b"A" * 43 + b"\n"
    doubled = ciphertext.replace(b"\n---", b"\n" + extra[:-1] + b"\n---", 1)
    with pytest.raises(AgeError, match="only stanza"):
        decrypt(doubled)


def test_other_recipient_types() -> None:
    ciphertext = encrypt(b"data")
    other = re.sub(
        rb"^-> scrypt \S+ 10$", b"-> X25519 abc", ciphertext, count=1, flags=re.MULTILINE
    )
    with pytest.raises(AgeError, match="not passphrase-encrypted"):
        decrypt(other)


@pytest.mark.parametrize(
    "data",
    [
        b"hello world",
        b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n",
        b"age-encryption.org/v2\n",
        b"age-encryption.org/v1\n-> scrypt\n--- x\n",
        b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n" + bytes(32),
    ],
)
def test_not_an_age_file(data: bytes) -> None:
    with pytest.raises(AgeError):
        decrypt(data)


def test_oversized_header_fails_without_buffering_everything() -> None:
    decryptor = Decryptor(PASSPHRASE)
    decryptor.update(b"age-encryption.org/v1\n-> x\n")
    with pytest.raises(AgeError, match="header longer"):
        for _ in range(100):
            decryptor.update(b"A" * 1000)
    with pytest.raises(AgeError):
        decryptor.update(b"more")  # a failed decryptor stays failed


# --- API hygiene --------------------------------------------------------------------------------


def test_passphrase_is_not_in_reprs() -> None:
    assert PASSPHRASE not in repr(Encryptor(PASSPHRASE))
    assert PASSPHRASE not in repr(Decryptor(PASSPHRASE))


def test_misuse() -> None:
    with pytest.raises(ValueError):
        Encryptor("")
    with pytest.raises(ValueError):
        Encryptor(PASSPHRASE, work_factor=0)
    with pytest.raises(ValueError):
        Decryptor(PASSPHRASE, max_work_factor=0)
    encryptor = Encryptor(PASSPHRASE, work_factor=FAST)
    with pytest.raises(RuntimeError):
        encryptor.update(b"x")
    encryptor.header()
    encryptor.finish()
    with pytest.raises(RuntimeError):
        encryptor.finish()
