"""Several source images combined into one: a grid collage on the first image's canvas."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imagegate.engine.picture import Picture, cover


def row_counts(width: int, height: int, aspects: Sequence[float]) -> list[int]:
    """How many images each row holds: the split into rows (fullest rows first) whose cells best match
    the images' own aspect ratios, fewer rows on a tie. Two images on a square canvas sit side by side."""
    total = len(aspects)
    best: list[int] = [total]
    best_score = math.inf
    for rows in range(1, total + 1):
        counts = [total // rows + (1 if row < total % rows else 0) for row in range(rows)]
        score = 0.0
        index = 0
        for count in counts:
            cell_aspect = (width / count) / (height / rows)
            for aspect in aspects[index : index + count]:
                score += abs(math.log(cell_aspect / aspect))
            index += count
        if score < best_score - 1e-9:
            best, best_score = counts, score
    return best


def compose(pictures: Sequence[Picture]) -> Picture:
    """One picture of the first one's size holding every source, row by row in order, each scaled to
    cover its cell (cropped, never stretched). The result has alpha when any source has alpha."""
    first = pictures[0]
    if len(pictures) == 1:
        return first
    width, height = first.width, first.height
    counts = row_counts(width, height, [picture.width / picture.height for picture in pictures])
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    with_alpha = any(picture.alpha is not None for picture in pictures)
    alpha = np.zeros((height, width), dtype=np.uint8) if with_alpha else None
    index = 0
    for row, count in enumerate(counts):
        top, bottom = round(row * height / len(counts)), round((row + 1) * height / len(counts))
        for column in range(count):
            left, right = round(column * width / count), round((column + 1) * width / count)
            picture = pictures[index]
            index += 1
            if right <= left or bottom <= top:
                continue  # a canvas too small to give this image a pixel
            cell = cover(picture, right - left, bottom - top)
            rgb[top:bottom, left:right] = cell.rgb
            if alpha is not None:
                alpha[top:bottom, left:right] = 255 if cell.alpha is None else cell.alpha
    return Picture(rgb, alpha)
