"""What an image conversion may be asked for: the formats, the options, and the create-time
checks of a request (``check_conversion``), with the output's name and media type."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ImageFormat = Literal["png", "jpeg", "webp", "gif"]
TARGET_FORMATS: Final[tuple[ImageFormat, ...]] = get_args(ImageFormat)


class ConversionOptions(BaseModel):
    """What to do to the image besides changing its format. All optional."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    width: int | None = Field(
        default=None,
        ge=1,
        le=20_000,
        description="Output width; with height, resize to exactly that, alone keep the aspect.",
    )
    height: int | None = Field(
        default=None,
        ge=1,
        le=20_000,
        description="Output height; with width, resize to exactly that, alone keep the aspect.",
    )
    thumbnail: int | None = Field(
        default=None,
        ge=1,
        le=4_096,
        description="Fit within N x N keeping the aspect (after any resize); never enlarges.",
    )
    quality: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Encoder quality for jpeg and webp; ignored for png and gif.",
    )


class UnsupportedConversion(ValueError):
    """The request cannot be served: the source is not an accepted image type, or the target
    is not an output format. Raised before any work, so the API can answer 400."""


# Input types accepted, keyed by content type and by extension, valued by Pillow format name.
SOURCE_FORMATS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "image/png": "PNG",
        "image/x-png": "PNG",
        "image/apng": "PNG",
        ".png": "PNG",
        ".apng": "PNG",
        "image/jpeg": "JPEG",
        "image/jpg": "JPEG",
        "image/pjpeg": "JPEG",
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".jpe": "JPEG",
        ".jfif": "JPEG",
        "image/webp": "WEBP",
        ".webp": "WEBP",
        "image/gif": "GIF",
        ".gif": "GIF",
        "image/bmp": "BMP",
        "image/x-bmp": "BMP",
        "image/x-ms-bmp": "BMP",
        ".bmp": "BMP",
        "image/tiff": "TIFF",
        "image/tiff-fx": "TIFF",
        ".tif": "TIFF",
        ".tiff": "TIFF",
    }
)
_DECODERS: Final = tuple(sorted(set(SOURCE_FORMATS.values())))

# Content types that say nothing about the bytes; only then does the extension decide.
_GENERIC_CONTENT_TYPES: Final = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/binary"}
)
_TARGET_ALIASES: Final[Mapping[str, ImageFormat]] = MappingProxyType(
    {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp", "gif": "gif"}
)
_PIL_FORMAT: Final[Mapping[ImageFormat, str]] = MappingProxyType(
    {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
)
_EXTENSION: Final[Mapping[ImageFormat, str]] = MappingProxyType(
    {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "gif": ".gif"}
)
_CONTENT_TYPE: Final[Mapping[ImageFormat, str]] = MappingProxyType(
    {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
)
# Largest side each encoder can write; checking first gives a clear error instead of an encoder's.
_MAX_SIDE: Final[Mapping[ImageFormat, int]] = MappingProxyType(
    {"png": 2**31 - 1, "jpeg": 65_500, "webp": 16_383, "gif": 65_535}
)


def check_conversion(source_name: str, source_content_type: str, target_format: str) -> ImageFormat:
    """Validate a conversion request up front and return the canonical target format.

    A specific content type decides on its own (``text/plain`` is refused even for ``x.png``);
    the extension decides only when the content type is missing or generic
    (``application/octet-stream``), as from clients that do not sniff.
    """
    target = _TARGET_ALIASES.get(target_format.strip().lower().lstrip("."))
    if target is None:
        raise UnsupportedConversion(
            f"cannot convert to {target_format!r}: the target format must be one of "
            + ", ".join(TARGET_FORMATS)
        )
    media_type = source_content_type.partition(";")[0].strip().lower()
    if media_type in _GENERIC_CONTENT_TYPES:
        accepted = _extension(source_name) in SOURCE_FORMATS
        described = f"{source_name!r} (no specific content type)"
    else:
        accepted = "/" in media_type and media_type in SOURCE_FORMATS
        described = f"{source_name!r} ({media_type})"
    if not accepted:
        raise UnsupportedConversion(
            f"cannot convert {described}: not a supported image; "
            "the source must be PNG, JPEG, WebP, GIF, BMP or TIFF"
        )
    return target


def output_name(source_name: str, target_format: ImageFormat) -> str:
    """The converted file's name: an image extension is replaced, anything else is kept."""
    name = source_name.strip() or "image"
    if _extension(name) in SOURCE_FORMATS:
        name = name.rpartition(".")[0]
    return name + _EXTENSION[target_format]


def content_type(target_format: ImageFormat) -> str:
    """The media type of the converted file."""
    return _CONTENT_TYPE[target_format]


def _extension(name: str) -> str:
    """The lower-cased extension with its dot; none for a dotfile such as ``.png``."""
    stem, dot, suffix = name.rpartition("/")[2].rpartition(".")
    return f".{suffix.lower()}" if dot and stem else ""
