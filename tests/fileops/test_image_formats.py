"""Unit tests for taskdrive.fileops.images: pure Pillow, no services.

Create-time checks, output names and types, options.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskdrive.fileops.images import (
    SOURCE_FORMATS,
    ConversionOptions,
    ImageFormat,
    UnsupportedConversion,
    check_conversion,
    content_type,
    output_name,
)

# --- create-time checks ---


@pytest.mark.parametrize(
    ("name", "content", "target", "expected"),
    [
        ("photo.png", "image/png", "webp", "webp"),
        ("photo.png", "image/png", "JPG", "jpeg"),
        ("photo.png", "IMAGE/PNG; charset=binary", ".gif", "gif"),
        ("scan.TIFF", "image/tiff", "png", "png"),
        ("holiday.JPG", "application/octet-stream", "png", "png"),
        ("holiday.bmp", "", "jpeg", "jpeg"),
        ("no-extension", "image/webp", "png", "png"),
    ],
)
def test_check_conversion_accepts(name: str, content: str, target: str, expected: str) -> None:
    assert check_conversion(name, content, target) == expected


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", "text/plain"),
        ("notes.png", "text/plain"),  # a specific content type is not overruled by the name
        ("doc.pdf", "application/pdf"),
        ("vector.svg", "image/svg+xml"),
        ("mystery", "application/octet-stream"),
        ("archive.zip", ""),
        (".png", "application/octet-stream"),  # a dotfile, not an extension
    ],
)
def test_check_conversion_rejects_sources(name: str, content: str) -> None:
    with pytest.raises(UnsupportedConversion, match="not a supported image"):
        check_conversion(name, content, "png")


@pytest.mark.parametrize("target", ["tiff", "pdf", "bmp", "", "image/png"])
def test_check_conversion_rejects_targets(target: str) -> None:
    with pytest.raises(UnsupportedConversion, match="png, jpeg, webp, gif"):
        check_conversion("photo.png", "image/png", target)


def test_unsupported_conversion_is_a_value_error() -> None:
    assert issubclass(UnsupportedConversion, ValueError)


def test_source_formats_cover_types_and_extensions() -> None:
    for key in ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff"):
        assert key in SOURCE_FORMATS
    for key in (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"):
        assert key in SOURCE_FORMATS


# --- names and types ---


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        ("photo.png", "jpeg", "photo.jpg"),
        ("photo.png", "webp", "photo.webp"),
        ("photo.JPEG", "gif", "photo.gif"),
        ("photo.gif", "png", "photo.png"),
        ("photo.png", "png", "photo.png"),
        ("my.holiday.tiff", "png", "my.holiday.png"),
        ("report.v2", "png", "report.v2.png"),  # not an image extension: kept
        ("photo", "jpeg", "photo.jpg"),
        ("", "webp", "image.webp"),
        (".png", "jpeg", ".png.jpg"),  # a dotfile keeps its name
    ],
)
def test_output_name(name: str, target: ImageFormat, expected: str) -> None:
    assert output_name(name, target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"), ("gif", "image/gif")],
)
def test_content_type(target: ImageFormat, expected: str) -> None:
    assert content_type(target) == expected


# --- options ---


def test_options_accept_aliases_and_names() -> None:
    options = ConversionOptions.model_validate(
        {"width": 10, "height": 20, "thumbnail": 5, "quality": 80}
    )
    assert (options.width, options.height, options.thumbnail, options.quality) == (10, 20, 5, 80)
    assert ConversionOptions.model_validate({}).model_dump(by_alias=True) == {
        "width": None,
        "height": None,
        "thumbnail": None,
        "quality": None,
    }


@pytest.mark.parametrize(
    "payload",
    [
        {"width": 0},
        {"height": 20_001},
        {"thumbnail": 4_097},
        {"quality": 0},
        {"quality": 101},
        {"width": "wide"},
        {"width": 1.5},
        {"maxWidth": 100},  # unknown fields are refused, not ignored
        {"format": "png"},
    ],
)
def test_options_reject_bad_values(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConversionOptions.model_validate(payload)
