from __future__ import annotations

import time

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from imagegate.engine import UnsupportedPrompt, understood_operations
from imagegate.engine.operations import MAX_STEPS, parse_prompt

Array = npt.NDArray[np.uint8]


def run(prompt: str, rgb: Array) -> Array:
    """Apply the prompt's colour and geometry steps in order, as the engine does without a mask."""
    for step in parse_prompt(prompt):
        rgb = step.apply(rgb)
    return rgb


def names(prompt: str) -> list[str]:
    return [step.name for step in parse_prompt(prompt)]


def sharpness(rgb: Array) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def spread(rgb: Array) -> float:
    """Mean distance of a pixel's channels from each other: 0 for grays, large for vivid colours."""
    wide = rgb.astype(np.int16)
    return float((wide.max(axis=2) - wide.min(axis=2)).mean())


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Make it BLACK AND WHITE", ["grayscale"]),
        ("greyscale please", ["grayscale"]),
        ("b&w", ["grayscale"]),
        ("monochrome", ["grayscale"]),
        ("vintage look", ["sepia"]),
        ("make a negative", ["invert"]),
        ("Sharpen, then rotate 90 and flip vertically", ["sharpen", "rotate", "flip"]),
        ("blur strongly and make it slightly brighter", ["blur", "brighter"]),
        ("lighten it", ["brighter"]),
        ("darken the photo", ["darker"]),
        ("lower the brightness", ["darker"]),
        ("more contrast", ["contrast"]),
        ("reduce the contrast", ["contrast"]),
        ("flip it upside down", ["flip"]),
        ("mirror the image", ["mirror"]),
        ("turn it into a pencil sketch drawing", ["pencil sketch"]),
        ("cartoonize me", ["cartoon"]),
        ("comic style", ["cartoon"]),
        ("posterize to 3 levels", ["posterize"]),
        ("emboss", ["emboss"]),
        ("edge detection", ["edge"]),
        ("just the outline", ["edge"]),
        ("sharpen the edges", ["sharpen"]),
        ("erase the person", ["remove"]),
        ("inpaint this", ["remove"]),
        ("fill in the gap", ["remove"]),
        ("more saturated", ["saturate"]),
        ("less saturated", ["desaturate"]),
        ("desaturate", ["desaturate"]),
        ("don't blur, just invert", ["invert"]),
        ("without blurring, rotate left", ["rotate"]),
        ("invert, and invert again", ["invert", "invert"]),
    ],
)
def test_prompts_name_operations_in_prompt_order(prompt: str, expected: list[str]) -> None:
    assert names(prompt) == expected


def test_unsupported_prompt_lists_the_understood_operations() -> None:
    with pytest.raises(UnsupportedPrompt) as caught:
        parse_prompt("a cat wearing a hat on the moon")
    assert caught.value.understood == understood_operations()
    for name in ("grayscale", "rotate", "pencil sketch", "remove"):
        assert name in str(caught.value)


def test_understood_operations_cover_the_documented_set() -> None:
    required = {
        "grayscale", "sepia", "invert", "blur", "sharpen", "brighter", "darker", "contrast", "rotate",
        "flip", "mirror", "pencil sketch", "cartoon", "posterize", "emboss", "edge", "remove", "saturate",
        "desaturate",
    }  # fmt: skip
    assert required <= set(understood_operations())


def test_each_understood_name_is_itself_a_valid_prompt() -> None:
    for name in understood_operations():
        assert names(name) == [name]


def test_a_prompt_applies_at_most_max_steps_operations() -> None:
    assert len(parse_prompt(", ".join(["invert"] * (MAX_STEPS + 10)))) == MAX_STEPS


def test_a_long_prompt_parses_in_linear_time() -> None:
    prompt = "please do not blur, " * 1500 + "then invert it " * 500  # 30,000 characters
    started = time.perf_counter()
    steps = parse_prompt(prompt)
    assert time.perf_counter() - started < 1.0
    assert {step.name for step in steps} == {"invert"}


def test_remove_is_a_fill_step_and_the_others_are_not() -> None:
    kinds = {name: parse_prompt(name)[0].kind for name in understood_operations()}
    assert kinds["remove"] == "fill"
    assert kinds["rotate"] == kinds["flip"] == kinds["mirror"] == "geometry"
    assert kinds["blur"] == kinds["grayscale"] == "tone"


# --- geometry ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "quarter_turns_ccw"),
    [
        ("rotate", -1),
        ("rotate 90", -1),
        ("rotate right", -1),
        ("rotate 90 degrees clockwise", -1),
        ("rotate left", 1),
        ("rotate 90 counterclockwise", 1),
        ("rotate 270", 1),
        ("rotate 180", 2),
        ("turn it 180 degrees", 2),
    ],
)
def test_rotate_by_quarter_turns_is_exact(prompt: str, quarter_turns_ccw: int, scene: Array) -> None:
    rotated = run(prompt, scene)
    np.testing.assert_array_equal(rotated, np.rot90(scene, quarter_turns_ccw))


def test_rotate_90_swaps_the_sides(scene: Array) -> None:
    assert run("rotate 90", scene).shape == (scene.shape[1], scene.shape[0], 3)


def test_rotate_by_another_angle_keeps_the_canvas_and_turns_the_content(scene: Array) -> None:
    turned = run("rotate 30", scene)
    assert turned.shape == scene.shape
    assert np.abs(turned.astype(int) - scene).mean() > 10


def test_rotation_applies_to_alpha_channels_too() -> None:
    alpha = np.zeros((4, 6), dtype=np.uint8)
    alpha[0, 0] = 255
    (step,) = parse_prompt("rotate right")
    np.testing.assert_array_equal(step.apply(alpha), np.rot90(alpha, -1))


def test_flip_reverses_columns(scene: Array) -> None:
    np.testing.assert_array_equal(run("flip", scene), scene[:, ::-1])
    np.testing.assert_array_equal(run("flip horizontally", scene), scene[:, ::-1])


@pytest.mark.parametrize("prompt", ["flip vertically", "upside down", "flip it upside down"])
def test_vertical_flip_reverses_rows(prompt: str, scene: Array) -> None:
    np.testing.assert_array_equal(run(prompt, scene), scene[::-1])


def test_mirror_reverses_columns(scene: Array) -> None:
    np.testing.assert_array_equal(run("mirror", scene), scene[:, ::-1])


def test_operations_apply_in_prompt_order(scene: Array) -> None:
    np.testing.assert_array_equal(run("rotate left, then flip", scene), np.rot90(scene, 1)[:, ::-1])
    np.testing.assert_array_equal(run("flip, then rotate left", scene), np.rot90(scene[:, ::-1], 1))


# --- colour --------------------------------------------------------------------------------------------


def test_grayscale_makes_channels_equal_and_keeps_brightness(scene: Array) -> None:
    gray = run("grayscale", scene)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 1], gray[..., 2])
    expected = cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(gray[..., 0], expected)


def test_sepia_gives_warm_tones(scene: Array) -> None:
    toned = run("sepia", scene).astype(int)
    assert (toned[..., 0] >= toned[..., 1]).all()
    assert (toned[..., 1] >= toned[..., 2]).all()
    assert spread(run("sepia", scene)) > 10


def test_invert_twice_is_identity(scene: Array) -> None:
    once = run("invert", scene)
    np.testing.assert_array_equal(once, 255 - scene)
    np.testing.assert_array_equal(run("invert", once), scene)


def test_blur_smooths_and_intensity_words_scale_it(scene: Array) -> None:
    slight, normal, strong = (run(p, scene) for p in ("blur slightly", "blur", "blur strongly"))
    assert sharpness(scene) > sharpness(slight) > sharpness(normal) > sharpness(strong)
    assert abs(float(normal.mean()) - float(scene.mean())) < 3  # blur moves no brightness


def test_blur_takes_a_radius_in_pixels(scene: Array) -> None:
    assert sharpness(run("blur 1", scene)) > sharpness(run("blur 6", scene))


def test_a_huge_blur_radius_is_capped_and_fast() -> None:
    big = np.random.default_rng(2).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    started = time.perf_counter()
    out = run("blur 5000", big)
    assert time.perf_counter() - started < 1.0
    assert out.shape == big.shape
    assert float(out.std()) < 2  # blurred to nearly the mean colour


def test_sharpen_restores_edges_to_a_soft_image(scene: Array) -> None:
    soft = np.asarray(cv2.GaussianBlur(scene, (0, 0), 1.5), dtype=np.uint8)
    sharpened = sharpness(run("sharpen", soft))
    assert sharpened > 1.3 * sharpness(soft)
    assert sharpness(run("sharpen strongly", soft)) > 1.3 * sharpened


def test_brighter_and_darker_move_the_mean(scene: Array) -> None:
    mean = float(scene.mean())
    slightly, brighter, much = (
        float(run(p, scene).mean()) for p in ("slightly brighter", "brighter", "much brighter")
    )
    assert mean < slightly < brighter < much
    assert float(run("darker", scene).mean()) < mean - 20
    assert float(run("brighten", scene).mean()) == brighter


def test_contrast_widens_and_less_contrast_narrows_the_spread_of_levels(scene: Array) -> None:
    std = float(scene.std())
    assert float(run("more contrast", scene).std()) > std * 1.2
    assert float(run("less contrast", scene).std()) < std * 0.85


def test_saturate_and_desaturate_move_colours_away_from_and_towards_gray(scene: Array) -> None:
    base = spread(scene)
    assert spread(run("saturate", scene)) > base * 1.3
    assert spread(run("desaturate", scene)) < base * 0.7


def test_posterize_limits_the_levels_per_channel(scene: Array) -> None:
    for prompt, levels in (("posterize", 4), ("posterize 2", 2), ("posterize to 3 levels", 3)):
        out = run(prompt, scene)
        for channel in range(3):
            assert len(np.unique(out[..., channel])) <= levels
    assert set(np.unique(run("posterize 2", scene))) <= {0, 255}


def test_emboss_turns_flat_areas_mid_gray_and_marks_edges(scene: Array) -> None:
    flat = np.full((20, 20, 3), 77, dtype=np.uint8)
    assert (run("emboss", flat) == 128).all()
    embossed = run("emboss", scene)
    np.testing.assert_array_equal(embossed[..., 0], embossed[..., 2])
    assert (embossed != 128).any()


def test_edges_are_white_on_black_along_shape_borders() -> None:
    square = np.zeros((40, 40, 3), dtype=np.uint8)
    square[10:30, 10:30] = 255
    edges = run("edges", square)[..., 0]
    assert set(np.unique(edges)) == {0, 255}
    assert edges[:5].max() == 0 and edges[15:25, 15:25].max() == 0  # flat areas
    assert edges[8:13, 15:25].any() and edges[27:32, 15:25].any()  # top and bottom borders


def test_pencil_sketch_whitens_flat_areas_and_keeps_dark_lines() -> None:
    paper = np.full((40, 40, 3), 150, dtype=np.uint8)
    paper[:, 19:21] = 20
    sketch = run("pencil sketch", paper)
    np.testing.assert_array_equal(sketch[..., 0], sketch[..., 1])
    assert sketch[:, :10].min() >= 250  # far from the line: blank paper
    assert sketch[:, 19:21].max() < 100  # the line stays dark


def test_cartoon_flattens_colours_and_inks_the_edges(scene: Array) -> None:
    noisy = np.clip(scene + np.random.default_rng(1).normal(0, 6, scene.shape), 0, 255).astype(np.uint8)
    toon = run("cartoon", noisy)

    def colours(rgb: Array) -> int:
        return len(np.unique(rgb.reshape(-1, 3), axis=0))

    assert colours(toon) < colours(noisy) / 4
    # the border of the dark square (rows 12–23, columns 12–31) is drawn in black ink
    assert (toon[10:26, 10:14].max(axis=2) == 0).any()
