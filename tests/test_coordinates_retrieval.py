"""GeoRetrieval's coordinates-only predictions: ``cli.py predict`` on the retrieval config writes
a CSV through PredictionWriter that ``python -m globe.score`` scores; JSONL keeps the top-k."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/retrieval/geosynth.yaml"
ENV = {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env={**ENV, "HOME": str(cwd)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
def test_predict_writes_a_csv_the_scorer_scores(tmp_path, geosynth_root):
    run = tmp_path / "run"
    common = [
        "--config", str(CONFIG), f"--data.init_args.root={geosynth_root}",
        "--data.init_args.train_size=48", "--data.init_args.val_size=8", "--data.init_args.test_size=8",
        "--data.init_args.batch_size=8", "--model.init_args.queue_size=16",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
    ]
    _run([sys.executable, str(REPO / "cli.py"), "fit", *common, "--trainer.max_steps=3", "--trainer.val_check_interval=3",
          "--trainer.limit_val_batches=1", f"--trainer.callbacks.dirpath={run}/ckpt"], cwd=tmp_path)
    predictions = tmp_path / "retrieval.csv"
    _run([sys.executable, str(REPO / "cli.py"), "predict", *common, f"--ckpt_path={run}/ckpt/last.ckpt",
          "--trainer.logger=false", "--trainer.callbacks=[]",
          "--trainer.callbacks+=callbacks.prediction_writer.PredictionWriter", f"--trainer.callbacks.path={predictions}"],
         cwd=tmp_path)
    rows = list(csv.DictReader(open(predictions, encoding="utf-8")))
    # the test split in the config's test_format (IM2GPS3K): its CSV ids, one row each
    assert [r["IMG_ID"] for r in rows] == [f"test-{i:06d}.jpg" for i in range(8)]
    assert {r["pred_level"] for r in rows} == {"coordinates"} and all(r["pred_text"] == "" for r in rows)
    assert "top_k" not in rows[0]  # the CSV keeps the predictions columns
    from data_modules.geosynth import CITIES

    def near(a: tuple[float, float], b: tuple[float, float]) -> bool:  # the gallery holds float32 degrees
        return abs(a[0] - b[0]) < 1e-4 and abs(a[1] - b[1]) < 1e-4

    points = [(float(r["pred_lat"]), float(r["pred_lon"])) for r in rows]
    assert all(any(near(p, (c.lat, c.lon)) for c in CITIES) for p in points)  # the training locations seen

    out = tmp_path / "score.json"
    _run([sys.executable, "-m", "globe.score", "--predictions", str(predictions),
          "--ground-truth", str(geosynth_root / "im2gps3k" / "im2gps3k.csv"), "--out", str(out)], cwd=REPO)
    score = json.loads(out.read_text())
    assert score["form"] == "latlon" and score["n"] == 8 and score["n_missing"] == 0 and score["n_unresolved"] == 0
    assert score["n_invalid_coords"] == 0
    # every prediction is a GeoSynth city and so is every truth: a distance is ~0 or a city-to-city one
    hits = sum(1 for p, r in zip(points, rows) if near(p, (float(r["LAT"]), float(r["LON"]))))
    assert score["acc@1km"] == pytest.approx(hits / 8)


def test_writer_jsonl_keeps_top_k_and_csv_the_columns(tmp_path):
    from PIL import Image

    from callbacks.prediction_writer import PredictionWriter
    from globe.evaluation import PREDICTION_COLUMNS
    from globe.retrieval.module import GeoRetrieval
    from globe.sample import GeoSample

    model = GeoRetrieval(vision_config={"image_size": 32, "patch_size": 16}, image_mlp_hidden=16, embed_dim=8,
                         num_frequencies=4, location_hidden=8, location_depth=1, queue_size=4, top_k=2)
    batch = [GeoSample(key=f"k{i}", image=Image.new("RGB", (32, 32), (60 * i, 0, 0)), lat=10.0 * i, lon=-5.0 * i,
                       country="", city="", extra={"img_id": f"k{i}.jpg"}) for i in range(3)]
    model.training_step(batch, 0)
    model.on_predict_epoch_start()
    rows = model.predict_step(batch, 0)

    class _Strategy:
        def barrier(self, name):
            pass

    class _Trainer:
        global_rank, world_size, is_global_zero, strategy = 0, 1, True, _Strategy()

    for suffix in (".csv", ".jsonl"):
        writer = PredictionWriter(str(tmp_path / f"p{suffix}"))
        writer.on_predict_start(_Trainer(), model)
        writer.write_on_batch_end(_Trainer(), model, rows, None, batch, 0, 0)
        writer.on_predict_end(_Trainer(), model)
    back = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert list(back[0]) == list(PREDICTION_COLUMNS) and [r["IMG_ID"] for r in back] == ["k0.jpg", "k1.jpg", "k2.jpg"]
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines[0]["top_k"]) == 2 and lines[0]["top_k"][0] == [lines[0]["pred_lat"], lines[0]["pred_lon"]]
    assert lines[0]["country_ok"] is None and lines[0]["pred_level"] == "coordinates"  # NaN -> null
    assert all(math.isfinite(v) for line in lines for v in line["scores"])

    writer = PredictionWriter(str(tmp_path / "bad.csv"))
    writer.on_predict_start(_Trainer(), model)
    with pytest.raises(TypeError, match="Prediction rows, got dict"):
        writer.write_on_batch_end(_Trainer(), model, [{"key": "k0"}], None, batch, 0, 0)
