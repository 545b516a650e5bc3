"""What the distillation's data module hands to the teachers: samples with their file bytes,
in batches that know which input chunk they belong to.

A *chunk* is the unit of work and of resume: ``chunk_size`` consecutive CSV rows, or one input
shard. Every chunk is batched on its own (a batch never spans two chunks), its last batch says
so (``chunk_end``) and carries what the data module skipped in the chunk (corrupt images,
unsafe ids...), so that the writer can publish the chunk's shard and its done-marker as soon
as the chunk is finished, whatever order several DataLoader workers deliver chunks in. A chunk
whose images are all unusable still yields one (empty) last batch. A rank with nothing left to
do yields one empty batch without a chunk (``chunk is None``), so that every rank runs its
predict hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from globe.sample import GeoSample

__all__ = ["ChunkBatch", "DistillSample"]


@dataclass
class DistillSample(GeoSample):
    """A ``GeoSample`` plus the image file's bytes (written out as they are when they are a JPEG)
    and where it came from (``"csv"`` row or ``"shards"``). Entities of a source shard stay in
    ``entities`` (GeoSynth's drawn elements: the "oracle" segmentation); its reasoning is dropped."""

    image_bytes: bytes = b""
    source: str = ""


class ChunkBatch(list):
    """``list[DistillSample]`` of one chunk (see the module docstring).

    Attributes:
        chunk: the chunk's id (``None``: an empty batch of a rank with no chunk left).
        chunk_end: this is the chunk's last batch.
        rows: on the last batch, the chunk's input rows (usable or not).
        skipped: on the last batch, ``{reason: count}`` of the chunk's rows the data module skipped.
        skipped_keys: on the last batch, up to 10 ``(reason, key)`` examples.
    """

    def __init__(self, samples=(), chunk: int | None = None, chunk_end: bool = False, rows: int = 0,
                 skipped: dict[str, int] | None = None, skipped_keys: list[tuple[str, str]] | None = None) -> None:
        super().__init__(samples)
        self.chunk = chunk
        self.chunk_end = chunk_end
        self.rows = rows
        self.skipped = dict(skipped or {})
        self.skipped_keys = list(skipped_keys or [])

    def __reduce__(self):  # DataLoader workers pickle batches: keep the attributes
        return (ChunkBatch, (list(self), self.chunk, self.chunk_end, self.rows, self.skipped, self.skipped_keys))
