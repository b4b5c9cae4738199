from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from imagegate.engine.picture import Picture, cover, decode, encode, flatten, transparent_region


def png(pixels: npt.NDArray[np.uint8], **info: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **info)
    return buffer.getvalue()


def test_decode_keeps_alpha_only_when_the_image_has_it() -> None:
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 3] = 9
    with_alpha = decode(png(rgba))
    assert with_alpha.alpha is not None and (with_alpha.alpha == 9).all()
    assert (with_alpha.width, with_alpha.height) == (5, 4)
    assert decode(png(np.zeros((4, 5, 3), dtype=np.uint8))).alpha is None


def test_decode_scales_16_bit_gray_down_to_8_bits() -> None:
    wide = np.array([[0, 256, 65535]], dtype=np.uint16)
    picture = decode(png(wide))  # type: ignore[arg-type]
    np.testing.assert_array_equal(picture.rgb[0, :, 0], [0, 1, 255])
    np.testing.assert_array_equal(picture.rgb[..., 0], picture.rgb[..., 2])


def test_decode_turns_images_upright_per_exif_orientation() -> None:
    pixels = np.zeros((2, 3, 3), dtype=np.uint8)
    pixels[0, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turned 90° clockwise
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif)
    upright = decode(buffer.getvalue())
    np.testing.assert_array_equal(upright.rgb, np.rot90(pixels, -1))


def test_transparent_region_marks_only_fully_transparent_pixels() -> None:
    mask = np.full((4, 4, 4), 255, dtype=np.uint8)
    mask[0, 0, 3] = 0
    mask[1, 1, 3] = 1  # almost transparent is still protected
    region = transparent_region(png(mask), 4, 4)
    assert region.sum() == 1 and region[0, 0] == 1
    assert transparent_region(png(mask), 8, 8).sum() == 4  # resized by nearest neighbour
    assert transparent_region(png(mask[..., :3]), 4, 4).sum() == 0  # no alpha, nothing marked


def test_cover_crops_the_overflow_evenly() -> None:
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, 10:20] = 200  # the middle third
    out = cover(Picture(pixels), 10, 10)
    assert out.rgb.shape == (10, 10, 3)
    assert (out.rgb == 200).all()


def test_cover_does_not_bleed_transparent_colour_into_edges() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)  # black under the transparent half
    rgb[:, 4:] = 255
    alpha = np.zeros((8, 8), dtype=np.uint8)
    alpha[:, 4:] = 255
    out = cover(Picture(rgb, alpha), 16, 16)
    assert out.alpha is not None
    visible = out.alpha > 0
    assert (out.rgb[visible] >= 250).all()


def test_flatten_composites_over_white() -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    alpha = np.array([[0, 255], [128, 255]], dtype=np.uint8)
    flat = flatten(Picture(rgb, alpha))
    assert flat.alpha is None
    assert flat.rgb[0, 0, 0] == 255 and flat.rgb[0, 1, 0] == 0 and 120 < flat.rgb[1, 0, 0] < 135


@pytest.mark.parametrize("compression", [0, 50, 100])
def test_png_compression_levels_all_decode_losslessly(compression: int) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = encode(Picture(pixels), "png", compression)
    with Image.open(io.BytesIO(data)) as image:
        np.testing.assert_array_equal(np.asarray(image), pixels)
