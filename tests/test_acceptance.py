"""Issue acceptance on realistic simulated frames and real data (the paper's workflow end to end).

Each detection trains a model on a 240x240 frame (~30-50 s on a 2-core CPU).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from ladsdin.models.batch import DetectConfig, DetectionResult, detect_cube
from ladsdin.models.cube import normalize_cube
from ladsdin.models.simulation import simulate
from ladsdin.cli import main
from ladsdin.formats import write_cube

pytestmark = pytest.mark.slow
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CPU = torch.device("cpu")
# A_s for a 240x240 frame at 0.002° (~2,300 km²): the paper's 600 km² would ask for a lobe
# larger than a quarter of the frame.
AREA = 100.0


def _d_s_error(result: DetectionResult, truth: xr.Dataset, epoch: str) -> float:
    score = next(s for s in result.scores if s.date == epoch)
    inside = np.isfinite(score.deformation)
    return float(np.median(np.abs(score.deformation[inside] - truth["coseismic"].values[inside])))


@pytest.fixture(scope="module")
def menyuan_a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.Dataset, int]:
    tmp = tmp_path_factory.mktemp("menyuan_a")
    cube, truth = simulate("menyuan", "A", seed=0)
    assert cube.sizes["lat"] >= 200 and cube.sizes["lon"] >= 200 and cube.sizes["time"] >= 120
    path = write_cube(cube, tmp / "menyuan_A.nc")
    rc = main(["detect", str(path), "--out", str(tmp / "out"), "--seismic-area-km2", str(AREA), "--quiet"])
    return tmp / "out", truth, rc


def test_menyuan_ascending_cli_alerts_at_the_first_post_event_epoch(menyuan_a):
    out, truth, rc = menyuan_a
    assert rc == 0
    first = truth.attrs["first_post_event"]
    n_slots = int(truth.attrs["n_slots"])
    assert int(truth.attrs["event_slot"]) >= 0.85 * n_slots  # event in the last 15 %
    fc = json.loads((out / "alerts.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and fc["features"]
    assert {f["properties"]["epoch"] for f in fc["features"]} == {first}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alert_epochs"] == [first]
    before = [e for e in summary["epochs"] if e["epoch"] < first]
    assert before and all(e["n_seismic_objects"] == 0 for e in before)
    for f in fc["features"]:
        p = f["properties"]
        assert f["geometry"]["type"] == "Polygon"
        for key in ("id", "epoch", "frame", "track", "n_pixels", "area_km2", "los_min_mm", "los_max_mm", "centroid_lon", "centroid_lat", "nm", "n_a", "model_version"):
            assert key in p, key
        ring = np.array(f["geometry"]["coordinates"][0])
        assert ring[:, 0].min() >= float(truth.lon.min()) - 0.01 and ring[:, 1].max() <= float(truth.lat.max()) + 0.01
    with xr.open_dataset(out / "anomalies.nc", engine="h5netcdf") as an:
        for v in ("anomaly", "seismic", "predicted", "deformation", "sigma"):
            assert v in an
        assert an["seismic"].dtype == np.int8 and an["sigma"].dims == ("lat", "lon")
        d = an["deformation"].sel(time=np.datetime64(first)).values
        inside = np.isfinite(d)
        err = np.median(np.abs(d[inside] - truth["coseismic"].values[inside]))
        assert err <= 15.0, f"D_s median abs error {err:.1f} mm"
        assert np.isnan(an["deformation"].values[an["seismic"].values == 0]).all()


def test_menyuan_descending_alerts_at_the_first_post_event_epoch():
    cube, truth = simulate("menyuan", "D", seed=1)
    res = detect_cube(cube, DetectConfig(seismic_area_km2=AREA), CPU)
    first = truth.attrs["first_post_event"]
    assert res.alert_epochs() == [first]
    assert _d_s_error(res, truth, first) <= 15.0
    # the descending track sees the opposite sign pattern: both signs appear among the objects
    feats = res.features()
    assert min(f["properties"]["los_min_mm"] for f in feats) < -100 and max(f["properties"]["los_max_mm"] for f in feats) > 100


@pytest.fixture(scope="module")
def null_frame() -> tuple[xr.Dataset, int]:
    # 5 consecutive missing epochs inside the scored period, plus unwrapping errors on 5 % of epochs
    cube, truth = simulate("null", "A", seed=2, gap_runs=[(132, 5)], unwrap_fraction=0.05)
    assert "2023" in truth.attrs["missing_dates"] and int(truth["unwrap_error"].any(("lat", "lon")).sum()) >= 3
    return cube, 132


def test_null_frame_with_a_five_epoch_gap_gives_no_alert_native(null_frame):
    cube, gap_start = null_frame
    res = detect_cube(cube, DetectConfig(seismic_area_km2=AREA, gap_fill="native"), CPU)
    assert res.alert_epochs() == []
    after_gap = next(s for s in res.scores if s.slot == gap_start + 5)
    assert after_gap.horizon_max == 6  # a 6-step forecast across the gap, not a filled series
    assert after_gap.n_anomalous < res.n_a
    assert not any(s.filled for s in res.scores)


def test_null_frame_knn_scores_invented_epochs(null_frame):
    cube, gap_start = null_frame
    res = detect_cube(cube, DetectConfig(seismic_area_km2=AREA, gap_fill="knn"), CPU)
    filled = [s.slot for s in res.scores if s.filled]
    assert set(range(gap_start, gap_start + 5)) <= set(filled)
    # what README states for this frame (docs: "native vs knn")
    assert len(res.alert_epochs()) == 0


def _tehran_cube() -> xr.Dataset:
    a = np.genfromtxt(REAL / "licsbas_tehran_pixel" / "timeseries_pixel_100_120.csv", delimiter=",", names=True, dtype=None, encoding=None)
    dates = np.array([np.datetime64(f"{str(d)[:4]}-{str(d)[4:6]}-{str(d)[6:]}") for d in a["date"]])
    ds = xr.Dataset(
        {"displacement": (("time", "lat", "lon"), a["cum_disp_mm"].astype(np.float32)[:, None, None], {"units": "mm"})},
        coords={"time": dates, "lat": [35.6], "lon": [51.3]},
        attrs={"frame": "028A_05385_191813"},
    )
    return normalize_cube(ds)


@pytest.mark.parametrize("kind", ["shared", "per-pixel"])
def test_real_licsbas_pixel_is_flagged_at_most_once(kind):
    from ladsdin.models.training import TrainConfig

    cube = _tehran_cube()
    assert cube.sizes["time"] == 272
    res = detect_cube(cube, DetectConfig(nm=6.0, train_fraction=0.85, seismic_area_km2=1.0, train=TrainConfig(kind=kind)), CPU)
    assert len(res.scores) == 272 - round(0.85 * 272)
    assert sum(int(s.anomaly.any()) for s in res.scores) <= 1
    assert res.forecaster.report["r2_mean"] > 0.9  # steady subsidence: the trend explains most variance
