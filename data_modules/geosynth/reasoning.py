"""The reasoning trace of a GeoSynth image, written from its scene plan.

The ``<think>`` part names the cues that were actually drawn, with the entity names of
``cues.ENTITIES`` verbatim (plurals allowed), what each suggests, and a conclusion; the
answer is the scene's country and city, in the project's answer format
(``format_answer``). Elements that were not drawn are never named, not even negated
("no palm trees"), so ``cues.mentioned_entities(reasoning) <= set(entities)`` always holds.
Non-localizable close-ups say so and give the label as a low-confidence answer.

In the ``districts`` layout the trace also names the district's cues that were drawn (its
landmark, the colour of its awnings) and which district of the city they mark; with
``coordinates`` the answer ends with a ``coordinates: lat, lon`` line (the district's point in
that layout, the city's in the ``cities`` layout), so a warm start teaches that format.
"""

from __future__ import annotations

import random

from globe.answer import format_answer
from .scene import Scene

__all__ = ["think_text", "trace"]

_COUNTRY_HINT = {  # entity -> how a reasoning explains it
    "mountain": "mountainous terrain",
    "dune": "desert terrain",
    "grass": "a temperate, green landscape",
    "sand": "a dry desert climate",
    "red soil": "the red outback soil of inland Australia",
    "snow": "a cold northern climate",
    "dry soil": "a dry, warm climate",
    "asphalt": "a dense, paved urban area",
    "mansard roof": "Parisian-style architecture",
    "pagoda roof": "East Asian temple architecture",
    "colorful house": "hillside neighbourhoods of Latin America",
    "skyscraper": "a North American downtown",
    "flat-roof house": "hot, dry regions such as North Africa, Mexico or South Asia",
    "onion dome": "Orthodox church architecture",
    "bungalow": "Australian suburban housing",
    "temple spire": "Hindu temple architecture",
    "wooden house": "Scandinavian wooden houses",
    "palm tree": "a warm climate",
    "pine tree": "a boreal forest climate",
    "broadleaf tree": "a temperate climate",
    "cactus": "an arid climate of the Americas",
    "eucalyptus tree": "Australian vegetation",
}
_SCRIPT_HINT = {
    "latin text": "a language written in the Latin alphabet",
    "cyrillic text": "a language written in Cyrillic, such as Russian",
    "japanese text": "Japanese",
    "arabic text": "Arabic",
    "devanagari text": "Hindi",
}


def _plural(name: str, n: int) -> str:
    if n == 1:
        return f"a {name}" if name[0] not in "aeiou" else f"an {name}"
    return f"{n} {name}es" if name.endswith(("s", "x", "ch", "sh")) else f"{n} {name}s"


def think_text(scene: Scene, rng: random.Random) -> str:
    """The ``<think>`` content for ``scene``."""
    country, city = scene.city.country, scene.city
    if not scene.localizable:
        seen = ", ".join(scene.names()) or "nothing distinctive"
        return (
            f"The image is a close-up showing only: {seen}. These elements occur all over the world and "
            f"nothing in the image points to a region, so the location cannot be determined confidently. "
            f"Any answer is a low-confidence guess."
        )
    sentences: list[str] = []
    counts: dict[str, int] = {}
    for e in scene.elements:
        counts[e.name] = counts.get(e.name, 0) + 1
    country_set = {*country.vegetation, country.building, country.terrain, country.flag, country.ground}
    if scene.ground:
        sentences.append(f"The ground is {scene.ground}, suggesting {_COUNTRY_HINT[scene.ground]}.")
    done: set[str] = set()
    for e in scene.elements:
        name = e.name
        if name in done or name in ("road", "sky"):
            continue
        done.add(name)
        n = counts[name]
        if e.role == "distractor":
            continue
        if name == "car":
            sentences.append(f"A car drives on the {scene.drive} side of the road, so traffic keeps {scene.drive}.")
        elif name == "sign":
            signs = [s for s in scene.elements if s.name == "sign"]
            for s in signs:
                if s.role == "city":
                    sentences.append(f'A sign in latin text reads "{s.text}", the name of {city.name}.')
                elif s.text:
                    sentences.append(f'A sign reads "{s.text}" in {s.script}, pointing to {_SCRIPT_HINT[s.script]}.')
                else:
                    sentences.append(f"A sign carries {s.script}, pointing to {_SCRIPT_HINT[s.script]}.")
        elif name.endswith(" flag"):
            sentences.append(f"A {name} flies on a pole; it is the national flag of {country.name}.")
        elif e.role == "borrowed" and name not in country_set:
            sentences.append(f"There is also {_plural(name, n)}, which is less typical here and does not change the picture.")
        elif e.role in ("country", "borrowed") and name in _COUNTRY_HINT:
            sentences.append(f"I see {_plural(name, n)}, typical of {_COUNTRY_HINT[name]}.")
        elif e.role == "city":
            if name == "water":
                sentences.append("There is water at the horizon, so the place is on a coast, a lake or a river.")
            else:
                sentences.append(f"The {name} in the scene is characteristic of {city.name}.")
        elif e.role == "district" and scene.district is not None:
            d = scene.district
            if name == "awning":
                sentences.append(f"A {d.awning} awning is out; {d.awning} awnings mark the {d.name} district of {city.name}.")
            else:
                sentences.append(f"I see {_plural(name, n)}, which marks the {d.name} district of {city.name}.")
    if rng.random() < 0.5:  # vary the order a little, keep the conclusion last
        sentences = sentences[1:] + sentences[:1] if len(sentences) > 2 else sentences
    city_cues = [e for e in scene.elements if e.role == "city"]
    if city_cues:
        conclusion = f"Together these cues point to {country.name}, and the city-specific ones to {city.name}."
    else:
        conclusion = (f"Together these cues point to {country.name}; nothing identifies the city itself, so "
                      f"{city.name} is my best guess among its cities.")
    if scene.district is not None:
        d = scene.district
        if any(e.role == "district" for e in scene.elements):
            conclusion += f" The district cues place the image in the {d.name} district of {city.name}."
        else:
            conclusion += f" Nothing marks the district, so the {d.name} district of {city.name} is a guess."
    return " ".join(sentences + [conclusion])


def trace(scene: Scene, rng: random.Random, coordinates: tuple[float, float] | None = None) -> str:
    """Full target completion: ``<think>...</think><answer>country: ..\\ncity: ..</answer>``, with a
    ``coordinates:`` line when ``coordinates`` are given."""
    return format_answer(think_text(scene, rng), scene.city.country.name, scene.city.name, coordinates)
