from __future__ import annotations

import numpy as np
import pytest

from imagegate.engine.collage import compose, row_counts
from imagegate.engine.picture import Picture


def solid(height: int, width: int, value: int) -> Picture:
    return Picture(np.full((height, width, 3), value, dtype=np.uint8))


@pytest.mark.parametrize(
    ("canvas", "aspects", "expected"),
    [
        ((100, 100), [1.0, 1.0], [2]),  # side by side
        ((100, 100), [3.0, 3.0], [1, 1]),  # wide images stack
        ((100, 100), [1.0] * 4, [2, 2]),
        ((100, 100), [1.0] * 3, [2, 1]),  # fullest rows first
        ((300, 100), [1.0] * 3, [3]),
    ],
)
def test_rows_follow_the_images_shapes(
    canvas: tuple[int, int], aspects: list[float], expected: list[int]
) -> None:
    assert row_counts(*canvas, aspects) == expected


def test_a_single_picture_is_its_own_composition() -> None:
    only = solid(10, 10, 7)
    assert compose([only]) is only


def test_pictures_fill_their_cells_in_order_on_the_first_ones_canvas() -> None:
    out = compose([solid(30, 40, 10), solid(30, 40, 20), solid(30, 40, 30)])
    assert out.rgb.shape == (30, 40, 3)
    assert out.alpha is None
    top, bottom = out.rgb[:15, :, 0], out.rgb[15:, :, 0]
    assert (top[:, :20] == 10).all() and (top[:, 20:] == 20).all()
    assert (bottom == 30).all()  # the last row's image spans the whole width


def test_the_composition_has_alpha_when_any_source_has() -> None:
    clear = Picture(np.zeros((20, 20, 3), dtype=np.uint8), np.zeros((20, 20), dtype=np.uint8))
    out = compose([solid(20, 20, 50), clear])
    assert out.alpha is not None
    assert (out.alpha[:, :10] == 255).all() and (out.alpha[:, 10:] == 0).all()
