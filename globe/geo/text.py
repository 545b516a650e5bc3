"""Name normalisation shared by the gazetteer, the country table and the rewards.

``fold`` maps every spelling a model or a data set may use for one name onto one key:
Unicode NFKD decomposition with combining marks removed (``São`` -> ``Sao``), a few
letters that NFKD leaves alone transliterated (``ø``, ``æ``, ``ł``, ``ß`` ...), case folding,
every non-alphanumeric character turned into a space (``Saint-Étienne`` -> ``saint etienne``,
``U.S.`` -> ``u s``), runs of spaces collapsed. Non-Latin scripts pass through unchanged
(apart from case folding), so ``Москва`` is still a key of its own.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["fold"]

# letters NFKD does not decompose into a base letter + combining mark
_TRANSLIT = str.maketrans(
    {
        "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ł": "l", "Ł": "l",
        "đ": "d", "Đ": "d", "ð": "d", "Ð": "d", "þ": "th", "Þ": "th", "ı": "i", "ß": "ss",
        "ħ": "h", "Ħ": "h", "ŀ": "l", "ŉ": "n",
    }
)
# apostrophes become spaces like every other punctuation mark: "d'Ivoire" -> "d ivoire"
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _combining_class() -> re.Pattern:
    """Every code point with a non-zero canonical combining class, as one class of ranges."""
    points = [c for c in range(0x300, 0x1F000) if unicodedata.combining(chr(c))]
    ranges, start = [], points[0]
    for prev, cur in zip(points, points[1:] + [None]):
        if cur != prev + 1:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}" if prev > start else re.escape(chr(start)))
            start = cur
    return re.compile("[" + "".join(ranges) + "]+")


_COMBINING = _combining_class()


@lru_cache(maxsize=1 << 16)
def fold(s: str) -> str:
    """Return the matching key of a name: accents stripped, case folded, punctuation -> space.

    >>> fold("  São-Paulo!! ")
    'sao paulo'
    >>> fold("Côte d'Ivoire")
    'cote d ivoire'
    >>> fold("MÜNCHEN") == fold("Munchen")
    True
    """
    if not isinstance(s, str):
        return ""
    if not s.isascii():
        s = _COMBINING.sub("", unicodedata.normalize("NFKD", s.translate(_TRANSLIT)))
    return _NON_WORD.sub(" ", s.casefold()).strip()
