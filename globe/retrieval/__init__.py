"""GeoCLIP-style image-to-GPS retrieval: location encoder, image encoder, contrastive loss with a
GPS queue, GPS gallery index, GeoCLIP's released weights, and the ``GeoRetrieval`` LightningModule
(``python cli.py fit --config configs/retrieval/geosynth.yaml``; docs/retrieval.md)."""

from globe.retrieval.gallery import GPSGallery, GalleryHits
from globe.retrieval.location_encoder import LocationEncoder
from globe.retrieval.module import GeoRetrieval

__all__ = ["GPSGallery", "GalleryHits", "GeoRetrieval", "LocationEncoder"]
