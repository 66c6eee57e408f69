"""Shared helpers for the taskdrive.fileops.images tests: pictures made with Pillow."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from taskdrive.fileops.images import TARGET_FORMATS, ConversionOptions, ImageFormat, convert_image

FORMATS = TARGET_FORMATS
PIL_NAME = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}


def gradient(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A picture with some detail, so lossy encoders have something to do."""
    width, height = size
    im = Image.new("RGB", size)
    im.putdata(
        [(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)]
    )
    return im.convert(mode)


def encode(im: Image.Image, fmt: str, **params: object) -> io.BytesIO:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    buffer.seek(0)
    return buffer


def convert(
    data: io.BytesIO | bytes,
    target: ImageFormat,
    max_pixels: int = 100_000_000,
    **options: int,
) -> tuple[Image.Image, int, int]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    out, width, height = convert_image(
        source, target, ConversionOptions(**options), max_pixels=max_pixels
    )
    im = Image.open(io.BytesIO(out))
    return im, width, height


def animation(
    frames: int = 3, size: tuple[int, int] = (40, 30), fmt: str = "GIF", **params: object
) -> io.BytesIO:
    colours = ["red", "green", "blue", "yellow", "white"]
    pictures = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    return encode(
        pictures[0], fmt, save_all=True, append_images=pictures[1:], duration=70, loop=0, **params
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares the given size but carries no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
