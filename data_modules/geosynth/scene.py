"""What one GeoSynth image shows, decided before any pixel is drawn.

``plan_scene`` turns a random generator and a city into a :class:`Scene`: the list of
elements (entity name, position, size, colour) the drawer renders and the reasoning
describes. Keeping the plan separate makes ``entities`` and the reasoning exact by
construction: both are read off the plan, never guessed from pixels.

Street scene (localizable): each cue is drawn with its own probability
(``CUE_PROB``), so cues go missing at random; a plan with fewer than two country/city cues is
redrawn. Colours and positions are jittered; distractors (sun, cloud, bird, lamp post,
bench) and, sometimes, a cue borrowed from another country are added as noise.
Close-up scene (non-localizable): sky, indoor wall or ground filling the frame, no cue.

With a :class:`~.districts.District` (``layout="districts"``) a street scene also shows the
district's cues, each with its own probability: its landmark (``district_landmark``) and an
awning in its colour (``awning``), role ``"district"``. Without one, the plan and the random
numbers it draws are exactly the ``cities`` layout's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .districts import District
from .places import CITIES, COUNTRIES, City

__all__ = ["CUE_PROB", "Element", "Scene", "jitter", "plan_scene"]

RGB = tuple[int, int, int]

#: probability that each kind of cue appears in a street scene
CUE_PROB = {
    "terrain": 0.6,  # the country's terrain element, when it has one
    "water": 0.85,  # coastal cities
    "road": 0.65,  # road + car on the driving side
    "building": 0.75,
    "landmark": 0.7,
    "vegetation": 0.7,
    "extras": 0.7,  # city extras (tram, snow, palm tree ...)
    "sign": 0.55,
    "city_sign": 0.3,  # a sign shows the city's name instead of a common word
    "flag": 0.45,
    "distractor": 0.5,  # each of up to two generic distractors
    "borrowed": 0.15,  # a vegetation or building of another country
    "district_landmark": 0.8,  # layout="districts": the district's landmark
    "awning": 0.6,  # layout="districts": a shop awning in the district's colour
}
_MIN_CUES = 2


@dataclass
class Element:
    name: str  # entity name (cues.ENTITIES)
    x: float  # horizontal centre, fraction of width
    y: float  # ground line (bottom), fraction of height
    scale: float  # 1.0 = about a quarter of the image height for a building
    color: RGB = (128, 128, 128)
    text: str = ""  # sign text
    script: str = ""  # text entity of a sign
    role: str = "distractor"  # country | city | district | distractor | borrowed | scene


@dataclass
class Scene:
    city: City
    localizable: bool
    kind: str  # "street" | "sky" | "wall" | "ground"
    horizon: float = 0.55  # fraction of height
    sky: RGB = (120, 170, 225)
    ground: str = ""
    ground_rgb: RGB = (100, 100, 100)
    drive: str = ""  # driving side shown by the car ("" when no car)
    elements: list[Element] = field(default_factory=list)
    district: District | None = None  # layout="districts": where in the city the image is

    def names(self) -> list[str]:
        """Entities drawn, each once, in drawing order (including sky/ground)."""
        drawn = ["sky"] if self.kind in ("street", "sky") else []
        drawn += [self.ground] if self.ground else []
        drawn += [e.name for e in self.elements]
        drawn += [e.script for e in self.elements if e.script]  # the writing on a sign
        return list(dict.fromkeys(drawn))  # first occurrence of each, in drawing order


def jitter(rng: random.Random, color: RGB, amount: int = 12) -> RGB:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _side_x(rng: random.Random) -> float:
    """A horizontal position away from the road in the middle."""
    return rng.uniform(0.05, 0.33) if rng.random() < 0.5 else rng.uniform(0.67, 0.95)


def _street(rng: random.Random, city: City, district: District | None = None) -> Scene:
    country = city.country
    scene = Scene(city, True, "street", horizon=rng.uniform(0.48, 0.6), sky=jitter(rng, country.sky),
                  ground=country.ground, ground_rgb=jitter(rng, country.ground_rgb), district=district)
    els = scene.elements
    h = scene.horizon
    p = CUE_PROB
    if "snow" in city.extras and rng.random() < p["extras"]:
        scene.ground, scene.ground_rgb = "snow", jitter(rng, (235, 238, 242), 6)
    # background: sky elements, terrain, water
    if city.landmark == "aurora" and rng.random() < p["landmark"]:
        scene.sky = jitter(rng, (20, 30, 60), 8)
        els.append(Element("aurora", rng.uniform(0.3, 0.7), h * 0.5, 1.0, jitter(rng, (80, 230, 140)), role="city"))
    for name in ("sun", "cloud", "bird"):
        if rng.random() < p["distractor"] / 2:
            els.append(Element(name, rng.uniform(0.1, 0.9), rng.uniform(0.08, h * 0.6), rng.uniform(0.7, 1.2),
                               role="distractor"))
    if country.terrain and rng.random() < p["terrain"]:
        els.append(Element(country.terrain, rng.uniform(0.2, 0.8), h, rng.uniform(0.8, 1.3),
                           jitter(rng, (110, 125, 120) if country.terrain == "mountain" else (215, 185, 120)),
                           role="country"))
    if city.landmark == "hills" and rng.random() < p["landmark"]:
        els.append(Element("hills", rng.uniform(0.3, 0.7), h, rng.uniform(0.9, 1.2), jitter(rng, (160, 120, 80)),
                           role="city"))
    if city.coast and rng.random() < p["water"]:
        els.append(Element("water", 0.5, h, rng.uniform(0.8, 1.2), jitter(rng, (50, 110, 180)), role="city"))
    water = any(e.name == "water" for e in els)
    # landmark (city), before the nearer objects
    lm = city.landmark
    if lm not in ("aurora", "hills") and rng.random() < p["landmark"]:
        needs_water = lm in ("beach", "black swan", "sail roof", "wharf row")
        if needs_water and not water:
            els.append(Element("water", 0.5, h, rng.uniform(0.8, 1.2), jitter(rng, (50, 110, 180)), role="city"))
        y = h + (0.0 if lm in ("beach", "black swan", "sail roof", "wharf row", "lighthouse") else 0.02)
        els.append(Element(lm, rng.uniform(0.3, 0.7) if lm != "tram" else 0.5, y, rng.uniform(0.9, 1.2),
                           role="city"))
    for extra in city.extras:
        if extra != "snow" and rng.random() < p["extras"]:
            els.append(Element(extra, _side_x(rng), rng.uniform(h + 0.08, 0.85), rng.uniform(0.8, 1.1), role="city"))
    # road with a car on the country's driving side
    if rng.random() < p["road"]:
        els.append(Element("road", 0.5, 1.0, 1.0, jitter(rng, (70, 70, 75), 8), role="scene"))
        els.append(Element("car", 0.5, rng.uniform(0.84, 0.93), rng.uniform(0.9, 1.1),
                           jitter(rng, rng.choice([(200, 30, 30), (30, 60, 160), (230, 230, 230), (40, 40, 40)])),
                           role="country"))
        scene.drive = country.drive
    # buildings and vegetation (country), sometimes one borrowed from elsewhere
    if rng.random() < p["building"]:
        for _ in range(rng.randint(1, 2)):
            els.append(Element(country.building, _side_x(rng), rng.uniform(h + 0.03, h + 0.15), rng.uniform(0.8, 1.2),
                               jitter(rng, rng.choice(country.wall_colors)), role="country"))
    if rng.random() < p["vegetation"]:
        kind = rng.choice(country.vegetation)
        for _ in range(rng.randint(1, 3)):
            els.append(Element(kind, _side_x(rng), rng.uniform(h + 0.05, 0.95), rng.uniform(0.7, 1.2), role="country"))
    if rng.random() < p["borrowed"]:
        other = rng.choice([c for c in COUNTRIES if c is not country])
        name = rng.choice([*other.vegetation, other.building])
        els.append(Element(name, _side_x(rng), rng.uniform(h + 0.05, 0.9), rng.uniform(0.7, 1.0),
                           jitter(rng, other.wall_colors[0]), role="borrowed"))
    # writing and flag
    if rng.random() < p["sign"]:
        city_sign = rng.random() < p["city_sign"]
        if city_sign:
            text, script, role = city.sign_word, "latin text", "city"
        else:
            text, script, role = (rng.choice(country.sign_words) if country.sign_words else ""), country.script, "country"
        els.append(Element("sign", _side_x(rng), rng.uniform(h + 0.12, 0.92), 1.0, jitter(rng, (240, 240, 235), 8),
                           text=text, script=script, role=role))
    if rng.random() < p["flag"]:
        els.append(Element(country.flag, _side_x(rng), rng.uniform(h + 0.05, 0.85), rng.uniform(0.9, 1.2),
                           role="country"))
    for name in ("lamp post", "bench"):
        if rng.random() < p["distractor"] / 2:
            els.append(Element(name, _side_x(rng), rng.uniform(h + 0.1, 0.95), 1.0, role="distractor"))
    if district is not None:  # the district's own cues (only in the districts layout)
        if rng.random() < p["district_landmark"]:
            els.append(Element(district.landmark, _side_x(rng), rng.uniform(h + 0.02, h + 0.1), rng.uniform(0.8, 1.1),
                               role="district"))
        if rng.random() < p["awning"]:
            els.append(Element("awning", _side_x(rng), rng.uniform(h + 0.15, 0.9), rng.uniform(0.8, 1.1),
                               jitter(rng, district.awning_rgb, 8), role="district"))
    # far things first, near things last
    background = [e for e in els if e.name in ("aurora", "sun", "cloud", "bird", "mountain", "dune", "hills", "water")]
    rest = sorted((e for e in els if e not in background), key=lambda e: (e.name != "road", e.y))
    scene.elements = background + rest
    return scene


def _close_up(rng: random.Random, city: City, district: District | None = None) -> Scene:
    kind = rng.choice(("sky", "wall", "ground"))
    scene = Scene(city, False, kind, district=district)
    els = scene.elements
    if kind == "sky":
        scene.sky = jitter(rng, rng.choice([(120, 170, 225), (170, 180, 195), (90, 150, 220)]))
        scene.horizon = 1.0
        for name in ("cloud", "cloud", "bird", "sun"):
            if rng.random() < 0.5:
                els.append(Element(name, rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.8), rng.uniform(0.8, 1.6)))
    elif kind == "wall":
        scene.horizon = 0.0
        els.append(Element("wall", 0.5, 1.0, 1.0, jitter(rng, rng.choice([(220, 215, 200), (200, 210, 220), (230, 200, 190)]), 15),
                           role="scene"))
        for name in ("window", "picture frame", "door"):
            if rng.random() < 0.4:
                els.append(Element(name, rng.uniform(0.2, 0.8), rng.uniform(0.5, 0.95), rng.uniform(0.8, 1.2)))
    else:
        scene.horizon = 0.0
        scene.ground = rng.choice(("grass", "sand", "asphalt"))
        scene.ground_rgb = jitter(rng, {"grass": (90, 150, 70), "sand": (220, 200, 150), "asphalt": (110, 110, 115)}[scene.ground])
    return scene


def plan_scene(
    rng: random.Random, city: City | None = None, localizable: bool = True, district: District | None = None
) -> Scene:
    """Plan one image of ``city`` (random when ``None``), in ``district`` of it when given; a
    street scene needs >= 2 country / city cues."""
    city = city or rng.choice(CITIES)
    if not localizable:
        return _close_up(rng, city, district)
    while True:
        scene = _street(rng, city, district)
        if sum(1 for e in scene.elements if e.role in ("country", "city")) >= _MIN_CUES:
            return scene
