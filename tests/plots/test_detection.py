"""``ladsdin detect --plots``: the figures exist, are real PNGs, and follow the alerts."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from ladsdin.models.batch import DetectConfig, DetectionResult, detect_cube
from ladsdin.models.cube import normalize_cube
from ladsdin.models.training import TrainConfig
from ladsdin.plots.canvas import PlotContext
from ladsdin.plots.detection import write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALWAYS = {"anomaly_maps.png", "anomaly_counts.png", "largest_object.png", "pixel_series.png"}
N_EPOCHS = 60
STEP_EPOCH = 55  # inside the scored 15 % (slots 51..59)


def _cube(step_mm: float, lat_ascending: bool, ny: int = 30, nx: int = 30, seed: int = 0) -> xr.Dataset:
    """A seeded 12-day cube: per-pixel trend, pixel noise, a frame-wide offset per epoch, two
    missing epochs in training, a NaN corner, and optionally a permanent step in a disc in the
    north-east (rows near the top when lat is descending)."""
    rng = np.random.default_rng(seed)
    times = np.datetime64("2020-01-03", "ns") + np.arange(N_EPOCHS) * np.timedelta64(12, "D")
    years = np.arange(N_EPOCHS) * 12 / 365.25
    d = rng.normal(0, 4, (ny, nx))[None] * years[:, None, None] + rng.normal(0, 5, (N_EPOCHS, ny, nx))
    d += rng.normal(0, 8, (N_EPOCHS, 1, 1))
    yy, xx = np.mgrid[:ny, :nx]
    d[STEP_EPOCH:] += np.where((yy - ny // 4) ** 2 + (xx - 3 * nx // 4) ** 2 < (ny // 5) ** 2, step_mm, 0.0)[None]
    if ny > 8:
        d[:, -4:, :4] = np.nan  # south-west corner never observed: not modelled
    d = d.astype(np.float32)
    lat = 37.9 - np.arange(ny) * 0.001  # row 0 north
    if lat_ascending:
        lat, d = lat[::-1], d[:, ::-1]  # same ground, rows stored south first
    keep = np.ones(N_EPOCHS, bool)
    keep[[20, 21]] = False
    ds = xr.Dataset(
        {"displacement": (("time", "lat", "lon"), d[keep], {"units": "mm"})},
        coords={"time": times[keep], "lat": lat, "lon": 101.0 + np.arange(nx) * 0.001},
        attrs={"frame": "128A_05217_131313", "track": "A"},
    )
    return normalize_cube(ds)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # A 900-pixel model gains nothing from threads, and on a busy 2-core box two spinning
    # intra-op threads made the first run ~10x slower (DESIGN.md §1, "Threads").
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _detect(cube: xr.Dataset, **kw: object) -> DetectionResult:
    cfg = DetectConfig(seismic_area_km2=0.3, train=TrainConfig(max_passes=3), **kw)  # type: ignore[arg-type]
    return detect_cube(cube, cfg, torch.device("cpu"))


@pytest.fixture(scope="module")
def alert_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DetectionResult, xr.Dataset, list[Path], Path]:
    cube = _cube(step_mm=150.0, lat_ascending=False)
    result = _detect(cube)
    out = tmp_path_factory.mktemp("alert") / "plots"
    return result, cube, write_plots(result, cube, out), out


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DetectionResult, xr.Dataset, list[Path], Path]:
    cube = _cube(step_mm=0.0, lat_ascending=True, seed=1)
    result = _detect(cube)
    out = tmp_path_factory.mktemp("quiet") / "plots"
    return result, cube, write_plots(result, cube, out), out


def _assert_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert path.stat().st_size > 10_000, f"{path.name} is only {path.stat().st_size} bytes"
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert float(img[..., :3].std()) > 0.02, f"{path.name} is blank"


def test_alert_run_writes_one_deformation_figure_per_alert_epoch(alert_run: tuple) -> None:
    result, _, paths, out = alert_run
    alerts = result.alert_epochs()
    step_date = str(np.datetime64("2020-01-03") + STEP_EPOCH * 12)
    assert step_date in alerts, f"the 150 mm step should alert on {step_date}, got {alerts}"
    expected = ALWAYS | {f"deformation_{d}.png" for d in alerts}
    assert {p.name for p in out.iterdir()} == expected
    assert sorted(p.name for p in paths) == sorted(expected)
    assert all(p.parent == out for p in paths)
    for p in paths:
        _assert_png(p)


def test_no_alert_run_writes_no_deformation_figure(quiet_run: tuple) -> None:
    result, _, paths, out = quiet_run
    assert result.alert_epochs() == []
    assert {p.name for p in out.iterdir()} == ALWAYS
    assert {p.name for p in paths} == ALWAYS
    for p in paths:
        _assert_png(p)


@pytest.mark.parametrize("run", ["alert_run", "quiet_run"])
def test_maps_are_drawn_north_up_east_right(run: str, request: pytest.FixtureRequest) -> None:
    result, cube, _, _ = request.getfixturevalue(run)
    ctx = PlotContext(result, cube)
    lat2d = np.broadcast_to(result.grid.lat[:, None], result.grid.shape)
    lon2d = np.broadcast_to(result.grid.lon[None, :], result.grid.shape)
    # imshow(origin='lower') puts row 0 at the bottom: it must be the southernmost row.
    assert np.all(np.diff(ctx.oriented(lat2d)[:, 0]) > 0)
    assert np.all(np.diff(ctx.oriented(lon2d)[0]) > 0)
    west, east, south, north = ctx.extent
    assert south == pytest.approx(result.grid.lat.min() - 0.0005) and north == pytest.approx(result.grid.lat.max() + 0.0005)
    assert west == pytest.approx(result.grid.lon.min() - 0.0005) and east == pytest.approx(result.grid.lon.max() + 0.0005)


def test_single_pixel_grid(tmp_path: Path) -> None:
    cube = _cube(step_mm=0.0, lat_ascending=True, ny=2, nx=2)
    result = _detect(cube, downsample=2)
    assert result.grid.shape == (1, 1)
    paths = write_plots(result, cube, tmp_path)
    assert {p.name for p in paths} == ALWAYS | {f"deformation_{d}.png" for d in result.alert_epochs()}
    for p in paths:
        assert p.read_bytes()[:8] == PNG_SIGNATURE and p.stat().st_size > 10_000


def test_importing_plots_does_not_import_matplotlib() -> None:
    code = "import sys, ladsdin.plots.detection; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
