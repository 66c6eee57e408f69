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
import tempfile
from typing import IO, BinaryIO, Final, cast

from PIL import Image, ImageSequence, JpegImagePlugin, UnidentifiedImageError

from taskdrive.fileops.image_formats import (
    _DECODERS,
    _MAX_SIDE,
    _PIL_FORMAT,
    SOURCE_FORMATS,
    TARGET_FORMATS,
    ConversionOptions,
    ImageFormat,
    UnsupportedConversion,
    check_conversion,
    content_type,
    output_name,
)
from taskdrive.fileops.image_render import (
    _DECODE_ERRORS,
    _REDUCING_GAP,
    _SWAPS_AXES,
    _colour_family,
    _duration,
    _encode,
    _orientation,
    _plan_size,
    _render,
    _swap,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_FRAMES",
    "SOURCE_FORMATS",
    "TARGET_FORMATS",
    "ConversionOptions",
    "ImageFormat",
    "ImageRejected",
    "UnsupportedConversion",
    "check_conversion",
    "content_type",
    "convert_image",
    "output_name",
]

DEFAULT_MAX_PIXELS: Final = 100_000_000
# Frames of an animation are also held in memory; the pixel budget bounds their area, this bounds
# the per-frame overhead of animations made of many tiny frames.
MAX_FRAMES: Final = 2_000


class ImageRejected(Exception):
    """The bytes are not a usable image: not an image at all, corrupt or truncated, or too many
    pixels (a decompression bomb, or an output larger than the pixel budget)."""


_ANIMATED_SOURCES: Final = frozenset({"GIF", "WEBP", "PNG"})
_ANIMATED_TARGETS: Final[frozenset[ImageFormat]] = frozenset({"gif", "webp"})

# Non-seekable sources are copied here first; past this size the copy goes to a temporary file.
_SPOOL_MEMORY: Final = 16 * 1024 * 1024


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
