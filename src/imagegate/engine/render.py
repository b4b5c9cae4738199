"""The edit pipeline: decode, combine, inpaint, apply the prompt's operations, vary, fit, encode; and
variations, the same pipeline without a prompt."""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np

from imagegate.engine.collage import compose
from imagegate.engine.filters import Pixels, u8
from imagegate.engine.operations import Step, parse_prompt
from imagegate.engine.picture import (
    OUTPUT_FORMATS,
    OutputFormat,
    Picture,
    cover,
    decode,
    encode,
    flatten,
    transparent_region,
)

INPAINT_RADIUS = 5
_COARSE_HOLE = 256 * 256  # holes with more pixels are inpainted coarse-to-fine
_KEY_TOLERANCE = 32  # per-channel distance from the border colour still counted as background
_KEY_BORDER_SHARE = 0.6  # share of the border that must be that colour for it to be a background
_FEATHER = 8.0  # pixels over which a masked edit's variant jitter fades in from the region's edge
_BACKGROUNDS = (None, "auto", "transparent", "opaque")


def edit_images(
    sources: list[bytes],
    *,
    prompt: str,
    mask: bytes | None = None,
    n: int = 1,
    size: tuple[int, int] | None = None,
    output_format: str = "png",
    output_compression: int | None = None,
    seed: int | None = None,
    background: str | None = None,
) -> list[bytes]:
    """Returns n encoded images (png|jpeg|webp per output_format). Pure, synchronous, CPU-bound.

    Sources: the first image is the base. Without a mask, several sources are laid out as a grid collage
    on the first image's canvas, in order, each cropped to cover its cell (two images: side by side).
    With a mask the edit is local to the first image and the other sources are not used: a collage would
    move every pixel the mask protects.

    Mask: a PNG whose fully transparent pixels (alpha 0) mark the region to edit (resized, nearest, if its
    size differs from the first image's). The region is filled by inpainting (OpenCV Telea), then the
    prompt's operations apply inside it only; quarter turns and flips move the content of the region's
    bounding box. The region comes out opaque; pixels outside it stay identical to the source. Without
    a mask the operations apply to the whole image, and "remove" fills the image's own fully transparent
    pixels, if any.

    Variants: variant i adds a slight hue, contrast and brightness jitter drawn from a generator seeded
    with (seed, or a hash of the prompt) + i, so the same inputs always give the same outputs and
    variants differ from each other. With a mask the jitter stays inside the region, faded in from its
    edge.

    Size: the output is `size` (width, height) exactly, the edit scaled to cover it and the overflow
    cropped evenly; else the edited image's own size (the first image's, sides swapped by quarter turns).

    Output: png, jpeg or webp; `output_compression` (0–100) is the JPEG/WebP quality and maps onto PNG's
    zlib level. Source alpha is kept where the format can hold it; JPEG is flattened onto white.
    background="transparent" gives png/webp an alpha channel, making a uniform backdrop that touches the
    border transparent when the image had no transparency of its own (and no mask protects it);
    background="opaque" flattens onto white.

    Raises UnsupportedPrompt when the prompt names no operation, ValueError on invalid arguments.
    """
    fmt = _check_arguments(sources, n, size, output_format, output_compression, background)
    steps = parse_prompt(prompt)
    pictures = [decode(source) for source in sources]
    region: Pixels | None = None
    if mask is None:
        base = compose(pictures)
        edited = _edit_whole(base, steps)
    else:
        base = pictures[0]
        region = transparent_region(mask, base.width, base.height)
        edited = _edit_region(base, region, steps)
    alpha = _output_alpha(edited, background, fmt, may_key=region is None)
    return _variants(edited, base, region, alpha, root=_root_seed(seed, prompt), n=n, size=size, fmt=fmt,
                     output_compression=output_compression, background=background)


def vary_images(
    source: bytes,
    *,
    n: int = 1,
    size: tuple[int, int] | None = None,
    output_format: str = "png",
    output_compression: int | None = None,
    seed: int | None = None,
    background: str | None = None,
) -> list[bytes]:
    """n variations of one image: the variant jitter of `edit_images` alone (hue, contrast, brightness),
    seeded with `seed` or a hash of the image, then fitted to `size`. Pure, synchronous, CPU-bound."""
    fmt = _check_arguments([source], n, size, output_format, output_compression, background)
    base = decode(source)
    alpha = _output_alpha(base, background, fmt, may_key=True)
    root = seed if seed is not None else int.from_bytes(hashlib.sha256(source).digest()[:8], "big")
    return _variants(base, base, None, alpha, root=root, n=n, size=size, fmt=fmt,
                     output_compression=output_compression, background=background)


def _variants(edited: Picture, base: Picture, region: Pixels | None, alpha: Pixels | None, *, root: int, n: int,
              size: tuple[int, int] | None, fmt: OutputFormat, output_compression: int | None,
              background: str | None) -> list[bytes]:
    """n encoded variants of `edited`: jittered (inside `region` only, when there is one), fitted, encoded."""
    results = []
    for variant in range(n):
        rgb = _vary(edited.rgb, np.random.default_rng((root + variant) % 2**64))
        if region is not None:
            rgb = _confine(rgb, edited.rgb, base.rgb, region)
        picture = Picture(rgb, alpha)
        if background == "opaque":
            picture = flatten(picture)
        if size is not None:
            picture = cover(picture, *size)
        results.append(encode(picture, fmt, output_compression))
    return results


def _check_arguments(
    sources: list[bytes],
    n: int,
    size: tuple[int, int] | None,
    output_format: str,
    output_compression: int | None,
    background: str | None,
) -> OutputFormat:
    if not sources:
        raise ValueError("edit_images needs at least one source image.")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}.")
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise ValueError(f"size must be positive, not {size[0]}x{size[1]}.")
    if output_compression is not None and not 0 <= output_compression <= 100:
        raise ValueError(f"output_compression must be 0–100, not {output_compression}.")
    if background not in _BACKGROUNDS:
        raise ValueError(f"background must be transparent, opaque or auto, not {background!r}.")
    for fmt in OUTPUT_FORMATS:
        if fmt == output_format:
            return fmt
    raise ValueError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}.")


def _edit_whole(base: Picture, steps: list[Step]) -> Picture:
    rgb, alpha = base.rgb, base.alpha
    for step in steps:
        if step.kind == "fill":
            rgb, alpha = _fill_transparent(rgb, alpha)
        elif step.kind == "geometry":
            rgb = step.apply(rgb)
            alpha = None if alpha is None else step.apply(alpha)
        else:
            rgb = step.apply(rgb)
    return Picture(rgb, alpha)


def _fill_transparent(rgb: Pixels, alpha: Pixels | None) -> tuple[Pixels, Pixels | None]:
    """Inpaint the fully transparent pixels and make them opaque."""
    if alpha is None:
        return rgb, alpha
    hole = (alpha == 0).astype(np.uint8)
    if not hole.any():
        return rgb, alpha
    return inpaint(rgb, hole), np.where(hole == 1, np.uint8(255), alpha)


def _bounds(region: Pixels) -> tuple[slice, slice] | None:
    """The rows and columns of the region's bounding box, or None when the region is empty."""
    rows = np.flatnonzero(region.any(axis=1))
    columns = np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)


def _edit_region(base: Picture, region: Pixels, steps: list[Step]) -> Picture:
    box = _bounds(region)
    if box is None:
        return base  # nothing marked for editing
    box_height, box_width = box[0].stop - box[0].start, box[1].stop - box[1].start
    rgb = inpaint(base.rgb, region)
    for step in steps:
        if step.kind == "tone":
            rgb = step.apply(rgb)
        elif step.kind == "geometry":
            moved = step.apply(rgb[box])
            if moved.shape != (box_height, box_width, 3):  # a quarter turn of a non-square box
                moved = u8(cv2.resize(moved, (box_width, box_height), interpolation=cv2.INTER_AREA))
            rgb = rgb.copy()
            rgb[box] = moved
    alpha = None if base.alpha is None else np.where(region > 0, np.uint8(255), base.alpha)
    return Picture(rgb, alpha)  # the filled region is opaque, even where the source was transparent


def inpaint(rgb: Pixels, hole: Pixels) -> Pixels:
    """Fill the non-zero pixels of `hole` from their surroundings (Telea's fast marching method).

    Large holes are filled coarse-to-fine: Telea on a downscaled copy, upscaled into the hole, then a
    full-resolution pass over the band along the hole's edge to blend the seam. That keeps a 1024×1024
    image with a huge hole well under a second and avoids the long streaks Telea draws across wide holes.
    """
    area = int(np.count_nonzero(hole))
    if area == 0 or area == hole.size:
        return rgb.copy()  # nothing to fill, or nothing to fill it from
    if area <= _COARSE_HOLE:
        return u8(cv2.inpaint(rgb, hole, INPAINT_RADIUS, cv2.INPAINT_TELEA))
    height, width = hole.shape
    factor = math.sqrt(area / _COARSE_HOLE)
    small_size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small_rgb = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    # a small pixel is a hole if any pixel it covers is, so no hole colour leaks into the known ones
    small_hole = cv2.resize(hole.astype(np.float32), small_size, interpolation=cv2.INTER_AREA) > 0
    coarse = cv2.inpaint(small_rgb, small_hole.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
    upscaled = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    rough = np.where(hole[..., None] > 0, upscaled, rgb).astype(np.uint8)
    reach = 2 * math.ceil(factor) + INPAINT_RADIUS
    core = cv2.erode(hole, np.ones((2 * reach + 1, 2 * reach + 1), dtype=np.uint8))
    return u8(cv2.inpaint(rough, cv2.subtract(hole, core), INPAINT_RADIUS, cv2.INPAINT_TELEA))


def _confine(varied: Pixels, edited: Pixels, source: Pixels, region: Pixels) -> Pixels:
    """The source outside the region; inside, the edit with its variant jitter faded in over the first
    few pixels from the region's edge, so the jitter draws no seam around an inpainted fill."""
    out = source.copy()
    box = _bounds(region)
    if box is None:
        return out
    # padded by a pixel so the distance transform sees the unmarked pixels just outside the box
    padded = cv2.copyMakeBorder(region[box], 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    weight = np.clip(depth / _FEATHER, 0, 1)[..., None]
    blended = edited[box] + (varied[box].astype(np.float32) - edited[box]) * weight
    inside = region[box].astype(bool)
    out[box][inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)[inside]
    return out


def _output_alpha(
    edited: Picture, background: str | None, fmt: OutputFormat, *, may_key: bool
) -> Pixels | None:
    if background != "transparent" or fmt == "jpeg":
        return edited.alpha
    if edited.alpha is not None and int(edited.alpha.min()) < 255:
        return edited.alpha
    if may_key:
        return key_background(edited.rgb)
    return np.full(edited.rgb.shape[:2], 255, dtype=np.uint8)


def key_background(rgb: Pixels) -> Pixels:
    """An alpha channel making the backdrop transparent: the pixels near the border's median colour that
    are connected to the border. Fully opaque when the border is not mostly one colour (a photograph)."""
    border = np.concatenate((rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]))
    reference = np.median(border, axis=0).astype(np.int16)
    near = (np.abs(rgb.astype(np.int16) - reference).max(axis=2) <= _KEY_TOLERANCE).astype(np.uint8)
    border_near = np.concatenate((near[0], near[-1], near[:, 0], near[:, -1]))
    if border_near.mean() < _KEY_BORDER_SHARE:
        return np.full(near.shape, 255, dtype=np.uint8)
    _count, labels = cv2.connectedComponents(near, connectivity=4)
    touching = np.unique(np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1])))
    backdrop = np.isin(labels, touching[touching != 0])
    return np.where(backdrop, np.uint8(0), np.uint8(255))


def _root_seed(seed: int | None, prompt: str) -> int:
    if seed is not None:
        return seed
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")


def _vary(rgb: Pixels, rng: np.random.Generator) -> Pixels:
    """A slight, visible variation: hue turned up to ±6°, contrast ±5 % and brightness ±5 levels.

    No grain: it would double the size of every PNG. The hue turn leaves grays gray, so a gray edit
    stays exactly gray."""
    gain = rng.uniform(0.95, 1.05)
    offset = rng.uniform(-5.0, 5.0)
    shift = int(rng.integers(-3, 4))  # OpenCV hue units are 2°
    if shift:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 180
        rgb = u8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    levels = np.arange(256, dtype=np.float64) * gain + offset
    return u8(cv2.LUT(rgb, np.clip(np.rint(levels), 0, 255).astype(np.uint8)))
