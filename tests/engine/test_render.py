from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from imagegate.engine import UnsupportedPrompt, edit_images, understood_operations
from imagegate.engine.render import inpaint

Array = npt.NDArray[np.uint8]
Encode = Callable[..., bytes]
Decode = Callable[[bytes], Array]

BLUE = (30, 60, 200)
RED = (220, 20, 20)


def solid(height: int, width: int, colour: tuple[int, ...]) -> Array:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (height, width, len(colour))).copy()


def hole_mask(height: int, width: int, top: int, bottom: int, left: int, right: int) -> Array:
    """An RGBA mask, opaque except a transparent rectangle: the region to edit."""
    mask = solid(height, width, (0, 0, 0, 255))
    mask[top:bottom, left:right, 3] = 0
    return mask


def test_grayscale_edit_is_exactly_gray_in_every_variant(
    scene: Array, encode: Encode, decode: Decode
) -> None:
    for data in edit_images([encode(scene)], prompt="black and white", n=3):
        out = decode(data)
        assert out.shape == scene.shape
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_invert_through_the_pipeline_is_close_to_the_negative(
    scene: Array, encode: Encode, decode: Decode
) -> None:
    out = decode(edit_images([encode(scene)], prompt="invert", seed=7)[0]).astype(int)
    # the variation jitter is slight: far below the change the edit itself makes
    assert np.abs(out - (255 - scene.astype(int))).mean() < 20
    assert np.abs(out - scene.astype(int)).mean() > 80


def test_masked_edit_changes_only_the_masked_pixels(scene: Array, encode: Encode, decode: Decode) -> None:
    mask = hole_mask(48, 64, 10, 30, 20, 50)
    inside = mask[..., 3] == 0
    for data in edit_images([encode(scene)], prompt="invert", mask=encode(mask), n=2, seed=3):
        out = decode(data)
        np.testing.assert_array_equal(out[~inside], scene[~inside])
        assert np.abs(out[inside].astype(int) - scene[inside]).mean() > 60


def test_masked_geometry_stays_inside_the_region(scene: Array, encode: Encode, decode: Decode) -> None:
    mask = hole_mask(48, 64, 5, 25, 10, 50)  # a non-square box: the quarter turn is fitted back into it
    inside = mask[..., 3] == 0
    out = decode(edit_images([encode(scene)], prompt="rotate 90", mask=encode(mask))[0])
    assert out.shape == scene.shape
    np.testing.assert_array_equal(out[~inside], scene[~inside])


def test_inpainting_fills_a_hole_from_its_surroundings(encode: Encode, decode: Decode) -> None:
    image = solid(64, 64, BLUE)
    image[20:40, 24:44] = RED
    mask = hole_mask(64, 64, 18, 42, 22, 46)
    hole = (mask[..., 3] == 0).astype(np.uint8)
    assert np.abs(inpaint(image, hole).astype(int) - BLUE).max() <= 4  # Telea leaves a faint ripple

    for data in edit_images([encode(image)], prompt="remove the red square", mask=encode(mask), n=3):
        out = decode(data).astype(int)
        filled = out[18:42, 22:46]
        # blue again, up to the slight variant jitter, which fades in from the hole's edge: no seam
        assert filled[..., 2].min() > 170 and filled[..., 0].max() < 70
        assert np.abs(filled[0] - BLUE).max() <= 7 and np.abs(filled[:, 0] - BLUE).max() <= 7
        np.testing.assert_array_equal(out[hole == 0], image[hole == 0])


def test_large_holes_are_filled_coarse_to_fine_without_seams() -> None:
    ys, xs = np.mgrid[0:600, 0:600]
    gradient = np.stack((xs * 255 // 599, ys * 255 // 599, np.full_like(xs, 128)), axis=2).astype(np.uint8)
    damaged = gradient.copy()
    damaged[100:500, 100:500] = RED
    hole = np.zeros((600, 600), dtype=np.uint8)
    hole[100:500, 100:500] = 1
    filled = inpaint(damaged, hole).astype(int)
    assert np.abs(filled[100:500, 100:500, 1] - 20).min() > 10  # no red left
    np.testing.assert_array_equal(filled[hole == 0], gradient[hole == 0])
    # along the hole's edge the fill continues its neighbours
    assert np.abs(filled[100:500, 100] - gradient[100:500, 99]).mean() < 12
    assert np.abs(filled[100, 100:500] - gradient[99, 100:500]).mean() < 12


def test_remove_without_a_mask_fills_the_images_own_transparent_pixels(
    encode: Encode, decode: Decode
) -> None:
    image = solid(40, 40, (*BLUE, 255))
    image[10:30, 10:30] = (0, 0, 0, 0)
    out = decode(edit_images([encode(image)], prompt="remove", seed=1)[0]).astype(int)
    assert out.shape == (40, 40, 4)
    assert (out[..., 3] == 255).all()
    # the fill matches its surroundings (the whole image carries the same variant jitter)
    assert np.abs(out[10:30, 10:30] - out[0, 0]).max() <= 6


def test_masked_region_comes_out_opaque_where_the_source_was_transparent(
    encode: Encode, decode: Decode
) -> None:
    image = solid(32, 32, (*BLUE, 255))
    image[8:24, 8:24, 3] = 0
    out = decode(edit_images([encode(image)], prompt="fill", mask=encode(image))[0])
    assert (out[..., 3] == 255).all()


def test_a_mask_without_transparent_pixels_edits_nothing(
    scene: Array, encode: Encode, decode: Decode
) -> None:
    opaque = solid(48, 64, (0, 0, 0, 255))
    out = decode(edit_images([encode(scene)], prompt="invert", mask=encode(opaque))[0])
    np.testing.assert_array_equal(out, scene)


def test_size_is_honoured_by_cover_fitting(scene: Array, encode: Encode, decode: Decode) -> None:
    for width, height in ((80, 50), (20, 30), (64, 48)):
        (data,) = edit_images([encode(scene)], prompt="sharpen", size=(width, height))
        assert decode(data).shape == (height, width, 3)


def test_without_a_size_a_quarter_turn_swaps_the_output_sides(
    scene: Array, encode: Encode, decode: Decode
) -> None:
    assert decode(edit_images([encode(scene)], prompt="rotate left")[0]).shape == (64, 48, 3)


@pytest.mark.parametrize(
    ("output_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")]
)
def test_output_formats_decode_as_that_format(
    scene: Array, encode: Encode, output_format: str, pil_format: str
) -> None:
    for source_format in ("PNG", "JPEG", "WEBP"):
        (data,) = edit_images([encode(scene, source_format)], prompt="emboss", output_format=output_format)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == pil_format
            assert image.size == (64, 48)


def test_alpha_is_kept_where_the_format_holds_it(encode: Encode, decode: Decode) -> None:
    image = solid(32, 32, (*RED, 255))
    image[:, :16, 3] = 0
    source = encode(image)
    for output_format in ("png", "webp"):
        out = decode(edit_images([source], prompt="sepia", output_format=output_format)[0])
        assert out.shape == (32, 32, 4)
        assert out[:, :16, 3].max() <= 5 and out[:, 16:, 3].min() >= 250
    jpeg = decode(edit_images([source], prompt="sepia", output_format="jpeg")[0])
    assert jpeg.shape == (32, 32, 3)
    assert jpeg[:, :12].min() >= 235  # the transparent half is flattened onto white


def test_transparent_background_keys_out_a_uniform_backdrop(encode: Encode, decode: Decode) -> None:
    image = solid(40, 40, (255, 255, 255))
    image[12:28, 12:28] = RED
    for output_format in ("png", "webp"):
        (data,) = edit_images(
            [encode(image)], prompt="sharpen", background="transparent", output_format=output_format
        )
        out = decode(data)
        assert out.shape == (40, 40, 4)
        assert out[:5, :5, 3].max() <= 5  # backdrop
        assert out[16:24, 16:24, 3].min() >= 250  # subject


def test_transparent_background_leaves_a_photo_opaque(scene: Array, encode: Encode, decode: Decode) -> None:
    out = decode(edit_images([encode(scene)], prompt="sharpen", background="transparent")[0])
    assert out.shape == (48, 64, 4)
    assert (out[..., 3] == 255).all()


def test_opaque_background_and_jpeg_drop_alpha(encode: Encode, decode: Decode) -> None:
    image = solid(16, 16, (*RED, 128))
    assert decode(edit_images([encode(image)], prompt="blur", background="opaque")[0]).shape == (16, 16, 3)
    jpeg = edit_images([encode(image)], prompt="blur", background="transparent", output_format="jpeg")[0]
    with Image.open(io.BytesIO(jpeg)) as opened:
        assert opened.mode == "RGB"


def test_output_compression_is_the_quality_for_jpeg_and_webp(scene: Array, encode: Encode) -> None:
    big = np.kron(scene, np.ones((4, 4, 1), dtype=np.uint8))
    for output_format in ("jpeg", "webp"):
        low, high = (
            edit_images([encode(big)], prompt="sepia", output_format=output_format, output_compression=q)[0]
            for q in (10, 95)
        )
        assert len(low) < len(high)


def test_variants_differ_from_each_other(scene: Array, encode: Encode, decode: Decode) -> None:
    outputs = [decode(d).astype(int) for d in edit_images([encode(scene)], prompt="sepia", n=4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(outputs[i] - outputs[j]).mean() > 0.5


def test_same_inputs_and_seed_give_identical_outputs(scene: Array, encode: Encode) -> None:
    def call(seed: int | None, prompt: str = "cartoon") -> list[bytes]:
        return edit_images([encode(scene)], prompt=prompt, n=3, seed=seed)

    assert call(42) == call(42)
    assert call(None) == call(None)  # no seed: still deterministic, seeded by the prompt
    assert call(42) != call(43)
    assert call(None, "cartoon") != call(None, "cartoonize")


def test_variant_i_is_the_same_whatever_n(scene: Array, encode: Encode) -> None:
    three = edit_images([encode(scene)], prompt="posterize", n=3, seed=5)
    assert edit_images([encode(scene)], prompt="posterize", n=1, seed=5) == three[:1]


def test_unsupported_prompt_raises_with_the_operation_list(scene: Array, encode: Encode) -> None:
    with pytest.raises(UnsupportedPrompt) as caught:
        edit_images([encode(scene)], prompt="a dragon over the mountains")
    assert caught.value.understood == understood_operations()


def test_multiple_sources_are_combined_side_by_side(encode: Encode, decode: Decode) -> None:
    red, green = solid(40, 40, RED), solid(40, 40, (20, 200, 20))
    alone = decode(edit_images([encode(red)], prompt="flip", seed=1)[0])
    both = decode(edit_images([encode(red), encode(green)], prompt="flip", seed=1)[0])
    assert both.shape == alone.shape == (40, 40, 3)
    assert np.abs(both.astype(int) - alone).mean() > 50
    # flipped: the first image's half is now on the right
    assert both[:, :20, 1].mean() > 150 > both[:, :20, 0].mean()
    assert both[:, 20:, 0].mean() > 150 > both[:, 20:, 1].mean()


def test_with_a_mask_only_the_first_source_is_edited(scene: Array, encode: Encode, decode: Decode) -> None:
    mask = encode(hole_mask(48, 64, 0, 10, 0, 10))
    other = encode(solid(48, 64, RED))
    out = decode(edit_images([encode(scene), other], prompt="invert", mask=mask)[0])
    np.testing.assert_array_equal(out[10:], scene[10:])


@pytest.mark.parametrize(
    "arguments",
    [
        {"output_format": "gif"},
        {"n": 0},
        {"size": (0, 10)},
        {"output_compression": 101},
        {"background": "green"},
    ],
)
def test_invalid_arguments_raise_value_error(
    scene: Array, encode: Encode, arguments: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        edit_images([encode(scene)], prompt="blur", **arguments)  # type: ignore[arg-type]


def test_a_1024px_masked_edit_renders_at_full_size(encode: Encode) -> None:
    rng = np.random.default_rng(0)
    photo = np.repeat(np.repeat(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 16, 0), 16, 1)
    source, mask = encode(photo), encode(hole_mask(1024, 1024, 100, 900, 200, 800))
    [out] = edit_images([source], prompt="remove, then cartoon and blur strongly", mask=mask)
    with Image.open(io.BytesIO(out)) as image:
        assert (image.format, image.size) == ("PNG", (1024, 1024))
