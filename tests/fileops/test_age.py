"""The streaming age codec: round trips, interop with rage (pyrage), and rejection of bad input."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator, Iterable, Iterator

import pyrage  # type: ignore[import-untyped]
import pytest

from taskdrive.fileops.age import (
    CHUNK_SIZE,
    DEFAULT_MAX_WORK_FACTOR,
    AgeError,
    Decryptor,
    Encryptor,
    WrongPassphrase,
    decrypt_stream,
    encrypt_stream,
    encrypted_size,
)

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


@pytest.fixture(scope="module")
def sample() -> bytes:
    return os.urandom(2 * CHUNK_SIZE + 999)


@pytest.fixture(scope="module")
def sample_ciphertext(sample: bytes) -> bytes:
    return encrypt(sample)


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int, piece: int) -> None:
    data = os.urandom(size)
    ciphertext = encrypt(data, piece)
    assert len(ciphertext) == encrypted_size(size, len(header_of(ciphertext)) + 16)
    assert decrypt(ciphertext, piece) == data


def test_round_trip_with_mixed_piece_sizes() -> None:
    data = os.urandom(5 * CHUNK_SIZE + 3)
    mixed = [1, 7, CHUNK_SIZE - 1, 4096, CHUNK_SIZE + 1, 100_000, 2]
    assert decrypt(encrypt(data, mixed), mixed[::-1]) == data


def test_chunk_layout() -> None:
    # A full last chunk is sealed as the last one, with no empty chunk after it; an empty file
    # is one empty chunk.
    for size, chunks in [(0, 1), (CHUNK_SIZE, 1), (CHUNK_SIZE + 1, 2), (3 * CHUNK_SIZE, 3)]:
        ciphertext = encrypt(os.urandom(size))
        payload = len(ciphertext) - len(header_of(ciphertext)) - 16
        assert payload == size + 16 * chunks


def test_encryptor_emits_nothing_it_may_have_to_seal_as_last() -> None:
    encryptor = Encryptor(PASSPHRASE, work_factor=FAST)
    encryptor.header()
    assert encryptor.update(b"x" * CHUNK_SIZE) == b""
    assert len(encryptor.update(b"x")) == SEALED
    assert len(encryptor.finish()) == 1 + 16


def test_header_format() -> None:
    encryptor = Encryptor(PASSPHRASE, work_factor=FAST)
    header = encryptor.header()
    assert encryptor.header() == header  # idempotent: scrypt runs once
    text = header[:-16].decode("ascii")
    assert re.fullmatch(
        r"age-encryption\.org/v1\n"
        r"-> scrypt [A-Za-z0-9+/]{22} 10\n"
        r"[A-Za-z0-9+/]{43}\n"
        r"--- [A-Za-z0-9+/]{43}\n",
        text,
    )


def test_encrypted_size() -> None:
    assert encrypted_size(0, 100) == 116
    assert encrypted_size(CHUNK_SIZE, 100) == 100 + CHUNK_SIZE + 16
    assert encrypted_size(CHUNK_SIZE + 1, 100) == 100 + CHUNK_SIZE + 1 + 32
    with pytest.raises(ValueError):
        encrypted_size(-1, 100)


# --- interop with rage --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 5])
def test_rage_decrypts_ours(size: int) -> None:
    data = os.urandom(size)
    assert pyrage.passphrase.decrypt(encrypt(data, 4096), PASSPHRASE) == data


@pytest.mark.parametrize("size", [0, 3 * CHUNK_SIZE + 5])
def test_we_decrypt_rage(size: int) -> None:
    data = os.urandom(size)
    ciphertext = pyrage.passphrase.encrypt(data, PASSPHRASE)
    # rage calibrates its work factor to about a second of scrypt on this machine (19-20 on the
    # development box); a fast machine may go past our default limit, which is a policy choice
    # rather than a format question.
    work_factor = work_factor_of(ciphertext)
    assert 10 <= work_factor <= 30
    max_work_factor = max(DEFAULT_MAX_WORK_FACTOR, work_factor)
    assert decrypt(ciphertext, [7, 4096, 1], max_work_factor=max_work_factor) == data


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


# --- async helpers ------------------------------------------------------------------------------


async def agen(data: bytes, piece: int | Iterable[int]) -> AsyncIterator[bytes]:
    for p in pieces(data, piece):
        yield p


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 3 * 1024 * 1024 + 17])
async def test_async_round_trip(size: int) -> None:
    data = os.urandom(size)
    block_size = 1024 * 1024
    ciphertext = b""
    async for piece in encrypt_stream(
        agen(data, [1, 7, 300_000]), PASSPHRASE, work_factor=FAST, block_size=block_size
    ):
        # Output comes in bounded pieces, whatever the input size.
        assert len(piece) <= block_size + block_size // CHUNK_SIZE * 16 + SEALED
        ciphertext += piece
    assert pyrage.passphrase.decrypt(ciphertext, PASSPHRASE) == data
    plaintext = b""
    async for piece in decrypt_stream(
        agen(ciphertext, 2_500_000), PASSPHRASE, block_size=block_size
    ):
        assert len(piece) <= block_size + CHUNK_SIZE
        plaintext += piece
    assert plaintext == data


async def test_async_decrypt_errors() -> None:
    ciphertext = encrypt(os.urandom(100))
    with pytest.raises(WrongPassphrase):
        async for _ in decrypt_stream(agen(ciphertext, 10), "wrong"):
            pass
    with pytest.raises(AgeError, match="truncated"):
        async for _ in decrypt_stream(agen(ciphertext[:-1], 10), PASSPHRASE):
            pass
