"""Unit tests for taskdrive.fileops.images: pure Pillow, no services.

Images that are rejected, and source streams.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO, cast

import pytest
from PIL import Image

from taskdrive.fileops.images import ConversionOptions, ImageRejected, convert_image
from tests.fileops.image_helpers import convert, encode, gradient, png_header

# --- rejection ---


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is plainly text\n" * 10,
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        b"P6\n1 1\n255\n\x00\x00\x00",  # a real image, but PPM is not a format we decode
    ],
)
def test_not_an_image_is_rejected(data: bytes) -> None:
    with pytest.raises(ImageRejected, match="not a supported image"):
        convert(data, "png")


def test_truncated_image_is_rejected() -> None:
    data = encode(gradient((200, 200)), "PNG").getvalue()
    with pytest.raises(ImageRejected, match="corrupt"):
        convert(data[: len(data) // 2], "jpeg")


def test_header_claiming_huge_dimensions_is_rejected() -> None:
    # Beyond twice Pillow's global limit: Pillow itself refuses while opening.
    with pytest.raises(ImageRejected, match="pixels"):
        convert(png_header(100_000, 100_000), "png")


def test_header_over_our_limit_is_rejected_before_decoding() -> None:
    # Within Pillow's global limit but over ours: the message shows our check fired, before the
    # (absent) pixel data was ever looked for.
    with pytest.raises(ImageRejected, match="over the limit of 1000000"):
        convert(png_header(5_000, 5_000), "png", max_pixels=1_000_000)


def test_real_image_over_small_limit_is_rejected() -> None:
    data = encode(gradient((100, 100)), "JPEG")
    with pytest.raises(ImageRejected, match="10000 pixels"):
        convert(data, "png", max_pixels=9_999)
    convert(data.getvalue(), "png", max_pixels=10_000)


def test_upscaling_past_the_limit_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="the output"):
        convert(encode(gradient((10, 10)), "PNG"), "png", width=20_000, height=20_000)


def test_output_too_wide_for_webp_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="webp"):
        convert(encode(gradient((10, 10)), "PNG"), "webp", width=20_000, height=1)


# --- sources ---


class OneWayStream:
    """A network-like stream: reads only, no seeking."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._fail_after = fail_after

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        if self._fail_after is not None and self._data.tell() >= self._fail_after:
            raise StorageDown("connection reset")
        return self._data.read(1024 if size < 0 else min(size, 1024))


class StorageDown(OSError):
    pass


class FlakyFile(io.BytesIO):
    """Seekable, but its reads fail part way through."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 100:
            raise StorageDown("disk went away")
        return super().read(100 if size is None or size < 0 else min(size, 100))


def test_non_seekable_source() -> None:
    data = encode(gradient(), "PNG").getvalue()
    out, width, height = convert_image(
        cast(BinaryIO, OneWayStream(data)), "webp", ConversionOptions()
    )
    assert (width, height) == (64, 48)
    assert Image.open(io.BytesIO(out)).format == "WEBP"


@pytest.mark.parametrize(
    "stream",
    [
        lambda data: OneWayStream(data, fail_after=100),
        FlakyFile,
    ],
)
def test_source_read_errors_propagate_unchanged(stream: Callable[[bytes], object]) -> None:
    data = encode(gradient((200, 200)), "PNG").getvalue()
    source = cast(BinaryIO, stream(data))
    with pytest.raises(StorageDown):
        convert_image(source, "png", ConversionOptions())


def test_source_is_left_open() -> None:
    source = encode(gradient(), "PNG")
    convert_image(source, "gif", ConversionOptions())
    assert not source.closed
