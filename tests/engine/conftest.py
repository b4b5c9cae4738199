"""Test images for the engine: small, deterministic, with structure every operation can act on."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

Array = npt.NDArray[np.uint8]


def _scene(height: int = 48, width: int = 64) -> Array:
    """A colour gradient with a dark square and a light bar: edges, colour and no symmetry."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        (xs * 255 // (width - 1), ys * 255 // (height - 1), 255 - xs * 200 // (width - 1)), axis=2
    ).astype(np.uint8)
    rgb[height // 4 : height // 2, width // 5 : width // 2] = (20, 30, 40)
    rgb[height * 3 // 4 :, width * 2 // 3 :] = (230, 220, 90)
    return rgb


@pytest.fixture
def scene() -> Array:
    return _scene()


@pytest.fixture
def encode() -> Callable[..., bytes]:
    """Encode an H×W×3 or H×W×4 array as PNG (or `fmt`)."""

    def encode(pixels: Array, fmt: str = "PNG") -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt)
        return buffer.getvalue()

    return encode


@pytest.fixture
def decode() -> Callable[[bytes], Array]:
    """Decode to an array in the image's own mode (RGB, RGBA, ...)."""

    def decode(data: bytes) -> Array:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image).copy()

    return decode
