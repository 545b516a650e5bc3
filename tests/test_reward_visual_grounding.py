"""VisualGroundingReward (R_vis) and its concept vocabulary."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from data_modules.geosynth.cues import ENTITIES
from data_modules.sample import GeoSample
from globe.rewards.base import RewardBatch
from globe.rewards.visual_concepts import ConceptVocabulary, plural_forms
from globe.rewards.visual_grounding import VisualGroundingReward

IMAGE = Image.new("RGB", (32, 32), (0, 128, 0))


def think(text: str) -> str:
    return f"<think>{text}</think><answer>country: Egypt\ncity: Cairo</answer>"


def scores(head, completions, entities) -> list[float]:
    n = len(completions)
    samples = [GeoSample(key="k", image=IMAGE, lat=0.0, lon=0.0, country="", city="", entities=list(entities))] * n
    return head.score(RewardBatch([IMAGE] * n, [""] * n, completions, samples)).tolist()


@pytest.fixture(scope="module")
def vocab() -> ConceptVocabulary:
    return ConceptVocabulary.load()


ENTS = ["palm tree", "sand", "pyramid", "sign", "arabic text"]


def test_precision_hand_worked():
    head = VisualGroundingReward()  # precision, related hierarchy
    got = scores(
        head,
        [
            think("Palm trees and a pyramid stand on the sand."),  # E = {palm, pyramid, sand}, all in V -> 3/3
            think("Palm trees, a pyramid and snow-capped mountains."),  # E = {palm, pyramid, snow, mountain} -> 2/4
            think("A sign in Arabic script next to a skyscraper and a tram."),  # {sign, arabic text, skyscraper, tram} -> 2/4
            think("The vibe suggests somewhere warm."),  # E empty -> empty_score 0
        ],
        ENTS,
    )
    assert got == pytest.approx([1.0, 0.5, 0.5, 0.0])


def test_each_hallucinated_entity_lowers_the_score():
    head = VisualGroundingReward()
    grounded = "Palm trees and a pyramid."
    extra = ["snow", "a tram", "a lighthouse"]
    got = scores(head, [think(grounded + "".join(f" Also {e}." for e in extra[:k])) for k in range(4)], ENTS)
    assert got == pytest.approx([2 / 2, 2 / 3, 2 / 4, 2 / 5])  # 2 grounded over a growing |E|


def test_recall_f1_and_the_papers_recall():
    text = think("Palm trees and a pyramid, and snow.")  # E = {palm tree, pyramid, snow}; V has 5 elements
    assert scores(VisualGroundingReward(mode="recall"), [text], ENTS) == pytest.approx([2 / 5])
    p, r = 2 / 3, 2 / 5
    assert scores(VisualGroundingReward(mode="f1"), [text], ENTS) == pytest.approx([2 * p * r / (p + r)])
    # the paper's code: substring of each lower-cased entity in the text before </think>;
    # "palm tree" is in "palm trees", "pyramid" matches, the other 3 do not -> 2/5
    assert scores(VisualGroundingReward(mode="paper_recall"), [text], ENTS) == pytest.approx([2 / 5])
    # recall of an image without known elements is 0
    assert scores(VisualGroundingReward(mode="recall"), [text], []) == [0.0]


def test_negated_mentions_are_not_claims():
    head = VisualGroundingReward()
    text = think("There is no snow and there aren't any trams, but palm trees line the sand.")
    assert scores(head, [text], ENTS) == [1.0]  # E = {palm tree, sand}
    counted = VisualGroundingReward(ignore_negated=False)
    assert scores(counted, [text], ENTS) == pytest.approx([2 / 4])  # snow and tram now count as claims


def test_hierarchy_modes(vocab):
    text = think("Lush vegetation, trees and a sea view.")  # vegetation, tree (broader than palm); sea (narrower than water)
    ents = ["palm tree", "water"]
    assert scores(VisualGroundingReward(hierarchy="exact"), [text], ents) == [0.0]
    assert scores(VisualGroundingReward(hierarchy="broader"), [text], ents) == pytest.approx([2 / 3])
    assert scores(VisualGroundingReward(hierarchy="related"), [text], ents) == [1.0]
    assert {"tree", "vegetation"} <= vocab.ancestors("palm tree")


def test_plurals_multiword_and_word_boundaries(vocab):
    assert vocab.mentioned("Two cacti, three churches, some buses and many people.") == {"cactus", "church", "bus", "person"}
    assert vocab.mentioned("snow-capped peaks") == {"snow", "mountain"}  # hyphen read as a space
    assert vocab.mentioned("a carpet, a cartoon, a scarf") == set()  # "car" only as a whole word
    assert vocab.mentioned("palm trees") == {"palm tree"}  # longest phrase wins: not also "tree"
    assert vocab.mentioned("signs of wear on a man-made wall") == {"wall"}  # idioms in the ignore list
    assert vocab.mentioned('A sign reads "GATE" in latin text') == {"sign", "latin text"}  # quoted sign text is not seen
    assert plural_forms("bench") == ("benches",) and plural_forms("leaf") == ("leaves",)


def test_labels_outside_the_vocabulary_are_matched_literally():
    head = VisualGroundingReward()
    got = scores(head, [think("A zeppelin over palm trees."), think("Palm trees and a submarine.")], ["zeppelin", "palm tree"])
    assert got == pytest.approx([1.0, 1.0])  # zeppelin is found literally; "submarine" is no concept, no claim
    recall = VisualGroundingReward(mode="recall")
    assert scores(recall, [think("A zeppelin over palm trees."), think("Palm trees and a submarine.")], ["zeppelin", "palm tree"]) == [1.0, 0.5]


@pytest.mark.parametrize("mode", ["precision", "recall", "f1", "paper_recall"])
def test_malformed_completions_score_zero(mode):
    bad = [None, "", "   ", "%%% garbage ~~~", "<think>", "<think></think><answer></answer>", "</think></answer>", 3.5]
    assert scores(VisualGroundingReward(mode=mode), bad, ENTS) == [0.0] * len(bad)


def test_no_tags_and_truncated_completions_use_the_whole_text():
    head = VisualGroundingReward()
    assert scores(head, ["Palm trees on sand", "<think>Palm trees on sand and"], ENTS) == [1.0, 1.0]
    strict = VisualGroundingReward(require_well_formed=True)
    assert scores(strict, ["Palm trees on sand", think("Palm trees on sand")], ENTS) == [0.0, 1.0]


def test_vocabulary_covers_geosynth_cues_one_to_one(vocab):
    for name in ENTITIES:
        assert vocab.concepts_of(name) == {name}, name


def test_geosynth_teacher_reasoning_is_fully_grounded():
    """Every GeoSynth trace names only drawn elements: precision 1 for all of them."""
    from data_modules.geosynth import generate_record

    head = VisualGroundingReward()
    records = [generate_record(seed=3, split="train", index=i).meta for i in range(60)]
    got = [head.score_one(m["reasoning"], m["entities"]) for m in records]
    assert got == [1.0] * len(records)


def test_vocabulary_rejects_conflicts_and_unknown_parents(tmp_path):
    with pytest.raises(ValueError, match="two concepts"):
        ConceptVocabulary({"a": {"synonyms": ["x"]}, "b": {"synonyms": ["x"]}})
    with pytest.raises(ValueError, match="not concepts"):
        ConceptVocabulary({"a": {"parents": ["nowhere"]}})
    with pytest.raises(ValueError, match="cycle"):
        ConceptVocabulary({"a": {"parents": ["b"]}, "b": {"parents": ["a"]}})
    custom = tmp_path / "v.yaml"
    custom.write_text("concepts:\n  zeppelin: {synonyms: [airship]}\n")
    head = VisualGroundingReward(vocabulary_path=str(custom))
    assert scores(head, [think("An airship.")], ["zeppelin"]) == [1.0]


def _tiny_segformer(path, labels, winner: int) -> None:
    """A randomly initialised SegFormer whose classifier always picks ``winner``."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], patch_sizes=[7], strides=[4],
        num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=8, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    model = SegformerForSemanticSegmentation(config)
    with torch.no_grad():
        model.decode_head.classifier.weight.zero_()
        model.decode_head.classifier.bias.fill_(-10.0)
        model.decode_head.classifier.bias[winner] = 10.0
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}, "do_normalize": True}))


def test_segmentation_labels_source(tmp_path):
    from globe.rewards.image_elements import ImageElementSource, SegmentationLabels

    labels = ["sky", "building", "palm", "road"]
    _tiny_segformer(tmp_path, labels, winner=2)  # every pixel is "palm"
    source = SegmentationLabels(str(tmp_path), min_fraction=0.05)
    assert isinstance(source, ImageElementSource)
    head = VisualGroundingReward(source=source)
    other = Image.new("RGB", (40, 20), (200, 10, 10))
    batch = RewardBatch(
        images=[IMAGE, IMAGE, other],
        prompts=[""] * 3,
        completions=[think("Palm trees."), think("Palm trees and snow."), think("A skyscraper.")],
        samples=[GeoSample(key="k", image=IMAGE, lat=0.0, lon=0.0, country="", city="")] * 3,  # no entities
    )
    assert source.elements(batch) == [["palm"], ["palm"], ["palm"]]  # ADE20K-style "palm" -> palm tree
    assert head.score(batch).tolist() == pytest.approx([1.0, 0.5, 0.0])
