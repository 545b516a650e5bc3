"""Render a planned :class:`Scene` with PIL ImageDraw (no fonts beyond PIL's bitmap font).

Every drawer takes ``(cv, e)``: the canvas ``cv`` (``cv.d`` its ``ImageDraw``, ``cv.rng`` the
seeded RNG, ``cv.px(fx, fy)`` fractions of the image to pixels, ``cv.unit(e)`` the pixel size of
one unit: image size / 128 x the element's scale) and the planned :class:`Element` ``e``.
Drawing is a pure function of the scene and ``rng`` (seeded by the caller): the same scene
and seed give identical pixels. Only PIL's built-in bitmap font is used, so text pixels do
not depend on the FreeType version installed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

from .district_drawing import DISTRICT_DRAWERS
from .scene import Element, Scene, jitter

__all__ = ["DRAWERS", "render"]

RGB = tuple[int, int, int]
_FONT = ImageFont.load_default_imagefont()


class _Canvas:
    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.image = Image.new("RGB", (size, size))
        self.d = ImageDraw.Draw(self.image)
        self.rng = rng

    def px(self, fx: float, fy: float) -> tuple[int, int]:
        return round(fx * self.size), round(fy * self.size)

    def unit(self, e: Element) -> float:
        return self.size / 128 * e.scale


def _shade(c: RGB, f: float) -> RGB:
    return tuple(max(0, min(255, round(v * f))) for v in c)  # type: ignore[return-value]


# ---------------------------------------------------------------- background
def _sky(cv: _Canvas, scene: Scene) -> None:
    bottom = max(1, round(scene.horizon * cv.size))
    for y in range(bottom):
        t = y / max(1, bottom - 1)
        cv.d.line([(0, y), (cv.size, y)], fill=tuple(round(c + (255 - c) * 0.35 * t) for c in scene.sky))


def _ground(cv: _Canvas, scene: Scene) -> None:
    top = round(scene.horizon * cv.size)
    cv.d.rectangle([0, top, cv.size, cv.size], fill=scene.ground_rgb)
    for _ in range(cv.size // 2):  # texture specks
        x, y = cv.rng.randrange(cv.size), cv.rng.randrange(top, cv.size) if top < cv.size else 0
        cv.d.point((x, y), fill=jitter(cv.rng, scene.ground_rgb, 25))
    if scene.ground == "grass" and scene.horizon == 0.0:  # close-up blades
        for _ in range(cv.size):
            x, y = cv.rng.randrange(cv.size), cv.rng.randrange(cv.size)
            cv.d.line([(x, y), (x + cv.rng.randint(-2, 2), y - cv.rng.randint(3, 7))], fill=_shade(scene.ground_rgb, 0.7))


def _sun(cv, e):
    x, y = cv.px(e.x, e.y); r = 7 * cv.unit(e)
    cv.d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 225, 90))


def _cloud(cv, e):
    x, y = cv.px(e.x, e.y); u = cv.unit(e)
    for dx, dy, r in ((-6, 1, 5), (0, -2, 7), (7, 1, 5)):
        cv.d.ellipse([x + dx * u - r * u, y + dy * u - r * u * 0.7, x + dx * u + r * u, y + dy * u + r * u * 0.7], fill=(245, 245, 248))


def _bird(cv, e):
    x, y = cv.px(e.x, e.y); u = cv.unit(e)
    cv.d.line([(x - 4 * u, y - 2 * u), (x, y), (x + 4 * u, y - 2 * u)], fill=(30, 30, 30), width=1)


def _aurora(cv, e):
    w = cv.size
    for band in range(3):
        pts = [(x, (0.12 + 0.08 * band) * w + 5 * math.sin(x / w * 6 + band)) for x in range(0, w + 1, 4)]
        cv.d.line(pts, fill=_shade(e.color, 1 - 0.2 * band), width=max(1, round(w / 40)))


def _mountain(cv, e):
    hy = e.y * cv.size; u = cv.unit(e)
    for i in range(3):
        cx = (e.x + (i - 1) * 0.3) * cv.size; hh = (22 + 8 * ((i + 1) % 2)) * u; ww = 30 * u
        cv.d.polygon([(cx - ww, hy), (cx, hy - hh), (cx + ww, hy)], fill=_shade(e.color, 0.9 + 0.1 * i))
        cv.d.polygon([(cx - ww * 0.25, hy - hh * 0.75), (cx, hy - hh), (cx + ww * 0.25, hy - hh * 0.75)], fill=(245, 245, 250))


def _dune(cv, e):
    hy = e.y * cv.size; u = cv.unit(e)
    for i in range(3):
        cx = (e.x + (i - 1) * 0.35) * cv.size
        cv.d.pieslice([cx - 35 * u, hy - 12 * u, cx + 35 * u, hy + 12 * u], 180, 360, fill=_shade(e.color, 0.92 + 0.06 * i))


def _hills(cv, e):
    hy = e.y * cv.size; u = cv.unit(e)
    for i in range(4):
        cx = (i / 3) * cv.size
        cv.d.pieslice([cx - 30 * u, hy - 18 * u, cx + 30 * u, hy + 18 * u], 180, 360, fill=_shade(e.color, 0.9 + 0.05 * i))


def _water(cv, e):
    top = round(e.y * cv.size); bottom = top + round(10 * cv.unit(e))
    cv.d.rectangle([0, top, cv.size, bottom], fill=e.color)
    for _ in range(6):
        x = cv.rng.randrange(cv.size); y = cv.rng.randrange(top, bottom + 1)
        cv.d.line([(x, y), (x + 5, y)], fill=_shade(e.color, 1.3))


# ---------------------------------------------------------------- traffic
def _road(cv, e):
    s = cv.size; top = _horizon_px(cv)
    cv.d.polygon([(0.2 * s, s), (0.47 * s, top), (0.53 * s, top), (0.8 * s, s)], fill=e.color)
    for i in range(5):  # dashed centre line
        y0 = top + (s - top) * (i / 5) ** 1.3; y1 = top + (s - top) * ((i + 0.5) / 5) ** 1.3
        cv.d.line([(s / 2, y0), (s / 2, y1)], fill=(235, 235, 200), width=max(1, round((y1 - top) / 25)))


def _car(cv, e):
    s = cv.size; u = cv.unit(e)
    side = -1 if cv.drive == "left" else 1
    x = s * (0.5 + side * 0.11); y = e.y * s
    w, h = 16 * u, 9 * u
    cv.d.rectangle([x - w / 2, y - h, x + w / 2, y], fill=e.color)
    cv.d.rectangle([x - w / 2 + 2 * u, y - h - 5 * u, x + w / 2 - 2 * u, y - h], fill=_shade(e.color, 0.8))
    cv.d.rectangle([x - w / 2 + 3 * u, y - h - 4 * u, x + w / 2 - 3 * u, y - h - 1 * u], fill=(150, 190, 210))
    for dx in (-1, 1):
        cv.d.rectangle([x + dx * (w / 2 - 3 * u) - 1.5 * u, y - h + 2 * u, x + dx * (w / 2 - 3 * u) + 1.5 * u, y - h + 4 * u], fill=(230, 20, 20))
        cv.d.rectangle([x + dx * (w / 2 - 3 * u) - 2 * u, y, x + dx * (w / 2 - 3 * u) + 2 * u, y + 2 * u], fill=(20, 20, 20))


def _tram(cv, e):
    s = cv.size; u = cv.unit(e); x = e.x * s; y = e.y * s
    cv.d.rectangle([x - 26 * u, y - 12 * u, x + 26 * u, y], fill=(60, 140, 70))
    cv.d.rectangle([x - 26 * u, y - 5 * u, x + 26 * u, y - 3 * u], fill=(240, 220, 120))
    for i in range(6):
        wx = x - 23 * u + i * 8 * u
        cv.d.rectangle([wx, y - 10 * u, wx + 5 * u, y - 6 * u], fill=(190, 220, 235))
    cv.d.line([(x, y - 12 * u), (x + 6 * u, y - 20 * u)], fill=(30, 30, 30))


# ---------------------------------------------------------------- buildings
def _windows(cv, x0, y0, x1, y1, rows, cols, color=(60, 80, 100)):
    w = (x1 - x0) / (2 * cols + 1); h = (y1 - y0) / (2 * rows + 1)
    for r in range(rows):
        for c in range(cols):
            wx = x0 + (2 * c + 1) * w; wy = y0 + (2 * r + 1) * h
            cv.d.rectangle([wx, wy, wx + w, wy + h], fill=color)


def _box(cv, e, w, h):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    return x - w * u / 2, y - h * u, x + w * u / 2, y, u


def _mansard(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 24, 20)
    cv.d.rectangle([x0, y0, x1, y1], fill=e.color)
    cv.d.polygon([(x0 - u, y0), (x0 + 3 * u, y0 - 7 * u), (x1 - 3 * u, y0 - 7 * u), (x1 + u, y0)], fill=(90, 100, 120))
    _windows(cv, x0, y0, x1, y1, 3, 4)


def _pagoda(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 14, 28)
    cx = (x0 + x1) / 2
    cv.d.rectangle([cx - 5 * u, y0, cx + 5 * u, y1], fill=e.color)
    for i in range(3):
        ty = y1 - (8 + 9 * i) * u; hw = (13 - 3 * i) * u
        cv.d.polygon([(cx - hw - 2 * u, ty - 2 * u), (cx - hw, ty), (cx + hw, ty), (cx + hw + 2 * u, ty - 2 * u),
                      (cx + hw * 0.6, ty - 4 * u), (cx - hw * 0.6, ty - 4 * u)], fill=(50, 50, 60))
    cv.d.line([(cx, y0), (cx, y0 - 5 * u)], fill=(200, 170, 60), width=max(1, round(u)))


def _colorful(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 26, 20)
    colors = [(240, 200, 40), (60, 180, 200), (230, 90, 120), (120, 200, 90), (240, 140, 50)]
    for r in range(3):
        for c in range(3 - r):
            bx = x0 + (c + r / 2) * 8 * u; by = y1 - (r + 1) * 7 * u
            col = colors[(r * 3 + c + cv.rng.randrange(5)) % 5]
            cv.d.rectangle([bx, by, bx + 7 * u, by + 6.5 * u], fill=col)
            cv.d.rectangle([bx + 2 * u, by + 2 * u, bx + 4 * u, by + 4 * u], fill=(40, 40, 50))


def _skyscraper(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 12, 44)
    cv.d.rectangle([x0, y0, x1, y1], fill=e.color)
    _windows(cv, x0, y0, x1, y1, 10, 3, (200, 220, 240))


def _flat_roof(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 22, 13)
    cv.d.rectangle([x0, y0, x1, y1], fill=e.color)
    cv.d.rectangle([x0 - u, y0 - 1.5 * u, x1 + u, y0], fill=_shade(e.color, 0.85))
    _windows(cv, x0, y0, x1, y1, 2, 3, (70, 60, 50))


def _onion(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 12, 22)
    cx = (x0 + x1) / 2
    cv.d.rectangle([x0, y0 + 8 * u, x1, y1], fill=e.color)
    cv.d.ellipse([cx - 7 * u, y0, cx + 7 * u, y0 + 11 * u], fill=(210, 170, 40))
    cv.d.polygon([(cx - 3 * u, y0 + 2 * u), (cx, y0 - 5 * u), (cx + 3 * u, y0 + 2 * u)], fill=(210, 170, 40))
    cv.d.line([(cx, y0 - 5 * u), (cx, y0 - 9 * u)], fill=(60, 60, 60))
    cv.d.line([(cx - 2 * u, y0 - 7.5 * u), (cx + 2 * u, y0 - 7.5 * u)], fill=(60, 60, 60))


def _bungalow(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 24, 10)
    cv.d.rectangle([x0, y0, x1, y1], fill=e.color)
    cv.d.polygon([(x0 - 2 * u, y0), ((x0 + x1) / 2, y0 - 7 * u), (x1 + 2 * u, y0)], fill=(160, 165, 170))
    for i in range(1, 8):  # corrugation
        lx = x0 - 2 * u + i * (x1 - x0 + 4 * u) / 8
        cv.d.line([(lx, y0), ((x0 + x1) / 2 + (lx - (x0 + x1) / 2) * 0.2, y0 - 6 * u)], fill=(130, 135, 140))
    cv.d.rectangle([x0 + 3 * u, y0 + 3 * u, x0 + 8 * u, y0 + 7 * u], fill=(70, 80, 90))


def _temple_spire(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 16, 30)
    cx = (x0 + x1) / 2
    cv.d.rectangle([x0, y1 - 9 * u, x1, y1], fill=e.color)
    pts = [(cx - 7 * u, y1 - 9 * u)] + [(cx - 7 * u * math.cos(t * math.pi / 2 * 0.95), y1 - 9 * u - 19 * u * math.sin(t * math.pi / 2))
                                        for t in (0.2, 0.4, 0.6, 0.8, 1.0)]
    pts += [(2 * cx - px, py) for px, py in reversed(pts)]
    cv.d.polygon(pts, fill=_shade(e.color, 0.9))
    for i in range(1, 5):
        cv.d.line([(cx - 6 * u, y1 - 9 * u - 4 * i * u), (cx + 6 * u, y1 - 9 * u - 4 * i * u)], fill=_shade(e.color, 0.7))


def _wooden_house(cv, e):
    x0, y0, x1, y1, u = _box(cv, e, 18, 12)
    cv.d.rectangle([x0, y0, x1, y1], fill=e.color)
    cv.d.polygon([(x0 - u, y0), ((x0 + x1) / 2, y0 - 8 * u), (x1 + u, y0)], fill=(50, 40, 40))
    for wx in (x0 + 3 * u, x1 - 7 * u):
        cv.d.rectangle([wx, y0 + 3 * u, wx + 4 * u, y0 + 7 * u], fill=(245, 245, 245))


# ---------------------------------------------------------------- vegetation
def _trunk(cv, x, y, h, u, color=(110, 80, 50)):
    cv.d.line([(x, y), (x, y - h * u)], fill=color, width=max(1, round(2 * u)))


def _palm(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    top = (x + 3 * u, y - 24 * u)
    cv.d.line([(x, y), (x + 2 * u, y - 12 * u), top], fill=(130, 95, 60), width=max(1, round(2 * u)))
    for a in range(0, 360, 50):
        r = math.radians(a)
        cv.d.line([top, (top[0] + 10 * u * math.cos(r), top[1] + 5 * u * math.sin(r) + 3 * u)], fill=(40, 140, 50), width=max(1, round(1.5 * u)))


def _pine(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    _trunk(cv, x, y, 5, u)
    for i in range(3):
        by = y - (4 + 6 * i) * u; hw = (8 - 2 * i) * u
        cv.d.polygon([(x - hw, by), (x, by - 10 * u), (x + hw, by)], fill=(25, 80 + 10 * i, 45))


def _broadleaf(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    _trunk(cv, x, y, 10, u)
    cv.d.ellipse([x - 8 * u, y - 24 * u, x + 8 * u, y - 8 * u], fill=(60, 140, 55))


def _cactus(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; g = (50, 130, 70)
    cv.d.rounded_rectangle([x - 2.5 * u, y - 20 * u, x + 2.5 * u, y], radius=2 * u, fill=g)
    cv.d.rounded_rectangle([x - 8 * u, y - 15 * u, x - 5 * u, y - 8 * u], radius=u, fill=g)
    cv.d.rectangle([x - 8 * u, y - 9 * u, x - 2 * u, y - 7 * u], fill=g)
    cv.d.rounded_rectangle([x + 5 * u, y - 17 * u, x + 8 * u, y - 10 * u], radius=u, fill=g)
    cv.d.rectangle([x + 2 * u, y - 11 * u, x + 8 * u, y - 9 * u], fill=g)


def _eucalyptus(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    _trunk(cv, x, y, 22, u, (225, 220, 205))
    for dx, dy in ((-5, -22), (4, -25), (0, -18), (6, -17)):
        cv.d.ellipse([x + (dx - 4) * u, y + (dy - 3) * u, x + (dx + 4) * u, y + (dy + 3) * u], fill=(130, 160, 130))


# ---------------------------------------------------------------- writing
def _glyphs(cv, script, x0, y0, x1, y1):
    rng, d, ink = cv.rng, cv.d, (20, 20, 30)
    w, h = x1 - x0, y1 - y0
    if script == "japanese text":  # vertical column of box glyphs
        n = max(2, int(h // 6))
        for i in range(n):
            gy = y0 + 1 + i * h / n; gx = x0 + w / 2 - 2.5
            d.rectangle([gx, gy, gx + 5, gy + h / n - 2], outline=ink)
            if rng.random() < 0.7:
                d.line([(gx, gy + (h / n - 2) / 2), (gx + 5, gy + (h / n - 2) / 2)], fill=ink)
    elif script == "arabic text":  # baseline with loops and dots
        base = y0 + h * 0.6
        d.line([(x0 + 2, base), (x1 - 2, base)], fill=ink)
        x = x1 - 4
        while x > x0 + 3:
            if rng.random() < 0.5:
                d.arc([x - 3, base - 4, x, base], 180, 360, fill=ink)
            if rng.random() < 0.4:
                d.point((x - 1, base - 6 if rng.random() < 0.5 else base + 2), fill=ink)
            x -= 4
    elif script == "devanagari text":  # headline with hanging strokes
        top = y0 + h * 0.3
        d.line([(x0 + 2, top), (x1 - 2, top)], fill=ink)
        x = x0 + 3
        while x < x1 - 3:
            d.line([(x, top), (x, top + 5)], fill=ink)
            if rng.random() < 0.6:
                d.arc([x - 3, top + 1, x + 1, top + 6], 90, 270, fill=ink)
            x += 5


def _sign(cv, e):
    s = cv.size; u = cv.unit(e); x = e.x * s; y = e.y * s
    vertical = e.script == "japanese text"
    if e.text:
        tw = _FONT.getbbox(e.text)[2] + 4
        bw, bh = max(tw, 14), 12
    else:
        bw, bh = (10, 26) if vertical else (26, 12)
    bx0 = min(max(1, x - bw / 2), s - bw - 1)
    by0 = y - 10 * u - bh
    cv.d.line([(x, y), (x, by0 + bh)], fill=(90, 90, 90), width=max(1, round(u)))
    cv.d.rectangle([bx0, by0, bx0 + bw, by0 + bh], fill=e.color, outline=(40, 40, 40))
    if e.text:
        cv.d.text((bx0 + 2, by0 + 1), e.text, fill=(20, 20, 30), font=_FONT)
    else:
        _glyphs(cv, e.script, bx0, by0, bx0 + bw, by0 + bh)



def _flag(cv, e):
    s = cv.size; u = cv.unit(e); x = e.x * s; y = e.y * s
    top = y - 26 * u
    cv.d.line([(x, y), (x, top)], fill=(80, 80, 80), width=max(1, round(u)))
    fx0, fy0, fx1, fy1 = x + 1, top, x + 1 + 15 * u, top + 10 * u
    _FLAG_PAINTERS[e.name](cv.d, fx0, fy0, fx1, fy1)


def _stripes(d, box, colors, vertical):
    x0, y0, x1, y1 = box; n = len(colors)
    for i, c in enumerate(colors):
        if vertical:
            d.rectangle([x0 + (x1 - x0) * i / n, y0, x0 + (x1 - x0) * (i + 1) / n, y1], fill=c)
        else:
            d.rectangle([x0, y0 + (y1 - y0) * i / n, x1, y0 + (y1 - y0) * (i + 1) / n], fill=c)


def _paint_disc(d, x0, y0, x1, y1):
    d.rectangle([x0, y0, x1, y1], fill=(250, 250, 250)); r = (y1 - y0) * 0.3; cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 20, 40))


def _paint_brazil(d, x0, y0, x1, y1):
    d.rectangle([x0, y0, x1, y1], fill=(0, 150, 60)); cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    d.polygon([(x0 + 1, cy), (cx, y0 + 1), (x1 - 1, cy), (cx, y1 - 1)], fill=(250, 220, 0))
    r = (y1 - y0) * 0.2; d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(20, 40, 130))


def _paint_us(d, x0, y0, x1, y1):
    _stripes(d, (x0, y0, x1, y1), [(190, 30, 50), (250, 250, 250)] * 3 + [(190, 30, 50)], False)
    d.rectangle([x0, y0, x0 + (x1 - x0) * 0.45, y0 + (y1 - y0) * 0.55], fill=(40, 50, 110))


def _paint_au(d, x0, y0, x1, y1):
    d.rectangle([x0, y0, x1, y1], fill=(20, 30, 110))
    for fx, fy in ((0.25, 0.7), (0.7, 0.3), (0.8, 0.6), (0.6, 0.75)):
        px, py = x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy
        d.rectangle([px - 0.7, py - 0.7, px + 0.7, py + 0.7], fill=(250, 250, 250))


def _paint_nordic(d, x0, y0, x1, y1):
    d.rectangle([x0, y0, x1, y1], fill=(190, 20, 40)); w, h = x1 - x0, y1 - y0
    d.rectangle([x0 + w * 0.28, y0, x0 + w * 0.44, y1], fill=(250, 250, 250))
    d.rectangle([x0, y0 + h * 0.38, x1, y0 + h * 0.62], fill=(250, 250, 250))
    d.rectangle([x0 + w * 0.32, y0, x0 + w * 0.40, y1], fill=(0, 40, 110))
    d.rectangle([x0, y0 + h * 0.44, x1, y0 + h * 0.56], fill=(0, 40, 110))


_FLAG_PAINTERS: dict[str, Callable] = {
    "blue-white-red flag": lambda d, *b: _stripes(d, b, [(0, 60, 160), (250, 250, 250), (230, 30, 50)], True),
    "red-disc flag": _paint_disc,
    "green-yellow flag": _paint_brazil,
    "stars-and-stripes flag": _paint_us,
    "red-white-black flag": lambda d, *b: _stripes(d, b, [(200, 20, 40), (250, 250, 250), (10, 10, 10)], False),
    "white-blue-red flag": lambda d, *b: _stripes(d, b, [(250, 250, 250), (0, 60, 170), (210, 30, 40)], False),
    "blue-ensign flag": _paint_au,
    "saffron-white-green flag": lambda d, *b: _stripes(d, b, [(250, 150, 50), (250, 250, 250), (20, 140, 50)], False),
    "nordic-cross flag": _paint_nordic,
    "green-white-red flag": lambda d, *b: _stripes(d, b, [(0, 110, 70), (250, 250, 250), (200, 20, 40)], True),
}


# ---------------------------------------------------------------- landmarks
def _lattice_tower(cv, e, color=(90, 85, 80), stripes=False):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; h = 46 * u
    cv.d.polygon([(x - 10 * u, y), (x - 1 * u, y - h), (x + 1 * u, y - h), (x + 10 * u, y)], outline=color)
    for i in range(1, 9):
        yy = y - h * i / 9; hw = 10 * u * (1 - i / 9) ** 1.5 + u
        c = (230, 60, 40) if stripes and i % 2 else ((245, 245, 245) if stripes else color)
        cv.d.line([(x - hw, yy), (x + hw, yy)], fill=c, width=max(1, round(u)))
    cv.d.line([(x - 10 * u, y), (x + 4 * u, y - h * 0.4)], fill=color)
    cv.d.line([(x + 10 * u, y), (x - 4 * u, y - h * 0.4)], fill=color)
    cv.d.arc([x - 7 * u, y - 10 * u, x + 7 * u, y + 4 * u], 180, 360, fill=color)


def _basilica(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.pieslice([x - 30 * u, y - 16 * u, x + 30 * u, y + 16 * u], 180, 360, fill=(80, 130, 70))
    cv.d.rectangle([x - 8 * u, y - 24 * u, x + 8 * u, y - 12 * u], fill=(240, 238, 230))
    for dx in (-8, 6):
        cv.d.rectangle([x + dx * u, y - 30 * u, x + (dx + 2) * u, y - 12 * u], fill=(235, 232, 225))


def _lighthouse(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    for i in range(5):
        cv.d.rectangle([x - (3.5 - i * 0.3) * u, y - (i + 1) * 6 * u, x + (3.5 - i * 0.3) * u, y - i * 6 * u],
                       fill=(230, 40, 40) if i % 2 else (245, 245, 245))
    cv.d.rectangle([x - 2.5 * u, y - 34 * u, x + 2.5 * u, y - 30 * u], fill=(250, 230, 100))
    cv.d.polygon([(x - 3 * u, y - 34 * u), (x, y - 38 * u), (x + 3 * u, y - 34 * u)], fill=(40, 40, 40))


def _castle(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.polygon([(x - 14 * u, y), (x - 11 * u, y - 8 * u), (x + 11 * u, y - 8 * u), (x + 14 * u, y)], fill=(120, 115, 105))
    for i in range(3):
        by = y - 8 * u - (i + 1) * 7 * u; hw = (10 - 2.5 * i) * u
        cv.d.rectangle([x - hw * 0.8, by, x + hw * 0.8, by + 7 * u], fill=(245, 245, 240))
        cv.d.polygon([(x - hw - u, by + 2 * u), (x, by - 3 * u), (x + hw + u, by + 2 * u)], fill=(40, 80, 70))


def _torii(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; red = (210, 50, 30)
    for dx in (-8, 8):
        cv.d.rectangle([x + dx * u - 1.2 * u, y - 22 * u, x + dx * u + 1.2 * u, y], fill=red)
    cv.d.polygon([(x - 14 * u, y - 25 * u), (x + 14 * u, y - 25 * u), (x + 12 * u, y - 22 * u), (x - 12 * u, y - 22 * u)], fill=(30, 30, 30))
    cv.d.rectangle([x - 11 * u, y - 19 * u, x + 11 * u, y - 17 * u], fill=red)


def _statue_on_hill(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.polygon([(x - 24 * u, y), (x - 3 * u, y - 26 * u), (x + 3 * u, y - 26 * u), (x + 24 * u, y)], fill=(50, 110, 60))
    cv.d.rectangle([x - 1 * u, y - 36 * u, x + 1 * u, y - 26 * u], fill=(240, 240, 240))
    cv.d.rectangle([x - 6 * u, y - 34 * u, x + 6 * u, y - 33 * u], fill=(240, 240, 240))


def _tower_cluster(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    for i, (dx, h) in enumerate(((-14, 30), (-7, 42), (0, 34), (7, 46), (14, 28))):
        c = 120 + 15 * (i % 3)
        cv.d.rectangle([x + (dx - 3) * u, y - h * u, x + (dx + 3) * u, y], fill=(c, c, c + 10))
        _windows(cv, x + (dx - 3) * u, y - h * u, x + (dx + 3) * u, y, 6, 1, (90, 100, 120))


def _torch_statue(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; g = (90, 170, 150)
    cv.d.rectangle([x - 5 * u, y - 10 * u, x + 5 * u, y], fill=(150, 140, 120))
    cv.d.polygon([(x - 4 * u, y - 10 * u), (x - 2 * u, y - 28 * u), (x + 2 * u, y - 28 * u), (x + 4 * u, y - 10 * u)], fill=g)
    cv.d.ellipse([x - 2 * u, y - 32 * u, x + 2 * u, y - 28 * u], fill=g)
    cv.d.line([(x + 2 * u, y - 26 * u), (x + 4 * u, y - 38 * u)], fill=g, width=max(1, round(1.5 * u)))
    cv.d.ellipse([x + 3 * u, y - 41 * u, x + 6 * u, y - 37 * u], fill=(250, 200, 60))


def _pyramid(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.polygon([(x - 22 * u, y), (x, y - 24 * u), (x + 22 * u, y)], fill=(205, 170, 110))
    cv.d.polygon([(x, y - 24 * u), (x + 22 * u, y), (x + 6 * u, y)], fill=(180, 145, 90))


def _obelisk(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.polygon([(x - 3 * u, y), (x - 2 * u, y - 34 * u), (x, y - 38 * u), (x + 2 * u, y - 34 * u), (x + 3 * u, y)], fill=(200, 160, 110))


def _kremlin(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 22 * u, y - 8 * u, x + 22 * u, y], fill=(170, 50, 40))
    cv.d.rectangle([x - 5 * u, y - 26 * u, x + 5 * u, y], fill=(180, 55, 45))
    cv.d.polygon([(x - 6 * u, y - 26 * u), (x, y - 40 * u), (x + 6 * u, y - 26 * u)], fill=(40, 110, 70))
    cv.d.regular_polygon((x, y - 42 * u, 2.2 * u), 5, fill=(230, 30, 30))


def _golden_spire(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 16 * u, y - 10 * u, x + 16 * u, y], fill=(235, 210, 120))
    cv.d.rectangle([x - 3 * u, y - 18 * u, x + 3 * u, y - 10 * u], fill=(235, 210, 120))
    cv.d.polygon([(x - 1.5 * u, y - 18 * u), (x, y - 44 * u), (x + 1.5 * u, y - 18 * u)], fill=(220, 180, 40))


def _silver_dome(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 18 * u, y - 12 * u, x + 18 * u, y], fill=(210, 200, 180))
    for i in range(6):
        cx = x - 15 * u + i * 6 * u
        cv.d.line([(cx, y - 11 * u), (cx, y)], fill=(170, 160, 140), width=max(1, round(u)))
    cv.d.pieslice([x - 15 * u, y - 24 * u, x + 15 * u, y], 180, 360, fill=(190, 195, 205))


def _sail_roof(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 18 * u, y - 3 * u, x + 18 * u, y], fill=(200, 180, 150))
    for dx, h in ((-12, 12), (-4, 17), (4, 14), (11, 9)):
        cv.d.polygon([(x + (dx - 5) * u, y - 3 * u), (x + (dx + 3) * u, y - (3 + h) * u), (x + (dx + 5) * u, y - 3 * u)], fill=(245, 245, 240), outline=(200, 200, 195))


def _black_swan(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size + 5 * u
    cv.d.ellipse([x - 6 * u, y - 4 * u, x + 6 * u, y + 1 * u], fill=(15, 15, 15))
    cv.d.line([(x + 4 * u, y - 2 * u), (x + 6 * u, y - 10 * u)], fill=(15, 15, 15), width=max(1, round(1.5 * u)))
    cv.d.line([(x + 6 * u, y - 10 * u), (x + 8.5 * u, y - 9 * u)], fill=(200, 30, 30), width=max(1, round(u)))


def _arch(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; c = (200, 180, 140)
    cv.d.rectangle([x - 14 * u, y - 26 * u, x + 14 * u, y], fill=c)
    cv.d.rectangle([x - 5 * u, y - 14 * u, x + 5 * u, y], fill=(120, 150, 180))
    cv.d.pieslice([x - 5 * u, y - 19 * u, x + 5 * u, y - 9 * u], 180, 360, fill=(120, 150, 180))
    for dx in (-12, 10):
        cv.d.rectangle([x + dx * u, y - 32 * u, x + (dx + 2) * u, y - 26 * u], fill=c)


def _minaret(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    for i in range(5):
        hw = (4.5 - 0.6 * i) * u
        cv.d.rectangle([x - hw, y - (i + 1) * 9 * u, x + hw, y - i * 9 * u], fill=(170, 80, 60) if i % 2 == 0 else (200, 170, 130))
        cv.d.rectangle([x - hw - u, y - (i + 1) * 9 * u, x + hw + u, y - (i + 1) * 9 * u + u], fill=(120, 60, 50))


def _ski_jump(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.pieslice([x - 26 * u, y - 16 * u, x + 26 * u, y + 16 * u], 180, 360, fill=(70, 120, 70))
    cv.d.line([(x - 2 * u, y - 30 * u), (x + 6 * u, y - 12 * u), (x + 16 * u, y - 6 * u)], fill=(235, 235, 240), width=max(1, round(2 * u)))
    cv.d.line([(x - 2 * u, y - 30 * u), (x - 2 * u, y - 14 * u)], fill=(120, 120, 130), width=max(1, round(u)))


def _wharf_row(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    colors = [(200, 50, 40), (240, 220, 150), (230, 140, 50), (250, 250, 240), (190, 60, 40)]
    for i, c in enumerate(colors):
        hx = x - 20 * u + i * 8 * u
        cv.d.rectangle([hx, y - 12 * u, hx + 7 * u, y], fill=c)
        cv.d.polygon([(hx, y - 12 * u), (hx + 3.5 * u, y - 17 * u), (hx + 7 * u, y - 12 * u)], fill=_shade(c, 0.7))


def _golden_column(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 6 * u, y - 6 * u, x + 6 * u, y], fill=(190, 185, 175))
    cv.d.rectangle([x - 2 * u, y - 40 * u, x + 2 * u, y - 6 * u], fill=(215, 210, 200))
    cv.d.polygon([(x - 4 * u, y - 42 * u), (x, y - 48 * u), (x + 4 * u, y - 42 * u), (x, y - 40 * u)], fill=(230, 190, 40))


def _twin_spires(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 10 * u, y - 16 * u, x + 10 * u, y], fill=(225, 215, 190))
    for dx in (-8, 8):
        cv.d.rectangle([x + (dx - 2.5) * u, y - 26 * u, x + (dx + 2.5) * u, y - 16 * u], fill=(225, 215, 190))
        cv.d.polygon([(x + (dx - 3) * u, y - 26 * u), (x + dx * u, y - 38 * u), (x + (dx + 3) * u, y - 26 * u)], fill=(235, 200, 60))


def _beach(cv, e):
    top = round(e.y * cv.size) + round(10 * cv.unit(e))
    cv.d.rectangle([0, top, cv.size, top + round(6 * cv.unit(e))], fill=(245, 230, 190))


# ---------------------------------------------------------------- distractors, close-ups
def _lamp_post(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.line([(x, y), (x, y - 24 * u)], fill=(50, 50, 55), width=max(1, round(u)))
    cv.d.line([(x, y - 24 * u), (x + 4 * u, y - 24 * u)], fill=(50, 50, 55), width=max(1, round(u)))
    cv.d.ellipse([x + 3 * u, y - 25 * u, x + 6 * u, y - 22 * u], fill=(250, 240, 170))


def _bench(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 8 * u, y - 5 * u, x + 8 * u, y - 4 * u], fill=(120, 80, 40))
    cv.d.rectangle([x - 8 * u, y - 9 * u, x + 8 * u, y - 8 * u], fill=(120, 80, 40))
    for dx in (-7, 7):
        cv.d.line([(x + dx * u, y - 9 * u), (x + dx * u, y)], fill=(40, 40, 40))


def _wall(cv, e):
    cv.d.rectangle([0, 0, cv.size, cv.size], fill=e.color)
    for _ in range(cv.size):
        cv.d.point((cv.rng.randrange(cv.size), cv.rng.randrange(cv.size)), fill=jitter(cv.rng, e.color, 10))


def _window(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 14 * u, y - 30 * u, x + 14 * u, y - 6 * u], fill=(160, 200, 235), outline=(250, 250, 250), width=max(1, round(2 * u)))
    cv.d.line([(x, y - 30 * u), (x, y - 6 * u)], fill=(250, 250, 250), width=max(1, round(2 * u)))


def _picture_frame(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 10 * u, y - 40 * u, x + 10 * u, y - 26 * u], fill=(200, 180, 150), outline=(90, 60, 30), width=max(1, round(2 * u)))


def _door(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = cv.size
    cv.d.rectangle([x - 11 * u, y - 50 * u, x + 11 * u, y], fill=(140, 100, 70), outline=(90, 60, 40))
    cv.d.ellipse([x + 6 * u, y - 26 * u, x + 9 * u, y - 23 * u], fill=(220, 190, 80))


DRAWERS: dict[str, Callable] = {
    "sun": _sun, "cloud": _cloud, "bird": _bird, "aurora": _aurora, "mountain": _mountain, "dune": _dune,
    "hills": _hills, "water": _water, "road": _road, "car": _car, "tram": _tram,
    "mansard roof": _mansard, "pagoda roof": _pagoda, "colorful house": _colorful, "skyscraper": _skyscraper,
    "flat-roof house": _flat_roof, "onion dome": _onion, "bungalow": _bungalow, "temple spire": _temple_spire,
    "wooden house": _wooden_house, "palm tree": _palm, "pine tree": _pine, "broadleaf tree": _broadleaf,
    "cactus": _cactus, "eucalyptus tree": _eucalyptus, "sign": _sign,
    **{name: _flag for name in _FLAG_PAINTERS},
    "lattice tower": _lattice_tower, "hilltop basilica": _basilica, "lighthouse": _lighthouse,
    "red-white tower": lambda cv, e: _lattice_tower(cv, e, (220, 60, 40), stripes=True),
    "castle": _castle, "torii gate": _torii, "statue on hill": _statue_on_hill, "tower cluster": _tower_cluster,
    "torch statue": _torch_statue, "pyramid": _pyramid, "obelisk": _obelisk, "kremlin tower": _kremlin,
    "golden spire": _golden_spire, "silver dome": _silver_dome, "sail roof": _sail_roof, "black swan": _black_swan,
    "arch gateway": _arch, "minaret": _minaret, "ski jump": _ski_jump, "wharf row": _wharf_row,
    "golden column": _golden_column, "twin spires": _twin_spires, "beach": _beach,
    "lamp post": _lamp_post, "bench": _bench, "wall": _wall, "window": _window, "picture frame": _picture_frame,
    "door": _door,
    **DISTRICT_DRAWERS,  # layout="districts"
}


def _horizon_px(cv: _Canvas) -> int:
    return round(cv.horizon * cv.size)


def render(scene: Scene, size: int, rng: random.Random) -> Image.Image:
    """Draw ``scene`` on a ``size`` x ``size`` RGB image."""
    cv = _Canvas(size, rng)
    cv.horizon, cv.drive = scene.horizon, scene.drive  # type: ignore[attr-defined]
    if scene.kind in ("street", "sky"):
        _sky(cv, scene)
    if scene.ground:
        _ground(cv, scene)
    for element in scene.elements:
        DRAWERS[element.name](cv, element)
    return cv.image
