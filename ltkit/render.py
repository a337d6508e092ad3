"""The built-in world's renderer: how each shape family, colour and texture is drawn, one image at a time.

`render` draws one image of a class with its own nuisance factors from the RNG it is given:
position, scale, rotation, aspect, hue jitter within the colour's family, texture phase and
frequency, background gradient and clutter, an occluder and pixel noise; `render_junk` and
`jitter_copy` make the pool's junk items and near-duplicates. It lives apart from `ltkit.world`,
which decides what exists and what to draw (classes, target splits, the open pool, the cache):
nothing here knows about splits or seeds, so a pilot or a test can draw any class alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for annotations only: world.py imports this module
    from ltkit.world import ClassSpec


# 12 named hues around the colour wheel (degrees); `world.all_classes` gives a family neighbouring ones.
COLOURS: dict[str, float] = {
    "red": 0, "orange": 30, "yellow": 60, "lime": 90, "green": 120, "teal": 150,
    "cyan": 180, "azure": 210, "blue": 240, "violet": 270, "magenta": 300, "pink": 330,
}


# ---------------------------------------------------------------------------------------------
# shapes


def _regular(n: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    """Vertices (n, 2) of a regular n-gon of radius r, the first at angle `phase`."""
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _star(n: int, r_in: float) -> np.ndarray:
    """Vertices (2n, 2) of an n-pointed star of outer radius 1 and inner radius r_in."""
    a = -np.pi / 2 + np.pi * np.arange(2 * n) / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, r_in)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-.8, -.8], [.8, -.8], [.8, .8], [-.8, .8]]),
    "diamond": np.array([[0, -1], [1, 0], [0, 1], [-1, 0]]),
    "triangle": _regular(3, 1.05, -np.pi / 2) + [0, .2],
    "pentagon": _regular(5),
    "hexagon": _regular(6, 1.0, 0),
    "octagon": _regular(8, 1.0, np.pi / 8),
    "trapezoid": np.array([[-.5, -.6], [.5, -.6], [1, .6], [-1, .6]]),
    "parallelogram": np.array([[-.5, -.55], [1, -.55], [.5, .55], [-1, .55]]),
    "kite": np.array([[0, -1], [.6, -.3], [0, 1], [-.6, -.3]]),
    "star": _star(5, .42),
    "sparkle": _star(4, .3),
    "arrow": np.array([[-1, -.25], [.2, -.25], [.2, -.65], [1, 0], [.2, .65], [.2, .25], [-1, .25]]),
    "chevron": np.array([[-.9, -.8], [-.3, -.8], [.6, 0], [-.3, .8], [-.9, .8], [0, 0]]),
    "hourglass": np.array([[-.8, -.9], [.8, -.9], [.1, 0], [.8, .9], [-.8, .9], [-.1, 0]]),
    "bolt": np.array([[.2, -1], [-.6, .15], [-.05, .15], [-.25, 1], [.6, -.2], [.05, -.2]]),
    "tee": np.array([[-.9, -.9], [.9, -.9], [.9, -.45], [.25, -.45], [.25, .95], [-.25, .95], [-.25, -.45],
                     [-.9, -.45]]),
}


def _in_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd crossing test of many points against one polygon, vectorised over edges."""
    x1, y1 = poly[:, 0:1], poly[:, 1:2]
    x2, y2 = np.roll(poly, -1, 0)[:, 0:1], np.roll(poly, -1, 0)[:, 1:2]
    px, py = x.ravel()[None], y.ravel()[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = ((y1 > py) != (y2 > py)) & (px < (x2 - x1) * (py - y1) / (y2 - y1) + x1)
    return (cross.sum(0) % 2 == 1).reshape(x.shape)


def shape_mask(family: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of a family's canonical shape (about [-1, 1]^2) at points (x, y)."""
    r2 = x * x + y * y
    if family in POLYGONS:
        return _in_polygon(x, y, POLYGONS[family])
    if family == "circle":
        return r2 < 0.85
    if family == "ring":
        return (r2 < 1.0) & (r2 > 0.36)
    if family == "ellipse":
        return (x / 1.0) ** 2 + (y / 0.55) ** 2 < 1
    if family == "crescent":
        return (r2 < 1.0) & ((x - 0.45) ** 2 + (y + 0.1) ** 2 > 0.6)
    if family == "semicircle":
        return (r2 < 1.0) & (y < 0.2)
    if family == "heart":
        u, v = 1.25 * x, -1.25 * y + 0.2
        return (u * u + v * v - 1) ** 3 - u * u * v ** 3 < 0
    if family == "teardrop":
        return (x * x + (y - 0.3) ** 2 < 0.42) | ((np.abs(x) < 0.65 * (y + 1.0)) & (y < 0.3) & (y > -1))
    if family == "hexagram":
        return _in_polygon(x, y, _regular(3, 1.0, -np.pi / 2)) | _in_polygon(x, y, _regular(3, 1.0, np.pi / 2))
    if family == "cross":
        return ((np.abs(x) < .28) & (np.abs(y) < .95)) | ((np.abs(y) < .28) & (np.abs(x) < .95))
    if family == "saltire":
        u, v = (x + y) / np.sqrt(2), (x - y) / np.sqrt(2)
        return ((np.abs(u) < .25) & (np.abs(v) < 1.0)) | ((np.abs(v) < .25) & (np.abs(u) < 1.0))
    if family == "asterisk":
        m = np.zeros_like(x, dtype=bool)
        for a in (0, np.pi / 3, 2 * np.pi / 3):
            u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
            m |= (np.abs(u) < .95) & (np.abs(v) < .18)
        return m
    if family == "frame":
        return (np.maximum(np.abs(x), np.abs(y)) < .85) & (np.maximum(np.abs(x), np.abs(y)) > .5)
    raise KeyError(f"unknown shape family {family!r}")


# ---------------------------------------------------------------------------------------------
# textures, colours, backgrounds


def _texture(texture: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness multiplier in (0, 1] that draws a texture in shape-local coordinates."""
    freq, phase = rng.uniform(5, 8), rng.uniform(0, 2 * np.pi)
    if texture == "plain":
        return 1.0 - 0.08 * (u + 1)
    if texture == "striped":
        return np.where(np.sin(freq * (u + 0.4 * v) + phase) > 0, 1.0, 0.45)
    if texture == "dotted":
        return np.where(np.sin(freq * u + phase) * np.sin(freq * v + phase) > 0.35, 0.4, 1.0)
    if texture == "checkered":
        return np.where(np.sin(0.7 * freq * u + phase) * np.sin(0.7 * freq * v) > 0, 1.0, 0.5)
    if texture == "shaded":
        return 0.3 + 0.7 * np.clip((v + 1) / 2, 0, 1)
    if texture == "wavy":
        return np.where(np.sin(freq * v + 2.0 * np.sin(3 * u) + phase) > 0, 1.0, 0.45)
    raise KeyError(f"unknown texture {texture!r}")


def _hsv(h: float, s: float, v: float = 1.0) -> np.ndarray:
    """One HSV colour (h in [0, 1)) as RGB in [0, 1]."""
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _background(n: int, rng: np.random.Generator) -> np.ndarray:
    """Desaturated colour gradient with clutter strokes and blobs."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    base = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.25))
    v = rng.uniform(0.25, 0.85) + rng.uniform(-0.2, 0.2) * (xx if rng.random() < .5 else yy)
    img = np.clip(v, 0, 1)[..., None] * base  # with hue and saturation fixed, RGB scales with value
    for _ in range(rng.integers(1, 5)):  # clutter: blobs and lines of dull colour
        col = _hsv(rng.uniform(), rng.uniform(0, .35), rng.uniform(.2, .9))
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(.04, .15)
        if rng.random() < 0.5:
            m = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            a = rng.uniform(0, np.pi)
            m = np.abs((xx - cx) * np.sin(a) - (yy - cy) * np.cos(a)) < r / 4
        img[m] = col
    return img


# ---------------------------------------------------------------------------------------------
# images


def render(spec: ClassSpec, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One image of a class, uint8 (size, size, 3); drawn at 2x and averaged down for anti-aliasing."""
    n = 2 * size
    img = _background(n, rng)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1
    scale = rng.uniform(0.45, 0.8)
    rot = np.deg2rad(rng.uniform(-20, 20))
    aspect = rng.uniform(0.85, 1.15)
    cx, cy = rng.uniform(-1, 1, 2) * (0.95 - scale)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / (scale * aspect)
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / (scale / aspect)
    mask = shape_mask(spec.family, u, v)
    hue = (COLOURS[spec.colour] + rng.uniform(-8, 8)) / 360 % 1.0
    sat, val = rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    shade = _texture(spec.texture, u, v, rng)
    fg = np.clip(val * shade, 0, 1)[..., None] * _hsv(hue, sat)
    img[mask] = np.broadcast_to(fg, img.shape)[mask]
    if rng.random() < 0.3:  # occluder: a dull rectangle over part of the image
        x0, y0 = rng.integers(0, n, 2)
        w, h = rng.integers(n // 6, n // 2.5, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0.1, 0.9)
    img = img.reshape(size, 2, size, 2, 3).mean((1, 3))
    img = img * 255 + rng.normal(0, rng.uniform(0, 12), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_junk(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """An image with no shape: clutter only, or coloured noise."""
    if rng.random() < 0.5:
        img = _background(size, rng) * 255
    else:
        img = rng.uniform(0, 255, (size // 4, size // 4, 3)).repeat(4, 0).repeat(4, 1)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def jitter_copy(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-duplicate: shifted by up to 2 px, maybe mirrored, slightly re-noised."""
    out = np.roll(img, tuple(rng.integers(-2, 3, 2)), (0, 1)).astype(float)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out + rng.normal(0, 4, out.shape), 0, 255).astype(np.uint8)
