"""Drawers of the district cues (``layout="districts"``): six landmarks and the shop awning.

Same contract as :mod:`.drawing` (``(canvas, element)``, sizes in units of ``canvas.unit(e)``,
positions from ``element.x`` / ``element.y``); the awning is painted in ``element.color``, the
district's awning colour. Each landmark has a silhouette of its own (a basin with water arcs, a
tower with a clock face, a bowl with floodlights, crossed sails, a two-arch bridge, a banded
chimney with smoke), so two districts of a city never look alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["DISTRICT_DRAWERS"]


def _fountain(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.ellipse([x - 14 * u, y - 5 * u, x + 14 * u, y + 2 * u], fill=(150, 150, 160), outline=(90, 90, 100))
    cv.d.ellipse([x - 11 * u, y - 4 * u, x + 11 * u, y], fill=(90, 160, 215))
    cv.d.rectangle([x - 1.5 * u, y - 14 * u, x + 1.5 * u, y - 2 * u], fill=(170, 170, 175))
    for dx in (-8, 8):  # water arcs from the top of the column
        box = [min(x, x + dx * u), y - 20 * u, max(x, x + dx * u) + 1, y - 2 * u]
        cv.d.arc(box, 180 if dx < 0 else 270, 270 if dx < 0 else 360, fill=(120, 190, 240), width=max(1, round(u)))


def _clock_tower(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 5 * u, y - 40 * u, x + 5 * u, y], fill=(150, 80, 60))
    cv.d.polygon([(x - 6 * u, y - 40 * u), (x, y - 50 * u), (x + 6 * u, y - 40 * u)], fill=(60, 70, 80))
    cv.d.ellipse([x - 4 * u, y - 36 * u, x + 4 * u, y - 28 * u], fill=(250, 250, 240), outline=(30, 30, 30))
    cv.d.line([(x, y - 32 * u), (x, y - 35 * u)], fill=(20, 20, 20))
    cv.d.line([(x, y - 32 * u), (x + 2.5 * u, y - 32 * u)], fill=(20, 20, 20))


def _bridge(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; stone = (165, 150, 130)
    cv.d.rectangle([x - 22 * u, y - 14 * u, x + 22 * u, y - 10 * u], fill=stone)  # deck
    cv.d.rectangle([x - 22 * u, y - 17 * u, x + 22 * u, y - 16 * u], fill=_darker(stone))  # parapet
    for dx in (-22, -8, 6, 20):
        cv.d.line([(x + dx * u, y - 17 * u), (x + dx * u, y - 14 * u)], fill=_darker(stone))
    for cx in (-11, 11):  # two arches on three piers
        cv.d.rectangle([x + (cx - 11) * u, y - 10 * u, x + (cx + 11) * u, y], fill=stone)
        cv.d.pieslice([x + (cx - 8) * u, y - 8 * u, x + (cx + 8) * u, y + 8 * u], 180, 360, fill=(120, 160, 200))


def _windmill(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; hub = (x, y - 26 * u)
    cv.d.polygon([(x - 7 * u, y), (x - 4 * u, y - 26 * u), (x + 4 * u, y - 26 * u), (x + 7 * u, y)], fill=(235, 225, 205))
    cv.d.polygon([(x - 5 * u, y - 26 * u), (x, y - 31 * u), (x + 5 * u, y - 26 * u)], fill=(110, 70, 50))
    for dx, dy in ((1, 1), (1, -1)):  # two crossed sails
        cv.d.line([(hub[0] - 14 * u * dx, hub[1] - 14 * u * dy), (hub[0] + 14 * u * dx, hub[1] + 14 * u * dy)],
                  fill=(90, 60, 40), width=max(1, round(2.5 * u)))


def _chimney(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size; h = 48 * u
    cv.d.polygon([(x - 5 * u, y), (x - 3 * u, y - h), (x + 3 * u, y - h), (x + 5 * u, y)], fill=(150, 70, 50))
    for i in (1, 2, 3):  # light bands
        cv.d.rectangle([x - 5 * u + i * 0.5 * u, y - h * i / 4 - 1.5 * u, x + 5 * u - i * 0.5 * u, y - h * i / 4],
                       fill=(215, 205, 190))
    for k in range(3):  # smoke
        r = (3 + k) * u
        cv.d.ellipse([x + 2 * k * u - r, y - h - (5 + 5 * k) * u - r, x + 2 * k * u + r, y - h - (5 + 5 * k) * u + r],
                     fill=(200, 200, 205))


def _stadium(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.chord([x - 22 * u, y - 14 * u, x + 22 * u, y + 6 * u], 180, 360, fill=(175, 175, 185), outline=(110, 110, 120))
    cv.d.rectangle([x - 22 * u, y - 4 * u, x + 22 * u, y], fill=(150, 150, 160))
    for dx in (-18, 18):  # floodlight masts
        cv.d.line([(x + dx * u, y - 4 * u), (x + dx * u, y - 22 * u)], fill=(70, 70, 75), width=max(1, round(u)))
        cv.d.rectangle([x + dx * u - 2.5 * u, y - 25 * u, x + dx * u + 2.5 * u, y - 22 * u], fill=(250, 250, 210))


def _awning(cv, e):
    u = cv.unit(e); x = e.x * cv.size; y = e.y * cv.size
    cv.d.rectangle([x - 11 * u, y - 18 * u, x + 11 * u, y], fill=(225, 215, 195))  # shop front
    cv.d.rectangle([x - 8 * u, y - 9 * u, x + 8 * u, y - 1 * u], fill=(150, 190, 210))  # window
    cv.d.polygon([(x - 12 * u, y - 18 * u), (x + 12 * u, y - 18 * u), (x + 14 * u, y - 11 * u), (x - 14 * u, y - 11 * u)],
                 fill=e.color)
    for i in range(1, 6, 2):  # white stripes
        x0 = x - 12 * u + i * 4 * u
        cv.d.polygon([(x0, y - 18 * u), (x0 + 4 * u, y - 18 * u), (x0 + 4.7 * u, y - 11 * u), (x0 + 0.7 * u, y - 11 * u)],
                     fill=(245, 245, 240))


def _darker(c):
    return tuple(round(v * 0.75) for v in c)


DISTRICT_DRAWERS: dict[str, Callable] = {
    "fountain": _fountain, "clock tower": _clock_tower, "stadium": _stadium, "windmill": _windmill,
    "bridge": _bridge, "chimney": _chimney, "awning": _awning,
}
