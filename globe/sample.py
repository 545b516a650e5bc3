"""The one sample type every GLOBE data module yields and the library consumes.

Batches are plain ``list[GeoSample]`` (the collate function is ``list``): images stay PIL
images so the model side decides how to process them (chat template, resizing, patches).
The type lives in the library so that ``globe`` never imports the data modules;
``data_modules.sample`` re-exports it for existing imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

__all__ = ["GeoSample"]


@dataclass
class GeoSample:
    """One geo-tagged image with its metadata.

    Attributes:
        key: unique id of the sample inside its data set (WebDataset ``__key__`` or IMG_ID).
        image: decoded RGB image.
        lat: ground-truth latitude in degrees.
        lon: ground-truth longitude in degrees.
        country: ground-truth country name ("" when unknown, e.g. IM2GPS3K).
        city: ground-truth city name ("" when unknown).
        localizable: whether the image carries enough cues to be localised.
        reasoning: target completion in the answer format (``<think>..</think><answer>..</answer>``)
            or the teacher's reasoning text; "" when the source has none.
        entities: visual elements known to be in the image (lowercase concept names).
        extra: anything else the source carried (provenance, scores, shard url, CSV columns).
    """

    key: str
    image: Image.Image
    lat: float
    lon: float
    country: str
    city: str
    localizable: bool = True
    reasoning: str = ""
    entities: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
