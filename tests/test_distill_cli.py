"""``cli.py predict --config configs/distill/...``: teachers -> filters -> MP16-Reason shards that
``MP16Reason`` and the R_loc pairs read, ``report.json``; two DDP ranks writing disjoint shards;
a SIGKILL then the same command again: no duplicate, nothing lost, no half-written shard.

Random tiny teachers write nothing readable, so besides the shipped tiny config (which keeps
nothing) the runs use :class:`ScriptedTeacher`: it answers the distillation prompt with GeoSynth's
own reasoning for each image (found by the image's pixels), so that samples are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from globe.distill.teachers import Teacher

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "distill" / "tiny.yaml"


def pixel_key(image: Image.Image) -> str:
    return hashlib.sha1(image.convert("RGB").tobytes()).hexdigest() + f"-{image.size[0]}x{image.size[1]}"


class ScriptedTeacher(Teacher):
    """Answers from a table ``{pixel_key: output}`` (``answers``, a JSON file); ``delay`` seconds a batch.

    Args:
        name: the teacher's name.
        answers: JSON file written by :func:`write_answers`.
        delay: seconds to wait per batch (gives a test time to kill the run mid-way).
    """

    def __init__(self, name: str, answers: str, delay: float = 0.0) -> None:
        super().__init__(name)
        self.answers = json.loads(Path(answers).read_text())
        self.delay = delay

    def generate(self, images: Sequence[Image.Image], prompt: str, seed: int) -> list[str]:
        time.sleep(self.delay)
        return [self.answers.get(pixel_key(im), "I cannot tell.") for im in images]


def write_answers(geosynth_root: Path, path: Path) -> dict[str, dict]:
    """The scripted teacher's table for GeoSynth's test split; returns the samples' JSON by key."""
    from data_modules.decode import decode_image
    from data_modules.shard_split import expand_shards
    from data_modules.tar_reader import tar_records

    table, metas = {}, {}
    for url in expand_shards(str(geosynth_root / "test" / "test-{000000..000003}.tar")):
        for record in tar_records([{"url": url}], lambda key, detail: None):
            meta = json.loads(record["json"])
            judgement = "localizable: yes\nscore: 0.9" if meta["localizable"] else "localizable: no\nscore: 0.1"
            table[pixel_key(decode_image(record["jpg"]))] = f"{judgement}\n{meta['reasoning']}"
            metas[record["__key__"]] = meta
    path.write_text(json.dumps(table))
    return metas


def _env(run: Path) -> dict[str, str]:
    from globe.geo.gazetteer import default_cache_dir

    return {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(run),
            "PYTHONPATH": str(REPO / "tests"),  # ScriptedTeacher
            "GLOBE_CACHE": str(default_cache_dir())}  # the gazetteer index, built once per machine


def _scripted_config(run: Path, tiny_model_dir, answers: Path, delay: float = 0.0) -> Path:
    """Over tiny.yaml: the scripted teacher and a tiny random one; the random GPS teacher abstains;
    segmentation by GeoSynth's drawn elements (the oracle)."""
    config = {"model": {"init_args": {
        "teachers": [
            {"class_path": "test_distill_cli.ScriptedTeacher", "init_args": {"name": "scripted", "answers": str(answers), "delay": delay}},
            {"class_path": "globe.distill.VLMTeacher",
             "init_args": {"name": "tiny", "model_path": str(tiny_model_dir), "sampling": {"max_new_tokens": 8}}},
        ],
        "agreement": {"gps_min_confidence": 2.0},  # a random GPS teacher has no say
        "segmentation": {"source": "oracle", "model_path": None, "build_tiny_if_missing": False},
    }}}
    path = run / "scripted.yaml"
    path.write_text(json.dumps(config))
    return path


def _args(run: Path, geosynth_root, *configs: Path, out: Path | None = None) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), "predict", "--config", str(TINY), *[a for c in configs for a in ("--config", str(c))],
            f"--model.init_args.gps_teacher.init_args.gallery={geosynth_root / 'im2gps3k' / 'im2gps3k.csv'}",
            f"--data.init_args.shards={geosynth_root / 'test'}/test-{{000000..000003}}.tar",
            "--data.init_args.batch_size=2", f"--trainer.callbacks.out_dir={out or run / 'out'}"]


def _run(args: list[str], run: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=run, env=_env(run), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def _shard_keys(out: Path, pattern: str = "distill-c*.tar") -> list[str]:
    keys = []
    for shard in sorted(out.glob(pattern)):
        with tarfile.open(shard) as tar:  # a complete tar, or this raises
            keys += [m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, tiny_model_dir, geosynth_root):
    """One uninterrupted single-process run of the scripted configuration."""
    run = tmp_path_factory.mktemp("distill-scripted")
    metas = write_answers(geosynth_root, run / "answers.json")
    config = _scripted_config(run, tiny_model_dir, run / "answers.json")
    proc = _run(_args(run, geosynth_root, config), run)
    return run, config, metas, proc


@pytest.mark.slow
def test_shipped_tiny_config_runs_end_to_end(tmp_path, geosynth_root):
    """configs/distill/tiny.yaml as shipped (its tiny teachers and SegFormer built on first use)."""
    proc = _run(_args(tmp_path, geosynth_root), tmp_path)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["rows"], report["images"], report["complete"]) == (8, 8, True)
    assert report["segmentation_source"] == "model"
    assert report["kept"] == 0 and report["dropped_by"]["chain"] == 8  # random teachers: no readable chain
    assert set(report["teachers"]) == {"tiny-a", "tiny-b"}
    assert all(t["unreadable"] == 8 for t in report["teachers"].values())
    assert report["throughput"]["images"] == 8 and report["throughput"]["images_per_second"] > 0
    assert "distillation: 8 input rows, 8 images read" in proc.stdout
    assert (tmp_path / "artifacts" / "tiny-segformer" / "config.json").exists()  # the real segmentation path ran


@pytest.mark.slow
def test_distilled_shards_are_read_by_mp16_reason_and_the_pairs(scripted_run):
    from data_modules.localizability_pairs import make_pairs
    from data_modules.mp16_reason import MP16Reason
    from globe.answer import parse_answer

    import random

    run, _, metas, proc = scripted_run
    report = json.loads((run / "out" / "report.json").read_text())
    localizable = {k for k, m in metas.items() if m["localizable"]}
    assert report["images"] == 8 and report["kept"] == len(localizable) > 0
    assert report["kept"] + sum(report["combinations"].values()) == report["images"]
    assert report["non_localizable_written"] == 8 - len(localizable)
    assert report["teachers"]["tiny"]["unreadable"] == 8 and report["teachers"]["scripted"]["unreadable"] == 0
    assert sum(report["kept_per_country"].values()) == report["kept"]
    assert "kept " in proc.stdout

    dm = MP16Reason(test_shards=report["shards"], batch_size=4)
    samples = [s for batch in dm.predict_dataloader() for s in batch]
    assert sorted(s.key for s in samples) == sorted(localizable)
    for s in samples:
        truth = metas[s.key]
        assert (s.country, s.city, s.localizable) == (truth["country"], truth["city"], True)
        assert parse_answer(s.reasoning).well_formed
        assert s.entities and set(s.entities) <= _concepts(truth["entities"])  # verified against the drawn elements
        distill = s.extra["distill"]
        assert distill["kept_teacher"] == "scripted" and distill["segmentation_source"] == "oracle"
        assert [t["name"] for t in distill["teachers"]] == ["scripted", "tiny"]
        assert distill["teachers"][0]["correct"] and "no_country" in distill["teachers"][1]["problems"]
        assert s.extra["source"]["kind"] == "shards"
    negatives = [s for batch in MP16Reason(test_shards=report["non_localizable_shards"] or report["shards"]).predict_dataloader()
                 for s in batch]
    pairs = list(make_pairs(samples + [n for n in negatives if not n.localizable], random.Random(0)))
    assert {p.kind for p in pairs} >= {"positive"} and all(p.label in (0, 1) for p in pairs)
    if report["non_localizable_written"]:
        assert any(p.kind == "non_localizable" for p in pairs)


def _concepts(labels: list[str]) -> set[str]:
    from globe.rewards.visual_grounding import VisualGroundingReward

    head = VisualGroundingReward()
    concepts, _ = head.present_concepts(labels)
    return concepts | {a for c in concepts for a in head.vocabulary.ancestors(c)} | {
        d for d in head.vocabulary.concepts if concepts & head.vocabulary.ancestors(d)}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ddp_ranks_write_disjoint_shards(tmp_path, scripted_run, geosynth_root):
    run, config, _, _ = scripted_run
    out = tmp_path / "out"
    _run([*_args(tmp_path, geosynth_root, config, out=out), "--trainer.devices=2", "--trainer.strategy=ddp"], tmp_path, timeout=900)
    by_rank = {r: _shard_keys(out, f"distill-c*-r{r}-*.tar") for r in (0, 1)}
    assert by_rank[0] and by_rank[1] and not set(by_rank[0]) & set(by_rank[1])
    assert sorted(by_rank[0] + by_rank[1]) == sorted(_shard_keys(run / "out"))  # the single-process run's samples
    report = json.loads((out / "report.json").read_text())
    assert report["throughput"]["ranks"] == 2 and report["chunks"] == {"done": 4, "total": 4, "this_run": 4}
    markers = [json.loads(p.read_text()) for p in (out / "chunks").glob("c*.json")]
    assert sorted(m["rank"] for m in markers) == [0, 0, 1, 1]


@pytest.mark.slow
def test_sigkill_then_rerun_continues_without_duplicates(tmp_path, scripted_run, tiny_model_dir, geosynth_root):
    run, _, _, _ = scripted_run
    write_answers(geosynth_root, tmp_path / "answers.json")
    config = _scripted_config(tmp_path, tiny_model_dir, tmp_path / "answers.json", delay=1.0)  # ~1 s a batch
    args = _args(tmp_path, geosynth_root, config)
    out = tmp_path / "out"
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while not list((out / "chunks").glob("c*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_before = len(list((out / "chunks").glob("c*.json")))
    assert 1 <= done_before < 4 and not (out / "report.json").exists()
    _shard_keys(out, "distill*.tar")  # every tar under a final name is complete

    _run(args, tmp_path)
    keys = _shard_keys(out)
    assert len(keys) == len(set(keys)), "a sample was written twice"
    assert sorted(keys) == sorted(_shard_keys(run / "out"))  # the uninterrupted run's samples
    report = json.loads((out / "report.json").read_text())
    assert report["chunks"] == {"done": 4, "total": 4, "this_run": 4 - done_before}
    assert report["images"] == 8 and report["throughput"]["images"] < 8  # the finished chunks were not redone
    assert not list(out.glob(".*.partial")) and not list((out / "chunks").glob(".*.partial"))

    # the same folder with other settings is refused, naming the difference
    changed = subprocess.run([*args, "--model.init_args.localizability.threshold=0.7"], cwd=tmp_path, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=600)
    assert changed.returncode != 0 and "localizability.threshold: 0.5 -> 0.7" in changed.stderr


@pytest.mark.slow
def test_csv_without_names_in_process(tmp_path, geosynth_root):
    """An IM2GPS3K-style CSV (coordinates only) through Trainer.predict: the truth's names come
    from reverse geocoding, the CSV's columns land in ``source``, corrupt images are counted."""
    from lightning.pytorch import Trainer

    from data_modules.mp16_reason import MP16Reason
    from data_modules.raw_images import RawImages
    from data_modules.shard_sink import AtomicShardSink
    from globe.distill import DistillTeachers, DistillWriter, SegmentationFilter

    metas = write_answers(geosynth_root, tmp_path / "answers.json")
    folder = geosynth_root / "im2gps3k"
    csv_text = (folder / "im2gps3k.csv").read_text()
    images = tmp_path / "images"
    images.mkdir()
    for jpg in (folder / "images").iterdir():
        (images / jpg.name).write_bytes(jpg.read_bytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (tmp_path / "gt.csv").write_text(csv_text + "broken.jpg,x,10,10,0,-1,-1,0.8,0.1,0.1\n")

    module = DistillTeachers([ScriptedTeacher("scripted", str(tmp_path / "answers.json"))],
                             segmentation=SegmentationFilter(source="off"))
    data = RawImages(csv_path=str(tmp_path / "gt.csv"), images=str(images), chunk_size=5, batch_size=3)
    writer = DistillWriter(str(tmp_path / "out"), AtomicShardSink, print_summary=False)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, callbacks=[writer],
                      enable_progress_bar=False, enable_model_summary=False)
    assert trainer.predict(module, datamodule=data) is None  # nothing held in memory
    report = writer.report
    assert (report["rows"], report["images"], report["skipped_input"]) == (9, 8, {"corrupt_image": 1})
    assert report["chunks"]["total"] == 2 and report["complete"]
    samples = [s for b in MP16Reason(test_shards=report["shards"]).predict_dataloader() for s in b]
    assert sorted(s.key for s in samples) == sorted(k for k, m in metas.items() if m["localizable"])
    for s in samples:
        assert s.extra["distill"]["names_from"] == "coordinates"
        assert s.country == metas[s.key]["country"]  # GeoSynth's cities are real: their coordinates name them
        assert s.extra["source"]["AUTHOR"] == "geosynth" and s.extra["source"]["kind"] == "csv"
        assert s.entities == []  # segmentation off: nothing verified
