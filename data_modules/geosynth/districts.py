"""GeoSynth's ``districts`` layout: 2-4 districts per city, a few km apart, each with its own cues.

With ``layout="cities"`` (the default) every sample of a city sits at the city's GeoNames
point, so no answer can be better than "the right city": acc@1km and acc@25km are the same
figure. The ``districts`` layout gives each city 2-4 districts at real coordinates around the
centre and puts each sample in one of them, so a model that tells the districts apart is
within 1 km and one that only knows the city is not.

Per (generation seed, city), from ``Random("geosynth-districts:{seed}:{geonameid}")``:

* the number of districts ``n``, uniform in 2..4;
* their bearings from the centre: ``n`` directions spread evenly (360 / n apart) from a random
  rotation, each moved by up to ``BEARING_JITTER_DEG`` (10 degrees), so two districts are at
  least 70 degrees apart as seen from the centre; the district is named after its compass
  direction (``north``, ``south-east``, ...; distinct since they are >= 45 degrees apart);
* their distances from the centre, uniform in ``[MIN_OFFSET_KM, MAX_OFFSET_KM]`` (2-6 km):
  two districts of a city are at least 2 x 2 km x sin(35 degrees) = 2.29 km apart, at most 12 km;
* their cues, distinct within the city: a district landmark (``DISTRICT_LANDMARKS``: fountain,
  clock tower, stadium, windmill, bridge, chimney) and the colour of the awnings over its shop
  fronts (``AWNING_COLORS``). The names are concepts of R_vis's vocabulary
  (``globe/rewards/visual_concepts.yaml``), as every GeoSynth entity is.

A sample of a district is placed uniformly in a disc of ``JITTER_KM`` (0.25 km) around the
district's point: a district's own point is always within 1 km of its samples, the city centre
never (at least 2 - 0.25 = 1.75 km away), and every sample is within 25 km of its city centre.
Offsets are computed on the sphere of the haversine (R = 6371.0088 km), so
``globe.geo.distance.great_circle_km`` gives back exactly the drawn distances.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from .places import City

__all__ = [
    "AWNING_COLORS", "DISTRICT_LANDMARKS", "District", "JITTER_KM", "LAYOUTS", "MAX_OFFSET_KM", "MIN_OFFSET_KM",
    "districts_of", "destination", "jittered_point",
]

RGB = tuple[int, int, int]
LAYOUTS = ("cities", "districts")
EARTH_RADIUS_KM = 6371.0088  # the haversine's sphere (globe.geo.distance)
MIN_OFFSET_KM, MAX_OFFSET_KM = 2.0, 6.0
BEARING_JITTER_DEG = 10.0
JITTER_KM = 0.25
#: entity names (cues.ENTITIES) of the district landmarks
DISTRICT_LANDMARKS = ("fountain", "clock tower", "stadium", "windmill", "bridge", "chimney")
#: awning colour name -> RGB; a district's awnings have one colour, distinct within its city
AWNING_COLORS: dict[str, RGB] = {
    "red": (205, 35, 40), "blue": (35, 75, 205), "green": (35, 150, 60),
    "yellow": (240, 205, 35), "purple": (135, 55, 165), "orange": (240, 130, 25),
}
_COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")


@dataclass(frozen=True)
class District:
    city: City
    name: str  # compass direction from the centre: "north", "south-east", ...
    lat: float
    lon: float
    bearing_deg: float  # from the city centre
    offset_km: float  # from the city centre
    landmark: str  # entity name
    awning: str  # colour name (AWNING_COLORS)

    @property
    def awning_rgb(self) -> RGB:
        return AWNING_COLORS[self.awning]


def destination(lat: float, lon: float, bearing_deg: float, distance_km: float) -> tuple[float, float]:
    """The point ``distance_km`` from (lat, lon) along the initial bearing, on the haversine's sphere.

    >>> [round(v, 6) for v in destination(0.0, 0.0, 90.0, 111.19508)]
    [0.0, 1.0]
    """
    phi, lam, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = distance_km / EARTH_RADIUS_KM
    phi2 = math.asin(math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(theta))
    lam2 = lam + math.atan2(math.sin(theta) * math.sin(delta) * math.cos(phi), math.cos(delta) - math.sin(phi) * math.sin(phi2))
    return math.degrees(phi2), (math.degrees(lam2) + 540.0) % 360.0 - 180.0


@lru_cache(maxsize=1024)
def districts_of(city: City, seed: int) -> tuple[District, ...]:
    """The districts of ``city`` under generation seed ``seed`` (module docstring)."""
    rng = random.Random(f"geosynth-districts:{seed}:{city.geonameid}")
    n = rng.randint(2, 4)
    rotation = rng.uniform(0.0, 360.0)
    landmarks = rng.sample(DISTRICT_LANDMARKS, n)
    awnings = rng.sample(sorted(AWNING_COLORS), n)
    out = []
    for k in range(n):
        bearing = (rotation + k * 360.0 / n + rng.uniform(-BEARING_JITTER_DEG, BEARING_JITTER_DEG)) % 360.0
        offset = rng.uniform(MIN_OFFSET_KM, MAX_OFFSET_KM)
        lat, lon = destination(city.lat, city.lon, bearing, offset)
        name = _COMPASS[round(bearing / 45.0) % 8]
        out.append(District(city, name, round(lat, 5), round(lon, 5), round(bearing, 2), round(offset, 3),
                            landmarks[k], awnings[k]))
    return tuple(out)


def jittered_point(rng: random.Random, district: District) -> tuple[float, float]:
    """A sample's point: uniform in the disc of ``JITTER_KM`` around the district's point."""
    radius = JITTER_KM * math.sqrt(rng.random())
    lat, lon = destination(district.lat, district.lon, rng.uniform(0.0, 360.0), radius)
    return round(lat, 6), round(lon, 6)
