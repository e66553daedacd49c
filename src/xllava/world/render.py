"""Rendering a scene to a small RGB image with plain PIL drawing (no anti-aliasing, deterministic).

Layout: the image is a grid of cells of image_size/grid_size px (96/3 = 32 px = 2x2 ViT patches of
16 px). Each object is an icon centred in its cell; big icons fill ~85% of the cell, small ~50%.
The background colour encodes the time of day. Weather is drawn *under* the objects and kept thin
(a 2-px frame, 1-px rain lines, 2x2 snow dots) so it never hides or mimics an object.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from xllava.world.lexicon import COLOURS, KINDS, SIZES, TIMES
from xllava.world.scene import Scene, SceneObject

OUTLINE = (0, 0, 0)
_FRAME = {"sunny": (255, 225, 60), "cloudy": (140, 140, 140)}
_RAIN = (90, 110, 175)
_SNOW = (255, 255, 255)


def object_box(obj: SceneObject, image_size: int, grid_size: int = 3) -> tuple[int, int, int, int]:
    """The icon's bounding box (x, y, w, h) in pixels; also the Visual Genome box."""
    cell = image_size / grid_size
    side = max(3, round(cell * SIZES[obj.size].scale))
    x = round(obj.col * cell + (cell - side) / 2)
    y = round(obj.row * cell + (cell - side) / 2)
    return x, y, side, side


def _star(x: int, y: int, s: int) -> list[tuple[float, float]]:
    cx, cy, outer, inner = x + s / 2, y + s / 2 + s * 0.04, s / 2, s / 5
    points = []
    for i in range(10):
        r = outer if i % 2 == 0 else inner
        a = -math.pi / 2 + i * math.pi / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _draw_icon(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    x, y, s, _ = box
    x1, y1 = x + s - 1, y + s - 1
    kw = {"fill": fill, "outline": OUTLINE}
    if shape == "circle":
        draw.ellipse((x, y, x1, y1), **kw)
    elif shape == "square":
        draw.rectangle((x, y, x1, y1), **kw)
    elif shape == "tree":  # tall triangle crown on a narrow trunk
        trunk_w = max(2, s // 4)
        tx = x + (s - trunk_w) // 2
        draw.rectangle((tx, y + s * 3 // 4, tx + trunk_w - 1, y1), **kw)
        draw.polygon([(x + s / 2, y), (x1, y + s * 3 // 4), (x, y + s * 3 // 4)], **kw)
    elif shape == "house":  # wide body with a pitched roof
        roof_h = s * 2 // 5
        inset = max(1, s // 8)
        draw.rectangle((x + inset, y + roof_h, x1 - inset, y1), **kw)
        draw.polygon([(x + s / 2, y), (x1, y + roof_h), (x, y + roof_h)], **kw)
    elif shape == "star":
        draw.polygon(_star(x, y, s), **kw)
    elif shape == "diamond":
        draw.polygon([(x + s / 2, y), (x1, y + s / 2), (x + s / 2, y1), (x, y + s / 2)], **kw)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _draw_weather(draw: ImageDraw.ImageDraw, weather: str, size: int, seed: str) -> None:
    if weather in _FRAME:
        draw.rectangle((0, 0, size - 1, size - 1), outline=_FRAME[weather], width=2)
    elif weather == "rainy":
        for start in range(-size, size, 8):  # 1-px diagonal lines every 8 px
            draw.line((start, 0, start + size // 2, size - 1), fill=_RAIN, width=1)
    elif weather == "snowy":
        rng = random.Random(seed)  # seeded by the scene id: same dots on every render
        for _ in range(size * size // 150):
            px, py = rng.randrange(size - 1), rng.randrange(size - 1)
            draw.rectangle((px, py, px + 1, py + 1), fill=_SNOW)


def render(scene: Scene, image_size: int = 96, grid_size: int = 3) -> Image.Image:
    background = TIMES[scene.atmosphere.time_of_day].background
    image = Image.new("RGB", (image_size, image_size), background)
    draw = ImageDraw.Draw(image)
    _draw_weather(draw, scene.atmosphere.weather, image_size, scene.scene_id)
    for obj in scene.objects:
        box = object_box(obj, image_size, grid_size)
        _draw_icon(draw, KINDS[obj.kind].shape, box, COLOURS[obj.colour].rgb)
    return image
