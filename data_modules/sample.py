"""``GeoSample``, re-exported from the library (:mod:`globe.sample`), where it is defined.

Kept so that ``from data_modules.sample import GeoSample`` (and anything pickled under that
name) goes on resolving to the one class.
"""

from __future__ import annotations

from globe.sample import GeoSample

__all__ = ["GeoSample"]
