"""GeoSynth: procedurally drawn images whose visual cues identify real cities.

``cues`` (entity vocabulary) -> ``places`` (countries/cities and their cues) -> ``scene``
(what one image shows) -> ``drawing`` (pixels) + ``reasoning`` (trace) -> ``generate``
(shards and IM2GPS3K-format files) -> ``datamodule`` (LightningDataModule).
"""

from .cues import ENTITIES, mentioned_entities
from .datamodule import GeoSynth
from .generate import generate_record, write_geosynth
from .places import CITIES, COUNTRIES

__all__ = ["CITIES", "COUNTRIES", "ENTITIES", "GeoSynth", "generate_record", "mentioned_entities", "write_geosynth"]
