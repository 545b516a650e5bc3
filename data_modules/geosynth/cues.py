"""GeoSynth's visual vocabulary: every element the drawer can put in an image.

This table is the single place the entity names live. A GeoSynth sample's ``entities`` lists
exactly the elements drawn (one name per element type), and its reasoning mentions only
names from this table that are in ``entities``; so the visual-grounding reward can use
``mentioned_entities`` below on a generated reasoning and compare with ``entities``.

Names are lowercase, and no name occurs as a whole word inside another name, so a
whole-word search is unambiguous; a trailing plural ``s``/``es`` is accepted ("palm trees").
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["ENTITIES", "NON_LOCALIZABLE_ENTITIES", "mentioned_entities"]

#: name -> what is drawn (the kind of cue in brackets)
ENTITIES: dict[str, str] = {
    # sky and terrain
    "sky": "sky gradient filling the top of an outdoor scene",
    "sun": "yellow disc in the sky (distractor)",
    "cloud": "white ellipses in the sky (distractor)",
    "bird": "small dark v shape in the sky (distractor)",
    "mountain": "grey/green triangles on the horizon (terrain: NO, JP, MX, country-level)",
    "dune": "low sand-coloured arcs on the horizon (terrain: EG)",
    "water": "blue band at the horizon: sea, lake or river (city-level: coastal cities)",
    "aurora": "green wavy bands in a dark sky (city-level: Tromsø)",
    # ground
    "grass": "green ground (FR, BR, US, NO)",
    "sand": "pale yellow ground (EG)",
    "red soil": "ochre-red ground (AU)",
    "snow": "white ground (RU, city-level: Novosibirsk, Tromsø)",
    "dry soil": "tan ground (MX, IN)",
    "asphalt": "grey paved ground (JP)",
    # traffic
    "road": "road in perspective with a dashed centre line",
    "car": "car seen from behind, on the left or right half of the road (driving side)",
    "tram": "long tram car (city-level: Melbourne, Kolkata)",
    # buildings (country-level)
    "mansard roof": "cream building with a steep blue-grey roof (FR)",
    "pagoda roof": "stacked roofs with upturned eaves (JP)",
    "colorful house": "small brightly painted boxes stacked on a slope (BR)",
    "skyscraper": "tall glass tower with window grid (US)",
    "flat-roof house": "low box house with a flat roof (EG, MX, IN)",
    "onion dome": "bulb-shaped dome on a drum (RU)",
    "bungalow": "low house with a corrugated metal roof (AU)",
    "temple spire": "curved tower of a temple (IN)",
    "wooden house": "red wooden house with a gable roof (NO)",
    # vegetation (country-level, some shared between neighbours)
    "palm tree": "trunk with a crown of fronds (EG, BR, MX, IN; city-level: Los Angeles)",
    "pine tree": "dark green conifer triangle (NO, RU)",
    "broadleaf tree": "round green crown on a trunk (FR, JP, US)",
    "cactus": "green saguaro-like column (MX)",
    "eucalyptus tree": "pale trunk with a sparse grey-green crown (AU)",
    # writing (a sign's script is the country cue; some signs show a city's name)
    "sign": "rectangular sign on a post",
    "latin text": "letters of the Latin alphabet on a sign",
    "cyrillic text": "Cyrillic-looking letters on a sign (RU)",
    "japanese text": "vertical block glyphs on a sign (JP)",
    "arabic text": "cursive right-to-left strokes with dots on a sign (EG)",
    "devanagari text": "glyphs hanging from a headline on a sign (IN)",
    # flags (country-level)
    "blue-white-red flag": "vertical blue, white, red stripes (FR)",
    "red-disc flag": "white flag with a red disc (JP)",
    "green-yellow flag": "green flag with a yellow diamond (BR)",
    "stars-and-stripes flag": "red and white stripes with a blue canton (US)",
    "red-white-black flag": "horizontal red, white, black stripes (EG)",
    "white-blue-red flag": "horizontal white, blue, red stripes (RU)",
    "blue-ensign flag": "dark blue flag with white stars (AU)",
    "saffron-white-green flag": "horizontal saffron, white, green stripes (IN)",
    "nordic-cross flag": "red flag with a blue and white cross (NO)",
    "green-white-red flag": "vertical green, white, red stripes (MX)",
    # landmarks (city-level)
    "lattice tower": "tall grey iron lattice tower (Paris)",
    "hilltop basilica": "white church with towers on a hill (Lyon)",
    "lighthouse": "striped tower with a lamp (Marseille, Alexandria, Salvador)",
    "red-white tower": "red and white lattice tower (Tokyo)",
    "castle": "white keep with dark stacked roofs on a stone base (Osaka)",
    "torii gate": "red gate with two posts and a curved lintel (Kyoto)",
    "statue on hill": "white figure with open arms on a green hill (Rio de Janeiro)",
    "tower cluster": "group of many grey towers of different heights (São Paulo)",
    "torch statue": "green figure raising a torch (New York City)",
    "hills": "rolling brown hills behind the city (Los Angeles)",
    "pyramid": "large sand-coloured triangle (Cairo, Mexico City)",
    "obelisk": "tall narrow pointed pillar (Luxor)",
    "kremlin tower": "red brick tower with a green tent roof and a star (Moscow)",
    "golden spire": "thin golden needle on a yellow building (Saint Petersburg)",
    "silver dome": "wide low silver dome on a columned building (Novosibirsk)",
    "sail roof": "white overlapping shell roofs by the water (Sydney)",
    "black swan": "black bird with a long neck on the water (Perth)",
    "arch gateway": "stone arch monument (Mumbai)",
    "minaret": "tall tapering banded red tower (Delhi)",
    "ski jump": "ramp curving down a hill (Oslo)",
    "wharf row": "row of narrow coloured gabled houses along the water (Bergen)",
    "golden column": "column topped with a golden figure (Mexico City)",
    "twin spires": "cathedral with two pointed yellow spires (Guadalajara)",
    "beach": "pale sand strip along the water (Cancún)",
    # district cues (layout="districts": each district of a city has its own landmark and awning colour)
    "fountain": "basin with a column and water arcs (a district)",
    "clock tower": "brick tower with a clock face and a pointed roof (a district)",
    "stadium": "low oval bowl with two floodlight masts (a district)",
    "windmill": "white tapered mill with two crossed sails (a district)",
    "bridge": "stone arch bridge with a parapet (a district)",
    "chimney": "tall banded brick chimney with smoke (a district)",
    "awning": "striped awning over a shop front, in the district's colour (a district)",
    # generic distractors
    "lamp post": "street lamp (distractor)",
    "bench": "park bench (distractor)",
    # non-localizable close-ups
    "wall": "plain indoor wall filling the frame",
    "window": "window in a wall",
    "picture frame": "frame hanging on a wall",
    "door": "door in a wall",
}

#: elements of the non-localizable scenes (no country cue among them)
NON_LOCALIZABLE_ENTITIES = frozenset(
    {"sky", "cloud", "bird", "sun", "wall", "window", "picture frame", "door", "grass", "sand", "asphalt"}
)


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern:
    names = sorted(ENTITIES, key=len, reverse=True)  # longest first
    alternation = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w-])({alternation})(?:s|es)?(?![\w-])", re.IGNORECASE)


def mentioned_entities(text: str) -> set[str]:
    """Vocabulary names a text mentions (whole words, case-insensitive, plural allowed).

    >>> sorted(mentioned_entities("Two palm trees and a sign with Latin text; a car."))
    ['car', 'latin text', 'palm tree', 'sign']
    """
    return {m.group(1).lower() for m in _pattern().finditer(text)}
