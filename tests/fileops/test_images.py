"""Unit tests for taskdrive.fileops.images: pure Pillow, no services."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO, cast

import pytest
from PIL import ExifTags, Image
from pydantic import ValidationError

from taskdrive.fileops import images
from taskdrive.fileops.images import (
    SOURCE_FORMATS,
    TARGET_FORMATS,
    ConversionOptions,
    ImageFormat,
    ImageRejected,
    UnsupportedConversion,
    check_conversion,
    content_type,
    convert_image,
    output_name,
)

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


# --- format pairs ---


@pytest.mark.parametrize(("source", "target"), list(itertools.product(FORMATS, FORMATS)))
def test_every_pair_converts(source: ImageFormat, target: ImageFormat) -> None:
    im, width, height = convert(encode(gradient((64, 48)), PIL_NAME[source]), target)
    assert im.format == PIL_NAME[target]
    assert im.size == (width, height) == (64, 48)
    im.load()  # the output decodes, not just its header


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_bmp_and_tiff_sources(fmt: str) -> None:
    im, width, height = convert(encode(gradient(), fmt), "png")
    assert (im.format, width, height) == ("PNG", 64, 48)


# --- geometry ---


def test_resize_to_both_dimensions_ignores_aspect() -> None:
    im, width, height = convert(encode(gradient((64, 48)), "PNG"), "png", width=30, height=50)
    assert im.size == (width, height) == (30, 50)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"width": 32}, (32, 24)), ({"height": 12}, (16, 12)), ({"width": 640}, (640, 480))],
)
def test_resize_one_dimension_keeps_aspect(
    options: dict[str, int], expected: tuple[int, int]
) -> None:
    im, width, height = convert(encode(gradient((64, 48)), "PNG"), "webp", **options)
    assert im.size == (width, height) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"thumbnail": 16}, (16, 12)),
        ({"thumbnail": 500}, (64, 48)),  # never enlarges
        ({"width": 200, "thumbnail": 100}, (100, 75)),  # resize first, then fit
        ({"width": 10, "height": 100, "thumbnail": 20}, (2, 20)),
    ],
)
def test_thumbnail_fits_within_box(options: dict[str, int], expected: tuple[int, int]) -> None:
    im, width, height = convert(encode(gradient((64, 48)), "JPEG"), "jpeg", **options)
    assert im.size == (width, height) == expected


def test_large_jpeg_thumbnail_uses_reduced_decoding_and_is_exact() -> None:
    im, width, height = convert(encode(gradient((1600, 1200)), "JPEG"), "jpeg", thumbnail=100)
    assert im.size == (width, height) == (100, 75)


def exif_oriented_jpeg(orientation: int, size: tuple[int, int] = (40, 20)) -> io.BytesIO:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encode(gradient(size), "JPEG", exif=exif.tobytes())


def test_exif_orientation_is_applied_before_resizing() -> None:
    im, width, height = convert(exif_oriented_jpeg(6), "png")
    assert im.size == (width, height) == (20, 40)  # rotated to how it is displayed
    assert "exif" not in im.info  # metadata is not carried over

    im, width, height = convert(exif_oriented_jpeg(6), "png", width=10)
    assert (width, height) == (10, 20)

    im, width, height = convert(exif_oriented_jpeg(3), "png", height=10)
    assert (width, height) == (20, 10)


def test_rotation_puts_pixels_in_the_right_place() -> None:
    source = Image.new("RGB", (40, 20), "white")
    source.paste((255, 0, 0), (0, 0, 10, 10))  # red square top-left as stored
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored rotated 90° anticlockwise; display turns it back
    im, _, _ = convert(encode(source, "PNG", exif=exif.tobytes()), "png")
    red = cast(tuple[int, int, int], im.convert("RGB").getpixel((15, 5)))
    assert red[0] > 200 and red[1] < 50  # now top-right


# --- modes ---


def test_rgba_png_to_jpeg_flattens_onto_white() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 10, 20))  # left half fully transparent
    im, _, _ = convert(encode(rgba, "PNG"), "jpeg")
    assert im.format == "JPEG" and im.mode == "RGB"
    left = cast(tuple[int, int, int], im.getpixel((2, 10)))
    right = cast(tuple[int, int, int], im.getpixel((17, 10)))
    assert min(left) > 240  # white, not black
    assert right[2] > 200 and right[0] < 50


@pytest.mark.parametrize("target", ["png", "webp", "gif"])
def test_transparency_is_kept_where_the_target_has_it(target: ImageFormat) -> None:
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 10, 20))
    im, _, _ = convert(encode(rgba, "PNG"), target, width=10)
    alpha = im.convert("RGBA").getchannel("A")
    assert alpha.getpixel((1, 5)) == 0
    assert alpha.getpixel((8, 5)) == 255


def test_palette_gif_with_transparency_to_png() -> None:
    palette = Image.new("P", (64, 64), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 32, 64))  # left half: the transparent index
    im, _, _ = convert(encode(palette, "GIF", transparency=0), "png", thumbnail=16)
    rgba = im.convert("RGBA")
    assert cast(tuple[int, ...], rgba.getpixel((1, 1)))[3] == 0
    assert cast(tuple[int, ...], rgba.getpixel((14, 1)))[:4] == (255, 0, 0, 255)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    deep = Image.new("I;16", (8, 8), 32896)  # mid-grey in 16 bits
    im, _, _ = convert(encode(deep, "PNG"), "jpeg")
    value = cast(int, im.convert("L").getpixel((4, 4)))
    assert 120 < value < 136


def test_cmyk_jpeg_to_png() -> None:
    im, _, _ = convert(encode(gradient(mode="CMYK"), "JPEG"), "png")
    assert im.mode == "RGB"


def test_greyscale_stays_greyscale_in_png_and_jpeg() -> None:
    targets: tuple[ImageFormat, ...] = ("png", "jpeg")
    for target in targets:
        im, _, _ = convert(encode(gradient(mode="L"), "PNG"), target)
        assert im.mode == "L"


def test_icc_profile_is_kept() -> None:
    profile = b"\x00" * 128  # Pillow carries the bytes without parsing them
    im, _, _ = convert(encode(gradient(), "PNG", icc_profile=profile), "jpeg")
    assert im.info.get("icc_profile") == profile


@pytest.mark.parametrize("target", FORMATS)
def test_metadata_is_not_carried_over(target: ImageFormat) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Camera"
    exif[ExifTags.Base.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N"}
    source = encode(gradient(), "JPEG", exif=exif.tobytes(), comment=b"private note")
    assert {"exif", "comment"} <= Image.open(io.BytesIO(source.getvalue())).info.keys()
    im, _, _ = convert(source, target)
    assert not {"exif", "comment", "xmp"} & im.info.keys()
    assert not im.getexif()


def test_gif_background_index_does_not_become_a_webp_colour() -> None:
    im, _, _ = convert(animation(3, background=2), "webp")
    assert im.info.get("background") == (0, 0, 0, 0)


def test_quality_changes_lossy_output() -> None:
    photo = encode(gradient((256, 256)), "PNG").getvalue()
    lossy: tuple[ImageFormat, ...] = ("jpeg", "webp")
    for target in lossy:
        low, _, _ = convert_image(io.BytesIO(photo), target, ConversionOptions(quality=5))
        high, _, _ = convert_image(io.BytesIO(photo), target, ConversionOptions(quality=100))
        assert len(low) < len(high)


# --- animation ---


@pytest.mark.parametrize(
    ("source", "target"),
    [("GIF", "gif"), ("GIF", "webp"), ("WEBP", "gif"), ("WEBP", "webp"), ("PNG", "webp")],
)
def test_animation_is_kept_for_gif_and_webp(source: str, target: ImageFormat) -> None:
    im, width, height = convert(animation(4, fmt=source), target, width=20)
    assert (width, height) == (20, 15)
    assert getattr(im, "n_frames", 1) == 4
    colours = []
    for index in range(4):
        im.seek(index)
        assert im.size == (20, 15)
        colours.append(cast(tuple[int, ...], im.convert("RGB").getpixel((10, 7)))[:3])
    assert colours[0][0] > 200 and colours[1][1] > 100 and colours[2][2] > 200
    assert im.info.get("duration") in (70, 80)  # GIF stores centiseconds


def test_transparent_animation_frames_do_not_show_through() -> None:
    first = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    first.paste((255, 0, 0, 255), (0, 0, 10, 20))  # red left, clear right
    second = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    second.paste((0, 0, 255, 255), (10, 0, 20, 20))  # clear left, blue right
    source = encode(first, "GIF", save_all=True, append_images=[second], disposal=2)
    im, _, _ = convert(source, "gif", width=10)
    im.seek(1)
    frame = im.convert("RGBA")
    assert cast(tuple[int, ...], frame.getpixel((1, 5)))[3] == 0  # the red is gone
    assert cast(tuple[int, ...], frame.getpixel((8, 5)))[2] > 200


def test_too_many_frames_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_FRAMES", 3)
    with pytest.raises(ImageRejected, match="too many frames"):
        convert(animation(4), "webp")
    convert(animation(4), "jpeg")  # a still needs only the first frame


@pytest.mark.parametrize("target", ["png", "jpeg"])
def test_animation_to_still_format_takes_first_frame(target: ImageFormat) -> None:
    im, _, _ = convert(animation(3), target)
    assert getattr(im, "n_frames", 1) == 1
    red = cast(tuple[int, int, int], im.convert("RGB").getpixel((5, 5)))
    assert red[0] > 200 and red[1] < 60


def test_animation_shares_the_pixel_budget() -> None:
    data = animation(5, size=(40, 30)).getvalue()  # 5 x 1200 pixels
    convert(data, "png", max_pixels=2_000)  # one frame fits
    with pytest.raises(ImageRejected, match="frames"):
        convert(data, "gif", max_pixels=2_000)
    convert(data, "gif", max_pixels=6_000)


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
