"""GeoRetrieval: GeoCLIP-style image-to-GPS retrieval as a LightningModule.

Algorithm (GeoCLIP, Vivanco Cepeda, Nayak and Shah, NeurIPS 2023):

1. image encoder V: a vision tower (frozen by default) and an MLP -> ``[B, D]``;
2. location encoder L: Equal Earth projection, random Fourier features at scales σ_i
   (2^0, 2^4, 2^8), one MLP branch per scale, summed -> ``[N, D]``;
3. training step: candidates = the batch's coordinates followed by the GPS queue (past
   batches' coordinates); loss = cross-entropy of ``exp(t) · cos(V(x_i), L(g_j))`` over the
   candidates with target i; then the batch's coordinates enter the queue;
4. prediction: the gallery point whose embedding has the largest cosine with V(x); validation
   and test report top-1 accuracy at 1 / 25 / 200 / 750 / 2500 km (``GeoAccuracy``);
   ``predict`` returns one :class:`RetrievalPrediction` per image, the rows the predictions
   CSV has (``pred_level="coordinates"``, no names), which ``callbacks.prediction_writer``
   writes and ``python -m globe.score`` scores, plus the top-k points and their cosines.

Deviations from GeoCLIP, each a switch: the GPS queue starts empty (:mod:`.queue`); queue
jitter is optional (``queue_jitter_km``); candidates within ``false_negative_km`` of an image's
own location are not its negatives (:mod:`.loss`; off by default); ``exp(t)`` is clamped at
``max_logit_scale``; the default gallery is the distinct training locations seen so far, kept
in the checkpoint (GeoCLIP ships a fixed 100K CSV: ``gallery: geoclip``); images are resized
and centre-cropped without torchvision (:mod:`.preprocess`); the optimiser is AdamW (GeoCLIP:
Adam, lr 3e-5, weight decay 1e-6, a step decay per epoch of 0.87 -> ``lr_gamma``). Under
several ranks the queue and the gallery receive every rank's coordinates (``all_gather``), so
they stay identical on all ranks.

``geoclip: true`` loads the released location encoder, image MLP and temperature from the
``geoclip`` package (:mod:`.geoclip_weights`); its MLP expects the 768-d image features of
CLIP ViT-L/14 (``vision_path`` to a local copy of that model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from globe.evaluation import Prediction
from globe.metrics import GeoAccuracy
from globe.retrieval.gallery import GPSGallery
from globe.retrieval.gallery_csv import read_gallery_csv
from globe.retrieval.geoclip_weights import find_geoclip_package, load_geoclip_weights, GEOCLIP_FILES
from globe.retrieval.image_encoder import ImageEncoder
from globe.retrieval.location_encoder import LocationEncoder
from globe.retrieval.loss import contrastive_loss, false_negative_mask
from globe.retrieval.queue import GPSQueue
from globe.retrieval.seen_locations import SeenLocations
from globe.sample import GeoSample

__all__ = ["GeoRetrieval", "RetrievalPrediction"]


@dataclass
class RetrievalPrediction(Prediction):
    """A coordinates-only prediction (``pred_level="coordinates"``, no names: ``country_ok`` /
    ``city_ok`` NaN, empty ``pred_text``) with the top-k gallery points, best first, and their
    cosines. The CSV keeps the predictions columns; JSONL also carries ``top_k`` / ``scores``."""

    top_k: list[list[float]] = field(default_factory=list)  # [k, 2] (lat, lon)
    scores: list[float] = field(default_factory=list)  # [k]


def _coordinates(batch: Sequence[GeoSample], device: torch.device) -> torch.Tensor:
    return torch.tensor([[s.lat, s.lon] for s in batch], dtype=torch.float32, device=device)  # [B, 2]


class GeoRetrieval(LightningModule):
    """Image-to-GPS retrieval trained with a contrastive loss and a GPS queue (see the module docstring).

    Args:
        vision_path: local Hugging Face vision model directory (CLIP, SigLIP, ...); ``None``: a tiny
            random CLIP vision tower built from ``vision_config``.
        vision_config: ``CLIPVisionConfig`` arguments of the tiny tower.
        freeze_vision: keep the vision tower fixed (GeoCLIP freezes CLIP).
        image_size: input side in pixels (``None``: the tower's).
        image_mlp_hidden: hidden width of the image MLP.
        embed_dim: size of the shared embedding space.
        sigmas: one location-encoder branch per value (RFF frequency standard deviation).
        num_frequencies: RFF frequencies per branch.
        location_hidden: width of each branch's MLP.
        location_depth: Linear + ReLU blocks per branch.
        frequency_seed: seed of the RFF frequencies.
        geoclip: load GeoCLIP's released location encoder, image MLP and temperature.
        geoclip_dir: the ``geoclip`` package directory (``None``: the installed package).
        queue_size: GPS queue rows (GeoCLIP: 4096; 0: in-batch negatives only).
        queue_jitter_km: noise added to queued coordinates, standard deviation in km (0: none).
        false_negative_km: candidates within this distance of an image's own location are not
            its negatives (``None``: every other candidate is).
        init_temperature: initial softmax temperature (exp(t) = 1 / temperature).
        learn_temperature: train the temperature.
        max_logit_scale: upper clamp of exp(t).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_gamma: learning-rate factor applied after every epoch (GeoCLIP: 0.87).
        gallery: ``None``: the distinct training locations seen so far; ``"geoclip"``: the
            package's 100K CSV; else a CSV path with LAT / LON columns.
        gallery_capacity: most training locations kept for the default gallery.
        gallery_backend: ``"matmul"`` (torch) or ``"faiss"`` (exact inner-product index).
        thresholds_km: accuracy thresholds.
        top_k: gallery points returned per image by ``predict``.
    """

    def __init__(
        self,
        vision_path: str | None = None,
        vision_config: dict | None = None,
        freeze_vision: bool = True,
        image_size: int | None = None,
        image_mlp_hidden: int = 768,
        embed_dim: int = 512,
        sigmas: list[float] = [2.0**0, 2.0**4, 2.0**8],  # noqa: B006 - jsonargparse reads defaults from the signature
        num_frequencies: int = 256,
        location_hidden: int = 1024,
        location_depth: int = 3,
        frequency_seed: int = 0,
        geoclip: bool = False,
        geoclip_dir: str | None = None,
        queue_size: int = 4096,
        queue_jitter_km: float = 0.0,
        false_negative_km: float | None = None,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
        learning_rate: float = 3e-5,
        weight_decay: float = 1e-6,
        lr_gamma: float = 1.0,
        gallery: str | None = None,
        gallery_capacity: int = 100_000,
        gallery_backend: Literal["matmul", "faiss"] = "matmul",
        thresholds_km: list[float] = [1, 25, 200, 750, 2500],  # noqa: B006
        top_k: int = 5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_encoder = ImageEncoder(vision_path, vision_config, freeze_vision, image_mlp_hidden, embed_dim, image_size)
        self.location_encoder = LocationEncoder(sigmas, num_frequencies, location_hidden, location_depth, embed_dim, frequency_seed)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature)
        if geoclip:
            load_geoclip_weights(self.location_encoder, self.image_encoder.mlp, self.logit_scale, geoclip_dir)
        self.queue = GPSQueue(queue_size, queue_jitter_km, seed=frequency_seed)
        self.seen = SeenLocations(gallery_capacity)
        self.val_metric = GeoAccuracy(thresholds_km)
        self.test_metric = GeoAccuracy(thresholds_km)
        self._gallery: GPSGallery | None = None

    # ---- steps -------------------------------------------------------------------------------

    def embed_images(self, images: Sequence) -> torch.Tensor:
        """PIL images -> image embeddings ``[B, D]`` (unnormalised)."""
        return self.image_encoder(self.image_encoder.pixels(images).to(self.device))

    def _gather(self, coordinates: torch.Tensor) -> torch.Tensor:
        if self._trainer is not None and self._trainer.world_size > 1:
            return self.all_gather(coordinates).reshape(-1, 2)  # every rank's batch, rank order
        return coordinates

    def training_step(self, batch: list[GeoSample], batch_idx: int) -> torch.Tensor:
        coords = _coordinates(batch, self.device)  # [B, 2]
        candidates = torch.cat([coords, self.queue.negatives().to(coords)])  # [B + Q, 2]
        image_emb = self.embed_images([s.image for s in batch])  # [B, D]
        location_emb = self.location_encoder(candidates)  # [B + Q, D]
        mask = None
        if self.hparams.false_negative_km is not None:
            mask = false_negative_mask(coords, candidates, self.hparams.false_negative_km)
        loss, logits = contrastive_loss(image_emb, location_emb, self.logit_scale, mask, self.hparams.max_logit_scale)
        seen = self._gather(coords)
        self.queue.push(seen)
        self.seen.add(seen)
        b = coords.shape[0]
        self.log_dict({
            "train/loss": loss.detach(),
            "train/logit_scale": self.logit_scale.detach().exp(),
            "train/queue_filled": float(self.queue.filled),
            "train/batch_top1": (logits.argmax(dim=1) == torch.arange(b, device=logits.device)).float().mean(),
            "train/masked_fraction": mask.float().mean() if mask is not None else 0.0,
            "train/gallery_size": float(len(self.seen)),
        }, batch_size=b)
        return loss

    def _gallery_coordinates(self) -> torch.Tensor:
        source = self.hparams.gallery
        if source is None:
            return self.seen.coordinates()
        if source == "geoclip":
            return read_gallery_csv(find_geoclip_package(self.hparams.geoclip_dir) / GEOCLIP_FILES["gallery"])
        return read_gallery_csv(source)

    def build_gallery(self) -> GPSGallery | None:
        """Encode the gallery with the current location encoder (``None`` if it is empty)."""
        coords = self._gallery_coordinates()
        if coords.shape[0] == 0:
            return None
        was_training = self.location_encoder.training
        self.location_encoder.eval()
        gallery = GPSGallery.encode(coords.to(self.device), self.location_encoder, self.hparams.gallery_backend)
        self.location_encoder.train(was_training)
        return gallery

    def _start_eval(self) -> None:
        self._gallery = self.build_gallery()
        if self._gallery is None:
            rank_zero_warn("GeoRetrieval: the gallery is empty (no training location seen yet and no gallery CSV); "
                           "accuracy is not computed for this pass")

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def _eval_step(self, batch: list[GeoSample], metric: GeoAccuracy, prefix: str) -> None:
        coords = _coordinates(batch, self.device)
        image_emb = self.embed_images([s.image for s in batch])
        loss, _ = contrastive_loss(image_emb, self.location_encoder(coords), self.logit_scale,
                                   max_logit_scale=self.hparams.max_logit_scale)
        self.log(f"{prefix}/loss", loss, batch_size=coords.shape[0], sync_dist=True)
        if self._gallery is None:
            return
        pred = self._gallery.search(image_emb, k=1).coordinates[:, 0].to(self.device)  # [B, 2]
        metric.update(pred[:, 0], pred[:, 1], coords[:, 0], coords[:, 1])

    def validation_step(self, batch: list[GeoSample], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metric, "val")

    def test_step(self, batch: list[GeoSample], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metric, "test")

    def _end_eval(self, metric: GeoAccuracy, prefix: str) -> None:
        if self._gallery is not None:
            values = metric.compute()
            keep = {k: v for k, v in values.items() if k not in ("country_acc", "city_acc", "n_unresolved")}
            self.log_dict({f"{prefix}/{k}": v.float() for k, v in keep.items()})
            self.log(f"{prefix}/gallery_size", float(len(self._gallery)))
        metric.reset()
        self._gallery = None

    def on_validation_epoch_end(self) -> None:
        self._end_eval(self.val_metric, "val")

    def on_test_epoch_end(self) -> None:
        self._end_eval(self.test_metric, "test")

    def on_predict_epoch_start(self) -> None:
        self._gallery = self.build_gallery()
        if self._gallery is None:
            raise RuntimeError("GeoRetrieval.predict needs a gallery: train first, or set gallery to a CSV or 'geoclip'")

    def predict_step(self, batch: list[GeoSample], batch_idx: int) -> list[RetrievalPrediction]:
        """Per image: the top-1 gallery point as a predictions row (IDs and ground truth from the
        sample, as the policy's rows), with the top-k points and their cosine scores."""
        hits = self._gallery.search(self.embed_images([s.image for s in batch]), k=min(self.hparams.top_k, len(self._gallery)))
        return [
            RetrievalPrediction(
                IMG_ID=s.extra.get("img_id", s.key), pred_country="", pred_city="",
                pred_lat=float(c[0, 0]), pred_lon=float(c[0, 1]), pred_level="coordinates",
                LAT=float(s.lat), LON=float(s.lon), country=s.country or "", city=s.city or "",
                country_ok=math.nan, city_ok=math.nan, pred_text="", top_k=c.tolist(), scores=sc.tolist(),
            )
            for s, c, sc in zip(batch, hits.coordinates, hits.scores)
        ]

    # ---- optimisation ------------------------------------------------------------------------

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=self.hparams.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
