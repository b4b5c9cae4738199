"""The drawing behind the built-in `local-draw` model: a deterministic picture made from the prompt.

No model and no network, so no understanding of the prompt either: its hash (or the `seed`) picks a
two-colour gradient and a handful of circles, rectangles and triangles, and the prompt itself is set on a
card in the middle. Colour words in the prompt (red, blue, gold, …) tint the palette. The same prompt,
seed and size always give the same picture; variant i of n differs in layout and colours.

A picture is built in three layers (gradient, shapes, card), so a stream can show it taking shape:
`draw_layers` gives each stage, the last being the finished picture.
"""

from __future__ import annotations

import hashlib
import textwrap

import cv2
import numpy as np

from imagegate.engine.picture import OutputFormat, Picture, encode

DEFAULT_SIZE = (1024, 1024)
LAYERS = 3  # gradient, shapes, card
_COLOURS = {
    "red": (220, 50, 47), "orange": (245, 140, 30), "yellow": (240, 210, 60), "gold": (212, 175, 55),
    "green": (60, 160, 80), "teal": (40, 150, 150), "blue": (50, 100, 210), "navy": (25, 40, 110),
    "purple": (130, 70, 180), "pink": (235, 120, 170), "brown": (130, 85, 50), "black": (25, 25, 30),
    "white": (245, 245, 245), "gray": (130, 130, 135), "grey": (130, 130, 135),
}
_FONT = cv2.FONT_HERSHEY_DUPLEX


def draw_layers(prompt: str, *, variant: int = 0, size: tuple[int, int] | None = None,
                seed: int | None = None) -> list[Picture]:
    """The picture for (prompt, seed, variant) at each of its LAYERS stages, the last one finished."""
    width, height = size or DEFAULT_SIZE
    rng = np.random.default_rng((_root(prompt, seed) + variant) % 2**64)
    palette = _palette(prompt, rng)
    canvas = _gradient(width, height, palette[0], palette[1], rng)
    stages = [canvas.copy()]
    _shapes(canvas, palette[2:], rng)
    stages.append(canvas.copy())
    _card(canvas, prompt)
    stages.append(canvas)
    return [Picture(stage) for stage in stages]


def draw_images(prompt: str, *, n: int = 1, size: tuple[int, int] | None = None, output_format: OutputFormat = "png",
                output_compression: int | None = None, seed: int | None = None,
                background: str | None = None) -> list[bytes]:
    """n finished pictures, encoded."""
    return [encode(finish(draw_layers(prompt, variant=i, size=size, seed=seed), background), output_format,
                   output_compression) for i in range(n)]


def finish(layers: list[Picture], background: str | None) -> Picture:
    """The last layer; with `background="transparent"` the gradient left showing is made transparent (PNG
    and WebP keep it; JPEG flattens it)."""
    picture = layers[-1]
    if background != "transparent":
        return picture
    alpha = np.where(np.all(picture.rgb == layers[0].rgb, axis=2), 0, 255).astype(np.uint8)
    return Picture(picture.rgb, alpha)


def _root(prompt: str, seed: int | None) -> int:
    if seed is not None:
        return seed
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")


def _palette(prompt: str, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    named = [_COLOURS[word] for word in prompt.lower().replace(",", " ").split() if word in _COLOURS]
    colours = [tuple(int(c) for c in rng.integers(30, 226, 3)) for _ in range(6)]
    for i, colour in enumerate(named[:6]):
        colours[(i + 2) % 6] = colour  # named colours go to the shapes first, then the gradient
    return colours  # type: ignore[return-value]


def _gradient(width: int, height: int, start: tuple[int, int, int], end: tuple[int, int, int],
              rng: np.random.Generator) -> np.ndarray:
    """A diagonal blend from `start` to `end`, its angle drawn from `rng`."""
    angle = rng.uniform(0, np.pi / 2)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs / max(width - 1, 1)) * np.cos(angle) + (ys / max(height - 1, 1)) * np.sin(angle)
    t /= max(float(t.max()), 1e-6)
    blend = np.asarray(start, np.float32) * (1 - t[..., None]) + np.asarray(end, np.float32) * t[..., None]
    gradient: np.ndarray = np.rint(blend).astype(np.uint8)
    return gradient


def _shapes(canvas: np.ndarray, colours: list[tuple[int, int, int]], rng: np.random.Generator) -> None:
    height, width = canvas.shape[:2]
    unit = max(2, min(width, height) // 6)
    for i in range(int(rng.integers(4, 9))):
        colour = tuple(int(c) for c in colours[i % len(colours)])
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(unit // 2, unit * 2))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.circle(canvas, (cx, cy), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(canvas, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1, cv2.LINE_AA)
        else:
            points = np.array([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], np.int32)
            cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)


def _card(canvas: np.ndarray, prompt: str) -> None:
    """The prompt, wrapped, on a white card across the middle."""
    height, width = canvas.shape[:2]
    scale = max(0.3, min(width, height) / 900)
    thickness = max(1, round(scale * 1.5))
    (char_w, char_h), _ = cv2.getTextSize("M", _FONT, scale, thickness)
    columns = max(8, int(width * 0.8 / max(char_w, 1)))
    lines = textwrap.wrap(" ".join(prompt.split()), columns)[:6] or [""]
    line_h = int(char_h * 1.8)
    box_h = line_h * len(lines) + line_h
    top = max(0, (height - box_h) // 2)
    left, right = int(width * 0.08), int(width * 0.92)
    cv2.rectangle(canvas, (left, top), (right, min(height - 1, top + box_h)), (250, 250, 250), -1)
    for i, line in enumerate(lines):
        (line_w, _), _ = cv2.getTextSize(line, _FONT, scale, thickness)
        origin = ((width - line_w) // 2, top + line_h * (i + 1))
        cv2.putText(canvas, line, origin, _FONT, scale, (30, 30, 35), thickness, cv2.LINE_AA)
