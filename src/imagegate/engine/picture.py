"""Pictures as the engine holds them: RGB pixels plus an optional alpha channel, and their encoded forms."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from imagegate.engine.filters import Pixels, u8

OutputFormat = Literal["png", "jpeg", "webp"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png", "jpeg", "webp")

_DEFAULT_QUALITY = 90
_DEFAULT_PNG_LEVEL = 3  # zlib level 6 takes ~3× as long for ~15 % less
_WIDE_GRAY = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_PIL_FORMAT: dict[OutputFormat, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True, slots=True)
class Picture:
    """`rgb` is H×W×3 uint8; `alpha` is H×W uint8 (255 = opaque), or None for an image without one."""

    rgb: Pixels
    alpha: Pixels | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def decode(data: bytes) -> Picture:
    """An encoded PNG/JPEG/WebP as a Picture, turned upright per its EXIF orientation."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in _WIDE_GRAY:  # 16-bit gray: keep the high byte (Pillow's convert would clip)
            image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8))
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        if not has_alpha:
            return Picture(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    return Picture(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))


def transparent_region(data: bytes, width: int, height: int) -> Pixels:
    """The mask's fully transparent pixels as a 0/1 array of the given size (resized, nearest, if the
    mask's own size differs). A mask without an alpha channel marks nothing."""
    with Image.open(io.BytesIO(data)) as image:
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        if not has_alpha:
            return np.zeros((height, width), dtype=np.uint8)
        alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., 3]
    region: Pixels = (alpha == 0).astype(np.uint8)
    if region.shape != (height, width):
        region = u8(cv2.resize(region, (width, height), interpolation=cv2.INTER_NEAREST))
    return region


def flatten(picture: Picture, backdrop: int = 255) -> Picture:
    """The picture composited over a plain backdrop (white by default), without alpha."""
    if picture.alpha is None:
        return picture
    weight = picture.alpha[..., None].astype(np.float32) / 255
    rgb = picture.rgb.astype(np.float32) * weight + backdrop * (1 - weight)
    return Picture(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def _resize(pixels: npt.NDArray[Any], width: int, height: int) -> npt.NDArray[Any]:
    shrinking = width <= pixels.shape[1] and height <= pixels.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(pixels, (width, height), interpolation=interpolation))


def cover(picture: Picture, width: int, height: int) -> Picture:
    """The picture scaled to cover exactly width×height, the overflow cropped evenly from both sides.

    Alpha is resized premultiplied, so transparent pixels do not bleed their colour into the edges.
    """
    if (picture.width, picture.height) == (width, height):
        return picture
    scale = max(width / picture.width, height / picture.height)
    crop_w = min(picture.width, max(1, round(width / scale)))
    crop_h = min(picture.height, max(1, round(height / scale)))
    x0 = (picture.width - crop_w) // 2
    y0 = (picture.height - crop_h) // 2
    rgb = picture.rgb[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if picture.alpha is None:
        return Picture(u8(_resize(rgb, width, height)))
    alpha = picture.alpha[y0 : y0 + crop_h, x0 : x0 + crop_w].astype(np.float32)
    premultiplied = np.dstack((rgb.astype(np.float32) * (alpha[..., None] / 255), alpha))
    resized = np.clip(_resize(premultiplied, width, height), 0, 255)
    new_alpha = resized[..., 3]
    safe = np.where(new_alpha > 0, new_alpha, 1)[..., None]
    new_rgb = np.where(new_alpha[..., None] > 0, resized[..., :3] * 255 / safe, 0)
    return Picture(np.clip(np.rint(new_rgb), 0, 255).astype(np.uint8), np.rint(new_alpha).astype(np.uint8))


def encode(picture: Picture, output_format: OutputFormat, compression: int | None) -> bytes:
    """Encode as PNG, JPEG or WebP. `compression` (0–100) is the quality for JPEG and WebP, and maps
    onto zlib levels 0–9 for PNG. JPEG cannot hold alpha, so it is flattened onto white first."""
    if output_format == "jpeg":
        picture = flatten(picture)
    pixels = picture.rgb if picture.alpha is None else np.dstack((picture.rgb, picture.alpha))
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if output_format == "png":
        level = _DEFAULT_PNG_LEVEL if compression is None else round(compression * 9 / 100)
        image.save(buffer, format="PNG", compress_level=level)
    else:
        quality = _DEFAULT_QUALITY if compression is None else compression
        image.save(buffer, format=_PIL_FORMAT[output_format], quality=max(1, quality))
    return buffer.getvalue()
