"""The pixel filters behind the prompt operations: pure functions on uint8 arrays, vectorised with OpenCV.

Colour filters take and return an H×W×3 RGB array of the same shape. The geometric ones (`rotate`,
`flip`) take any H×W or H×W×C array, so one call moves an image, its alpha channel or a mask alike.
Strengths are relative to the image size where that matters (blur radius), so a prompt means the same on
a thumbnail and on a 4K photo.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]

_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)
_EMBOSS = np.array([[-1, -1, 0], [-1, 0, 1], [0, 1, 1]], dtype=np.float32)
_LEVELS = np.arange(256, dtype=np.float64)  # the input of every lookup table
_DIRECT_SIGMA = 8.0  # larger blur radii run on a downscaled copy
_QUARTER_TURNS = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}


def u8(result: object) -> Pixels:
    """An OpenCV result as a typed uint8 array (no copy when it already is one)."""
    return np.asarray(result, dtype=np.uint8)


def scale_of(pixels: Pixels) -> float:
    """The blur radius, in pixels, that reads as 'a normal blur' at this image size."""
    height, width = pixels.shape[:2]
    return max(1.5, int(min(height, width)) / 200)


def _lut(values: npt.NDArray[np.float64]) -> Pixels:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _gray3(gray: Pixels) -> Pixels:
    return u8(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))


def _gray(rgb: Pixels) -> Pixels:
    return u8(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def grayscale(rgb: Pixels) -> Pixels:
    return _gray3(_gray(rgb))


def sepia(rgb: Pixels) -> Pixels:
    return u8(cv2.transform(rgb, _SEPIA))


def invert(rgb: Pixels) -> Pixels:
    return u8(cv2.bitwise_not(rgb))


def blur(rgb: Pixels, sigma: float) -> Pixels:
    """Gaussian blur. Past a radius of 8 px it blurs a downscaled copy and scales it back up, which
    looks the same and keeps 'blur 500' as fast as 'blur 8'; the radius is capped at a quarter side."""
    height, width = rgb.shape[:2]
    sigma = min(max(0.3, sigma), max(1.0, min(height, width) / 4))
    if sigma <= _DIRECT_SIGMA:
        return u8(cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma))
    factor = sigma / _DIRECT_SIGMA
    small_size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    soft = cv2.GaussianBlur(small, (0, 0), sigmaX=_DIRECT_SIGMA)
    return u8(cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR))


def sharpen(rgb: Pixels, amount: float) -> Pixels:
    """Unsharp mask: add back `amount` times the detail a small blur removes."""
    soft = cv2.GaussianBlur(rgb, (0, 0), sigmaX=max(1.0, scale_of(rgb) / 2))
    return u8(cv2.addWeighted(rgb, 1 + amount, soft, -amount, 0))


def lighten(rgb: Pixels, amount: float) -> Pixels:
    """Move every level `amount` (0–1) of the way towards white."""
    return u8(cv2.LUT(rgb, _lut(_LEVELS + (255 - _LEVELS) * amount)))


def darken(rgb: Pixels, amount: float) -> Pixels:
    """Move every level `amount` (0–1) of the way towards black."""
    return u8(cv2.LUT(rgb, _lut(_LEVELS * (1 - amount))))


def contrast(rgb: Pixels, factor: float) -> Pixels:
    """Stretch (factor > 1) or squeeze (< 1) levels around the mean brightness."""
    mean = float(_gray(rgb).mean())
    return u8(cv2.LUT(rgb, _lut((_LEVELS - mean) * factor + mean)))


def saturation(rgb: Pixels, factor: float) -> Pixels:
    """Push colours away from (factor > 1) or towards (< 1) their gray value."""
    return u8(cv2.addWeighted(rgb, factor, grayscale(rgb), 1 - factor, 0))


def posterize(rgb: Pixels, levels: int) -> Pixels:
    """Quantise each channel to `levels` evenly spaced values (2–64)."""
    steps = min(64, max(2, levels)) - 1
    return u8(cv2.LUT(rgb, _lut(np.rint(_LEVELS * steps / 255) * 255 / steps)))


def emboss(rgb: Pixels) -> Pixels:
    """Gray relief: flat areas become mid-gray, edges lit from the top left."""
    return _gray3(u8(cv2.filter2D(_gray(rgb), -1, _EMBOSS, delta=128)))


def edges(rgb: Pixels) -> Pixels:
    """White Canny edges on black; thresholds follow the image's own Otsu split."""
    gray = _gray(rgb)
    otsu, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    high = max(30.0, float(otsu))
    smooth = cv2.GaussianBlur(gray, (0, 0), sigmaX=1.0)
    return _gray3(u8(cv2.Canny(smooth, high / 2, high)))


def pencil_sketch(rgb: Pixels) -> Pixels:
    """Gray pencil drawing by colour dodge of the image with its blurred negative."""
    gray = _gray(rgb)
    soft = cv2.GaussianBlur(cv2.bitwise_not(gray), (0, 0), sigmaX=2 * scale_of(rgb))
    return _gray3(u8(cv2.divide(gray, cv2.bitwise_not(soft), scale=256)))


def cartoon(rgb: Pixels) -> Pixels:
    """Flat, smoothed colour regions with dark ink lines along the edges."""
    flat = posterize(u8(cv2.bilateralFilter(rgb, 9, 75, 75)), 6)
    gray = cv2.medianBlur(_gray(rgb), 7)
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return u8(cv2.bitwise_and(flat, flat, mask=ink))


def rotate(pixels: Pixels, degrees: float) -> Pixels:
    """Turn clockwise by `degrees`. Quarter turns are exact and swap the sides of non-square images;
    other angles turn about the centre on the same canvas, corners filled by reflection."""
    turns, rest = divmod(degrees % 360, 90)
    if rest == 0:
        code = _QUARTER_TURNS.get(int(turns))
        return pixels.copy() if code is None else u8(cv2.rotate(pixels, code))
    height, width = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), -degrees, 1.0)
    return u8(
        cv2.warpAffine(
            pixels, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    )


def flip(pixels: Pixels, *, vertical: bool) -> Pixels:
    """Mirror left↔right, or top↔bottom when `vertical`."""
    return u8(cv2.flip(pixels, 0 if vertical else 1))
