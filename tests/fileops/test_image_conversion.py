"""Unit tests for taskdrive.fileops.images: pure Pillow, no services.

Format pairs, geometry, colour modes and animation.
"""

from __future__ import annotations

import io
import itertools
from typing import cast

import pytest
from PIL import ExifTags, Image

from taskdrive.fileops import images
from taskdrive.fileops.images import ConversionOptions, ImageFormat, ImageRejected, convert_image
from tests.fileops.image_helpers import FORMATS, PIL_NAME, animation, convert, encode, gradient

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
