"""Image conversion: decode, orient, resize and re-encode one image with Pillow.

Unlike the other file operations this one is not streaming: Pillow decodes a whole image (or
animation frame) into memory. That is acceptable because the pixel count is bounded: the declared
dimensions are checked against ``max_pixels`` before any pixel data is decoded, the planned output
is checked before it is allocated, and an animation's frames share one budget. Peak memory is a
small multiple of ``max_pixels * 4`` bytes (source frame, resized copy, encoded output).

:func:`check_conversion` is the cheap create-time check (a 400 for the API); :func:`convert_image`
does the work and is synchronous and CPU-bound, so activities run it in a thread.

Behaviour worth knowing:

- Only PNG, JPEG, WebP, GIF, BMP and TIFF are decoded, whatever the file claims to be: Pillow's
  other plugins (EPS hands data to Ghostscript, for one) are never offered untrusted bytes.
- The EXIF orientation is applied, so ``width``/``height`` refer to the image as displayed.
- Metadata is not copied (EXIF can carry GPS positions), except the ICC colour profile when the
  output keeps the source's colour family, so colours still render as intended.
- Animated GIF, WebP and APNG sources stay animated when the target is ``gif`` or ``webp`` (every
  frame resized alike, durations and loop count kept); ``png`` and ``jpeg`` get the first frame.
  Multi-page TIFF and multi-picture JPEG (MPO) are not animations: the first image is used.
- Transparency is flattened onto white for JPEG; GIF gets Pillow's adaptive palette.
- High bit-depth greyscale (16-bit PNG/TIFF) is scaled down to 8 bits.
- ``quality`` applies to JPEG and WebP only; PNG and GIF are lossless at the chosen palette.
"""

from __future__ import annotations

import io
import shutil
import struct
import tempfile
from collections.abc import Mapping
from types import MappingProxyType
from typing import IO, Any, BinaryIO, Final, Literal, cast, get_args

from PIL import ExifTags, Image, ImageSequence, JpegImagePlugin, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ImageFormat = Literal["png", "jpeg", "webp", "gif"]
TARGET_FORMATS: Final[tuple[ImageFormat, ...]] = get_args(ImageFormat)

DEFAULT_MAX_PIXELS: Final = 100_000_000
# Frames of an animation are also held in memory; the pixel budget bounds their area, this bounds
# the per-frame overhead of animations made of many tiny frames.
MAX_FRAMES: Final = 2_000


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


class ImageRejected(Exception):
    """The bytes are not a usable image: not an image at all, corrupt or truncated, or too many
    pixels (a decompression bomb, or an output larger than the pixel budget)."""


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
_ANIMATED_SOURCES: Final = frozenset({"GIF", "WEBP", "PNG"})
_ANIMATED_TARGETS: Final[frozenset[ImageFormat]] = frozenset({"gif", "webp"})

_ORIENTATION: Final[Mapping[int, Image.Transpose]] = MappingProxyType(
    {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
)
_SWAPS_AXES: Final = frozenset(
    {
        Image.Transpose.TRANSPOSE,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
    }
)

# What Pillow raises for bytes it cannot decode. Listed rather than ``Exception`` so that our own
# bugs are not reported to the user as a bad image.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

# Non-seekable sources are copied here first; past this size the copy goes to a temporary file.
_SPOOL_MEMORY: Final = 16 * 1024 * 1024
_RESAMPLE: Final = Image.Resampling.LANCZOS
# Shrink by whole factors first, then resample: much faster for big reductions and, at 3.0,
# indistinguishable from a single pass (Pillow's documentation).
_REDUCING_GAP: Final = 3.0


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


def convert_image(
    source: BinaryIO,
    target_format: ImageFormat,
    options: ConversionOptions,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[bytes, int, int]:
    """Convert one image; return the encoded bytes and the output's width and height.

    Raises :class:`ImageRejected` for anything wrong with the image itself. Errors reading
    ``source`` propagate unchanged, so that the caller can tell a storage failure (worth a retry)
    from a bad image (not). ``source`` is not closed. A seekable source is read only as far as
    needed; a non-seekable one is copied to a spooled temporary file first.

    ``max_pixels`` is this call's limit: checked against the declared dimensions before decoding,
    against the planned output, and against the sum over an animation's frames. Pillow's global
    ``Image.MAX_IMAGE_PIXELS`` is left alone (other threads may be converting); it still applies
    on top, so limits above twice its value (about 179 million) cannot be reached, and images
    between it and ``max_pixels`` make Pillow emit a ``DecompressionBombWarning``.
    """
    if target_format not in _PIL_FORMAT:
        raise ValueError(f"unknown target format {target_format!r}")
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    if not source.seekable():
        # Pillow would read it all into memory itself; spooling bounds that.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY) as spool:
            shutil.copyfileobj(source, spool)
            spool.seek(0)
            return _convert_guarded(cast(BinaryIO, spool), target_format, options, max_pixels)
    return _convert_guarded(source, target_format, options, max_pixels)


class _SourceReadError(Exception):
    """Carries an error from the caller's stream through Pillow, which would otherwise turn some
    of them into "image file is truncated"."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _GuardedReader:
    """The minimal file interface Pillow uses, tagging the underlying stream's errors."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._raw.read(-1 if size is None else size)
        except Exception as exc:
            raise _SourceReadError(exc) from exc

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return self._raw.seek(offset, whence)
        except Exception as exc:
            raise _SourceReadError(exc) from exc

    def tell(self) -> int:
        try:
            return self._raw.tell()
        except Exception as exc:
            raise _SourceReadError(exc) from exc


def _convert_guarded(
    source: BinaryIO, target: ImageFormat, options: ConversionOptions, max_pixels: int
) -> tuple[bytes, int, int]:
    reader = cast(IO[bytes], _GuardedReader(source))
    try:
        with Image.open(reader, formats=_DECODERS) as img:
            return _convert(img, target, options, max_pixels)
    except _SourceReadError as exc:
        raise exc.original from None
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            "not a supported image: the data is not PNG, JPEG, WebP, GIF, BMP or TIFF"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"corrupt or unreadable image: {exc}") from exc


def _convert(
    img: Image.Image, target: ImageFormat, options: ConversionOptions, max_pixels: int
) -> tuple[bytes, int, int]:
    _check_budget("the image", img.size, max_pixels)
    animated = (
        target in _ANIMATED_TARGETS
        and img.format in _ANIMATED_SOURCES
        and bool(getattr(img, "is_animated", False))
    )
    frame_count = int(getattr(img, "n_frames", 1)) if animated else 1
    if frame_count > MAX_FRAMES:
        raise ImageRejected(f"too many frames: {frame_count} (at most {MAX_FRAMES})")
    if frame_count > 1:
        _check_budget(f"{frame_count} frames", img.size, max_pixels, frames=frame_count)

    if (
        isinstance(img, JpegImagePlugin.JpegImageFile)
        and options.thumbnail is not None
        and options.width is None
        and options.height is None
    ):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a thumbnail of a camera photo then never
        # materialises the full-size bitmap. The box is square, so the orientation is irrelevant;
        # decoding at no less than three times the thumbnail leaves a proper resample to finish.
        side = int(options.thumbnail * _REDUCING_GAP)
        img.draft(None, (side, side))
    img.load()  # decode errors surface here, not inside the metadata lookups below

    transpose = _orientation(img)
    upright = _swap(img.size) if transpose in _SWAPS_AXES else img.size
    final = _plan_size(upright, options)
    if max(final) > _MAX_SIDE[target]:
        raise ImageRejected(
            f"{final[0]}x{final[1]} is too large for {target}: "
            f"at most {_MAX_SIDE[target]} pixels a side"
        )
    _check_budget("the output", final, max_pixels, frames=frame_count)
    # Resize before transposing: the same result, but the transposition copies the small image.
    pre_transpose = _swap(final) if transpose in _SWAPS_AXES else final

    # Taken now: the output frames are stripped of the source's metadata below.
    icc = img.info.get("icc_profile")
    family = _colour_family(img.mode)
    loop = img.info.get("loop")

    frames: list[Image.Image] = []
    durations: list[int] = []
    source_frames = ImageSequence.Iterator(img) if animated else iter([img])
    for frame in source_frames:
        # A GIF's canvas can grow with later frames, so check each one as it is reached.
        # A grown canvas is then scaled to the planned size like any other frame.
        _check_budget("an animation frame", frame.size, max_pixels)
        out = _render(frame, pre_transpose, transpose, target)
        # Read after rendering: WebP sets a frame's duration only once the frame is loaded.
        durations.append(_duration(frame.info.get("duration")))
        if animated and out is frame:
            out = out.copy()  # ImageSequence reuses one object for every frame
        # Pillow's encoders fall back on ``info`` for what they are not told: EXIF comments,
        # ICC profiles, GIF palettes and background indexes would leak through or, worse, be
        # misread (a GIF background index taken as a WebP colour). Only what _encode passes goes.
        out.info = {}
        frames.append(out)

    if not (icc and target != "gif" and family is not None):
        icc = None
    elif family != _colour_family(frames[0].mode):
        icc = None  # the pixels changed colour family; the profile no longer describes them
    data = _encode(frames, durations, target, options, icc_profile=icc, loop=loop)
    return data, frames[0].width, frames[0].height


def _check_budget(what: str, size: tuple[int, int], max_pixels: int, *, frames: int = 1) -> None:
    pixels = size[0] * size[1] * frames
    if pixels > max_pixels:
        shape = f"{size[0]}x{size[1]}" + (f" x {frames} frames" if frames > 1 else "")
        raise ImageRejected(
            f"too many pixels: {what} is {shape} = {pixels} pixels, over the limit of {max_pixels}"
        )


def _plan_size(size: tuple[int, int], options: ConversionOptions) -> tuple[int, int]:
    """Apply resize then thumbnail arithmetically, so the bitmap is resampled once."""
    width, height = size
    if options.width is not None and options.height is not None:
        width, height = options.width, options.height
    elif options.width is not None:
        width, height = options.width, max(1, round(height * options.width / width))
    elif options.height is not None:
        width, height = max(1, round(width * options.height / height)), options.height
    box = options.thumbnail
    if box is not None and (width > box or height > box):
        scale = min(box / width, box / height)
        width = min(box, max(1, round(width * scale)))
        height = min(box, max(1, round(height * scale)))
    return width, height


def _swap(size: tuple[int, int]) -> tuple[int, int]:
    return size[1], size[0]


def _orientation(img: Image.Image) -> Image.Transpose | None:
    try:
        value = img.getexif().get(ExifTags.Base.Orientation)
    except _DECODE_ERRORS:
        # A mangled EXIF block should not cost the user the image; it only loses the rotation.
        return None
    return _ORIENTATION.get(value) if isinstance(value, int) else None


def _render(
    frame: Image.Image,
    size: tuple[int, int],
    transpose: Image.Transpose | None,
    target: ImageFormat,
) -> Image.Image:
    im = _working_mode(frame)
    if im.size != size:
        im = im.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)
    if transpose is not None:
        im = im.transpose(transpose)
    if target == "jpeg" and im.mode in ("RGBA", "LA"):
        # JPEG has no alpha; white is what a transparent area usually looks like on a page.
        flat = Image.new("RGB", im.size, "white")
        flat.paste(im.convert("RGB"), mask=im.getchannel("A"))
        im = flat
    return im


def _working_mode(im: Image.Image) -> Image.Image:
    """One of L, LA, RGB, RGBA: what every encoder takes and what resamples properly (Pillow
    resizes palette and bilevel images with nearest-neighbour, which looks ragged)."""
    mode = im.mode
    if mode in ("RGBA", "LA"):
        return im
    if im.has_transparency_data:
        # Palette or colour-key transparency: make it an alpha channel so it survives resizing.
        return im.convert("RGBA")
    if mode in ("RGB", "L"):
        return im
    if mode.startswith("I;16"):
        # convert("L") would clip everything above 255 to white; scale the 16-bit range instead.
        return im.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if mode in ("1", "I", "F"):
        return im.convert("L")
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def _colour_family(mode: str) -> str | None:
    if mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16"):
        return "grey"
    if mode in ("RGB", "RGBA", "P", "PA", "RGBX", "RGBa"):
        return "rgb"
    return None  # CMYK, LAB...: the profile no longer describes converted pixels


def _duration(value: object) -> int:
    # Frame durations in milliseconds; APNG gives floats, a missing one means "as fast as allowed",
    # which browsers show at 100 ms anyway.
    return round(value) if isinstance(value, int | float) and value >= 0 else 100


def _encode(
    frames: list[Image.Image],
    durations: list[int],
    target: ImageFormat,
    options: ConversionOptions,
    *,
    icc_profile: bytes | None,
    loop: object,
) -> bytes:
    params: dict[str, Any] = {}
    if target in ("jpeg", "webp") and options.quality is not None:
        params["quality"] = options.quality
    if target == "jpeg":
        params["optimize"] = True  # Huffman tables fitted to the image: smaller, nearly free
    if icc_profile:
        params["icc_profile"] = icc_profile
    if len(frames) > 1:
        params["save_all"] = True
        params["append_images"] = frames[1:]
        params["duration"] = durations
        if isinstance(loop, int):
            params["loop"] = loop
        elif target == "webp":
            params["loop"] = 1  # a GIF without a loop count plays once; WebP defaults to forever
        if target == "gif" and any(_has_transparent_pixels(frame) for frame in frames):
            # Our frames are whole pictures, not deltas. Where one is transparent the previous
            # frame must not show through, so each is drawn on a cleared canvas ("restore to
            # background"); Pillow's default would leave the previous frame in place.
            params["disposal"] = 2
    buffer = io.BytesIO()
    frames[0].save(buffer, format=_PIL_FORMAT[target], **params)
    return buffer.getvalue()


def _has_transparent_pixels(im: Image.Image) -> bool:
    if im.mode not in ("RGBA", "LA"):
        return False
    lowest, _ = cast(tuple[int, int], im.getchannel("A").getextrema())
    return lowest < 255


def _extension(name: str) -> str:
    """The lower-cased extension with its dot; none for a dotfile such as ``.png``."""
    stem, dot, suffix = name.rpartition("/")[2].rpartition(".")
    return f".{suffix.lower()}" if dot and stem else ""
