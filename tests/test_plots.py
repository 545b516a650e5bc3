"""Test-set figures (callback in a real Trainer run), run curves from metrics.csv, curve data."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from callbacks.test_plots import TestPlots
from globe.evaluation import PREDICTION_COLUMNS, Prediction
from globe.plotting.__main__ import main as plots_main
from globe.plotting.errors import (
    PlotInputError,
    PredictionPoints,
    accuracy_at,
    accuracy_curve,
    error_cdf,
    map_segments,
    median_km,
    prediction_points,
)
from globe.plotting.run_metrics import read_metrics, reward_columns, rolling_mean, validation_columns
from globe.plotting.world import city_points

REPO = Path(__file__).resolve().parents[1]
INF = math.inf
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.load()  # decodes every pixel: a truncated file fails here
        assert im.format == "PNG"
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        assert im.convert("L").getextrema()[0] < 128  # something dark is drawn, not a blank canvas


# ---------------------------------------------------------------------------- curve data
def test_accuracy_three_of_four_below_25km():
    assert accuracy_at([3.0, 10.0, 24.0, 400.0], [25]) == [0.75]


def test_threshold_is_inclusive_and_unresolved_is_a_miss_everywhere():
    errors = [25.0, INF, INF, 0.0]
    # 25 km is within 25 km; the two unresolved rows never count, even at 20,000 km
    assert accuracy_at(errors, [1, 25, 20000]) == [0.25, 0.5, 0.5]
    with pytest.raises(PlotInputError):
        accuracy_at([], [25])


def test_accuracy_curve_log_grid():
    ts, acc = accuracy_curve([5.0, 50.0, 500.0, INF], 1.0, 1000.0, 4)
    assert ts == pytest.approx([1.0, 10.0, 100.0, 1000.0])
    assert acc == [0.0, 0.25, 0.5, 0.75]
    assert ts[0] == 1.0 and ts[-1] == 1000.0


def test_error_cdf_counts_unresolved_in_the_total():
    xs, ys = error_cdf([10.0, 30.0, INF, 5.0])
    assert xs == [5.0, 10.0, 30.0]
    assert ys == [0.25, 0.5, 0.75]  # tops out at the resolved fraction 3 / 4
    assert error_cdf([INF, INF]) == ([], [])


def test_median_with_unresolved():
    assert median_km([3.0, 1.0, INF, 2.0]) == 2.5
    assert median_km([1.0, INF, INF]) == INF  # half or more unresolved: never reached
    assert math.isnan(median_km([]))


def test_prediction_points_from_rows():
    rows = [
        {"LAT": "0", "LON": "0", "pred_lat": "0", "pred_lon": "1"},  # 1 degree of the equator
        {"LAT": "0", "LON": "0", "pred_lat": "", "pred_lon": ""},  # unresolved: blank
        {"LAT": "0", "LON": "0", "pred_lat": "nan", "pred_lon": "nan"},  # unresolved: NaN as the policy writes it
        {"LAT": "0", "LON": "0", "pred_lat": "91", "pred_lon": "0"},  # unresolved: out of range
        {"LAT": "0", "LON": "0", "pred_lat": "north", "pred_lon": "0"},  # unresolved: not a number
        {"LAT": "", "LON": "5", "pred_lat": "0", "pred_lon": "0"},  # no ground truth: skipped, counted
        {"LAT": "90", "LON": "0", "pred_lat": "0", "pred_lon": "0"},  # pole to equator: a quarter circle
    ]
    p = prediction_points(rows)
    assert p.n == 6 and p.n_skipped == 1 and p.n_unresolved == 4
    # 2 pi R / 360 and 2 pi R / 4 with R = 6371.0088 km
    assert p.errors_km[0] == pytest.approx(111.19508, abs=1e-4)
    assert p.errors_km[1:5] == (INF, INF, INF, INF)
    assert p.errors_km[5] == pytest.approx(10007.557, abs=1e-3)
    assert accuracy_at(p.errors_km, [200]) == [1 / 6]


def test_prediction_points_needs_the_columns():
    with pytest.raises(PlotInputError, match="pred_lat"):
        prediction_points([{"LAT": "0", "LON": "0", "pred_city": "Paris"}])
    assert prediction_points([]).n == 0


def test_map_segments_cut_at_the_antimeridian():
    pts = PredictionPoints(
        true_lat=(0.0, 10.0, 0.0, 5.0),
        true_lon=(170.0, -175.0, 0.0, 0.0),
        pred_lat=(10.0, 20.0, 5.0, math.nan),
        pred_lon=(-170.0, 175.0, 2.0, math.nan),
        errors_km=(1.0, 1.0, 1.0, INF),
    )
    assert map_segments(pts) == [
        # 170E -> 170W: 20 degrees east through 180; half-way in longitude, half-way in latitude
        ((170.0, 0.0), (180.0, 5.0)), ((-180.0, 5.0), (-170.0, 10.0)),
        # 175W -> 175E: 10 degrees west through -180
        ((-175.0, 10.0), (-180.0, 15.0)), ((180.0, 15.0), (175.0, 20.0)),
        ((0.0, 0.0), (2.0, 5.0)),  # no crossing; the unresolved row has no line
    ]


def test_city_points_cover_the_world():
    lons, lats = city_points()
    assert len(lons) == len(lats) > 20000
    assert min(lons) < -150 and max(lons) > 150 and min(lats) < -40 and max(lats) > 60


# ---------------------------------------------------------------------------- callback
def _prediction(i: int, true: tuple[float, float], pred: tuple[float, float] | None) -> Prediction:
    return Prediction(
        IMG_ID=f"img{i}", pred_country="France" if pred else "", pred_city="Paris" if pred else "",
        pred_lat=pred[0] if pred else math.nan, pred_lon=pred[1] if pred else math.nan,
        pred_level="city" if pred else "", LAT=true[0], LON=true[1], country="France", city="Paris",
        country_ok=1.0, city_ok=1.0, pred_text="<think>t</think><answer>country: France\ncity: Paris</answer>",
    )


PARIS, LYON, TOKYO, SUVA, APIA = (48.8566, 2.3522), (45.764, 4.8357), (35.6895, 139.6917), (-18.1416, 178.4415), (-13.8333, -171.7667)
ROWS = [
    _prediction(0, PARIS, PARIS),  # 0 km
    _prediction(1, PARIS, LYON),  # ~392 km
    _prediction(2, TOKYO, PARIS),  # ~9,700 km
    _prediction(3, SUVA, APIA),  # across the antimeridian
    _prediction(4, LYON, None),  # unresolved
]


class WritesPredictions(L.LightningModule):
    """A module whose test writes a predictions CSV the way the policy does, then sets the path."""

    def __init__(self, out: Path | None):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out

    def test_step(self, batch, batch_idx):
        return None

    def test_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)

    def on_test_epoch_end(self):
        if self.out is None:
            return
        with open(self.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS)
            writer.writeheader()
            writer.writerows(r.row() for r in ROWS)
        self.predictions_path = str(self.out)


def _trainer(tmp_path, loggers, callback):
    return L.Trainer(accelerator="cpu", logger=loggers, callbacks=[callback], default_root_dir=tmp_path,
                     enable_progress_bar=False, enable_model_summary=False)


def test_callback_in_a_real_test_run_writes_pngs_and_logs_to_wandb(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb_logger = WandbLogger(project="globe-test", save_dir=str(tmp_path), offline=True)
    csv_logger = CSVLogger(tmp_path, name="csv")  # not W&B: skipped by the image logging, no error
    plots = TestPlots()
    _trainer(tmp_path, [csv_logger, wandb_logger], plots).test(WritesPredictions(tmp_path / "predictions_grpo.csv"))
    import wandb

    wandb.finish()

    names = {"accuracy_by_distance", "error_cdf", "world_map"}
    assert set(plots.last_paths) == names
    for name, path in plots.last_paths.items():
        assert path.name == f"predictions_grpo_{name}.png"
        assert path.parent == Path(csv_logger.log_dir)  # the default: trainer.log_dir (the first logger's)
        assert_png(path)
    with Image.open(plots.last_paths["world_map"]) as im:
        assert im.size[0] > im.size[1]  # a world map is wider than tall
    assert not list(Path(csv_logger.log_dir).glob("*.tmp"))  # no temp file left behind
    logged = sorted(p for p in tmp_path.rglob("media/images/**/*.png"))
    # W&B keys test/plots/<name>: media/images/test/plots/<name>_<step>_<hash>.png
    assert {p.name.rsplit("_", 2)[0] for p in logged} == names
    assert {p.parent.relative_to(p.parents[3]).as_posix() for p in logged} == {"images/test/plots"}
    for p in logged:
        assert p.read_bytes()[:8] == PNG_SIGNATURE


def test_callback_dirpath_and_thresholds(tmp_path):
    out = tmp_path / "figures"
    plots = TestPlots(dirpath=str(out), thresholds_km=(25, 2500))
    _trainer(tmp_path, False, plots).test(WritesPredictions(tmp_path / "preds.csv"))
    assert sorted(p.name for p in out.iterdir()) == [
        "preds_accuracy_by_distance.png", "preds_error_cdf.png", "preds_world_map.png"]
    for path in out.iterdir():
        assert_png(path)


def test_callback_without_predictions_warns(tmp_path):
    plots = TestPlots(dirpath=str(tmp_path / "figures"))
    with pytest.warns(UserWarning, match="predictions_path"):
        _trainer(tmp_path, False, plots).test(WritesPredictions(None))
    assert not (tmp_path / "figures").exists() and plots.last_paths == {}


def test_callback_with_a_vanished_predictions_file_warns(tmp_path):
    module = WritesPredictions(None)
    module.predictions_path = str(tmp_path / "gone.csv")
    with pytest.warns(UserWarning, match="not found"):
        _trainer(tmp_path, False, TestPlots()).test(module)


def test_callback_reads_every_rank_file_under_several_processes():
    one = Path("out/predictions.csv")
    assert TestPlots._prediction_files(one, world_size=1) == [one]
    # the policy writes predictions.rank{r}.csv under several processes; rank zero reads them all
    ranked = Path("out/predictions.rank0.csv")
    assert TestPlots._prediction_files(ranked, world_size=3) == [
        Path("out/predictions.rank0.csv"), Path("out/predictions.rank1.csv"), Path("out/predictions.rank2.csv")]


def test_callback_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="positive"):
        TestPlots(thresholds_km=(0, 25))


# ---------------------------------------------------------------------------- run curves
METRICS_CSV = """\
epoch,step,train/reward,train/reward/geo,train/reward/geo_std,train/kl,val/acc@25km,val/acc@1km,val/country_acc
0,0,0.2,0.1,0.3,0.01,,,
0,1,0.4,0.3,0.3,0.01,,,
0,1,,,,,0.5,0.0,0.75
0,2,0.6,,0.3,0.02,,,
0,3,0.8,0.7,0.3,0.02,,,
0,3,,,,,0.625,0.125,nan
"""


def test_rolling_mean_hand_worked():
    assert rolling_mean([0.2, 0.4, 0.6, 0.8], 2) == pytest.approx([0.2, 0.3, 0.5, 0.7])
    assert rolling_mean([1.0, 2.0, 3.0], 1) == [1.0, 2.0, 3.0]
    assert rolling_mean([], 3) == []
    with pytest.raises(ValueError):
        rolling_mean([1.0], 0)


def test_known_columns():
    cols = ["epoch", "step", "train/reward/geo", "train/reward", "train/reward/geo_std", "train/reward/", "val/", "val/reward"]
    assert reward_columns(cols) == ["train/reward", "train/reward/geo"]
    assert validation_columns(cols) == ["val/reward"]


def test_read_metrics_sparse_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(METRICS_CSV)
    series = read_metrics(path)
    assert list(series) == ["train/reward", "train/reward/geo", "val/acc@25km", "val/acc@1km", "val/country_acc"]
    assert series["train/reward"] == ([0, 1, 2, 3], [0.2, 0.4, 0.6, 0.8])
    assert series["train/reward/geo"] == ([0, 1, 3], [0.1, 0.3, 0.7])  # blank at step 2
    assert series["val/acc@25km"] == ([1, 3], [0.5, 0.625])
    assert series["val/country_acc"] == ([1], [0.75])  # "nan" is not a value


def test_read_metrics_errors(tmp_path):
    with pytest.raises(PlotInputError, match="not found"):
        read_metrics(tmp_path / "nope.csv")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("epoch,step,loss\n0,0,1.0\n")
    with pytest.raises(PlotInputError, match="none of the known columns"):
        read_metrics(unknown)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PlotInputError, match="none of the known columns"):
        read_metrics(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,train/reward\n0,0.5\n1,high\n")
    with pytest.raises(PlotInputError, match="line 3: train/reward is not a number"):
        read_metrics(bad)
    no_step = tmp_path / "no_step.csv"
    no_step.write_text("train/reward\n0.5\n")
    with pytest.raises(PlotInputError, match="no 'step' column"):
        read_metrics(no_step)


def test_metrics_entry_point(tmp_path, capsys):
    path = tmp_path / "run" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text(METRICS_CSV)
    out = tmp_path / "figures"
    assert plots_main(["--metrics", str(path), "--out", str(out), "--window", "2"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "rewards.png"), str(out / "validation.png")]
    assert_png(out / "rewards.png")
    assert_png(out / "validation.png")


def test_metrics_entry_point_rewards_only(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,train/reward\n0,0.1\n1,0.3\n")
    assert plots_main(["--metrics", str(path), "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["rewards.png"]


def test_metrics_entry_point_errors(tmp_path, capsys):
    assert plots_main(["--metrics", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "metrics file not found" in capsys.readouterr().err
    unknown = tmp_path / "m.csv"
    unknown.write_text("step,loss\n0,1\n")
    assert plots_main(["--metrics", str(unknown), "--out", str(tmp_path)]) == 2
    assert "none of the known columns" in capsys.readouterr().err
    blank = tmp_path / "blank.csv"
    blank.write_text("step,train/reward\n0,\n")
    assert plots_main(["--metrics", str(blank), "--out", str(tmp_path)]) == 2
    assert "no values" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["globe.plotting", "globe.plots"])
def test_python_dash_m(tmp_path, module):
    path = tmp_path / "metrics.csv"
    path.write_text(METRICS_CSV)
    ok = subprocess.run([sys.executable, "-m", module, "--metrics", str(path), "--out", str(tmp_path / "o")],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert_png(tmp_path / "o" / "validation.png")
    assert ok.stdout.split() == [str(tmp_path / "o" / "rewards.png"), str(tmp_path / "o" / "validation.png")]
