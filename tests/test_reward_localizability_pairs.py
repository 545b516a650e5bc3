"""LocalizabilityPairs: positives, the three kinds of negatives, determinism, GeoSynth round trip."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from PIL import Image

from data_modules.localizability_pairs import LocalizabilityPairs, make_pairs
from data_modules.sample import GeoSample


def stream(n: int = 40) -> list[GeoSample]:
    countries = ["France", "Japan", "Egypt", "Peru"]
    out = []
    for i in range(n):
        out.append(
            GeoSample(
                key=f"s{i}", image=Image.new("RGB", (4, 4), (i, 0, 0)), lat=0.0, lon=0.0,
                country=countries[i % 4], city="c", localizable=i % 5 != 0,  # every 5th is a close-up
                reasoning=f"reasoning of s{i}" if i != 7 else "",  # s7 has none: skipped
            )
        )
    return out


def test_kinds_labels_and_partners():
    samples = {s.key: s for s in stream()}
    pairs = list(make_pairs(samples.values(), random.Random(0), swap_fraction=1.0, claim_fraction=1.0))
    kinds = Counter(p.kind for p in pairs)
    # 40 samples: 8 non-localizable (s0, s5, ...), s7 skipped -> 31 positives
    assert kinds["positive"] == 31 and kinds["non_localizable"] == 8
    assert kinds["swapped"] == 30  # every positive but the first (empty reservoir) gets one
    assert kinds["non_localizable_claim"] == 7  # every close-up but s0 (empty reservoir)
    for p in pairs:
        assert p.label == (1 if p.kind == "positive" else 0)
        if p.kind in ("swapped", "non_localizable_claim"):
            own, partner = (samples[k] for k in p.key.split("|"))
            assert p.image is own.image and p.reasoning == partner.reasoning and partner.localizable
            if p.kind == "swapped":
                assert partner.country != own.country  # swap_scope="country"
        else:
            assert p.reasoning == samples[p.key].reasoning
    assert all(p.key != "s7" for p in pairs)


def test_fractions_zero_give_positives_and_plain_negatives_only():
    pairs = list(make_pairs(stream(), random.Random(0), swap_fraction=0.0, claim_fraction=0.0))
    assert {p.kind for p in pairs} == {"positive", "non_localizable"}


class _Source:
    """A minimal data module: list[GeoSample] batches."""

    trainer = None

    def prepare_data(self):
        pass

    def setup(self, stage=None):
        pass

    def train_dataloader(self):
        data = stream()
        return [data[i : i + 8] for i in range(0, len(data), 8)]

    val_dataloader = train_dataloader


def test_datamodule_batches_and_determinism():
    dm = LocalizabilityPairs(_Source(), batch_size=8, seed=1)  # type: ignore[arg-type]
    dm.prepare_data()
    dm.setup("fit")
    val1 = [(p.key, p.kind) for b in dm.val_dataloader() for p in b]
    val2 = [(p.key, p.kind) for b in dm.val_dataloader() for p in b]
    assert val1 == val2  # validation pairs are the same every epoch
    batches = list(dm.train_dataloader())
    assert all(isinstance(b, list) and 0 < len(b) <= 8 for b in batches)
    epoch1 = [p.key for b in batches for p in b]
    epoch2 = [p.key for b in dm.train_dataloader() for p in b]
    assert epoch1 != epoch2  # training swaps change with the epoch
    with pytest.raises(ValueError):
        LocalizabilityPairs(_Source(), swap_fraction=1.5)  # type: ignore[arg-type]


def test_geosynth_source_round_trip(tmp_path):
    from data_modules.geosynth import GeoSynth

    source = GeoSynth(root=str(tmp_path), train_size=24, val_size=16, test_size=2, min_shards=1, batch_size=8)
    dm = LocalizabilityPairs(source, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    pairs = [p for b in dm.val_dataloader() for p in b]
    assert pairs and {p.kind for p in pairs} <= {"positive", "non_localizable", "non_localizable_claim", "swapped"}
    assert all(isinstance(p.image, Image.Image) and p.reasoning for p in pairs)
