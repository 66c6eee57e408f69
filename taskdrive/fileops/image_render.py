"""The steps of converting one frame: planning the output size, orienting, resizing, normalising
the colour mode, and encoding the frames."""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, cast

from PIL import ExifTags, Image

from taskdrive.fileops.image_formats import _PIL_FORMAT, ConversionOptions, ImageFormat

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

_RESAMPLE: Final = Image.Resampling.LANCZOS
# Shrink by whole factors first, then resample: much faster for big reductions and, at 3.0,
# indistinguishable from a single pass (Pillow's documentation).
_REDUCING_GAP: Final = 3.0


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
