"""LiCSAR GeoTIFF/metadata readers, the reference area and the seeded frame generator."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ladsdin.models.cube import MM_PER_RAD
from ladsdin.models.simulation import simulate
from ladsdin.ingest.frame import coherence_weights, load_interferogram, scan_frame
from ladsdin.ingest.reference import FRAME_MEDIAN, RefWindow, auto_reference, parse_ref, reference
from ladsdin.ingest.synthetic import SyntheticFrame, short_baseline_network
from ladsdin.formats.licsar import (
    FrameGrid,
    LicsarFileError,
    parse_pair,
    read_baselines,
    read_cc,
    read_geometry,
    read_metadata_txt,
    read_unw,
    write_raster,
)

GRID = FrameGrid(40, 50, 37.9995, 101.0005, -0.001, 0.001)


def test_unw_is_los_mm_with_the_licsbas_sign_and_zero_as_nodata(tmp_path: Path) -> None:
    rad = np.full(GRID.shape, 2.0, np.float32)
    rad[0, :5] = 0.0
    path = write_raster(tmp_path / "a.geo.unw.tif", rad, GRID)
    mm, grid = read_unw(path, GRID)
    assert grid.mismatch(GRID) is None and mm.dtype == np.float32
    assert np.isnan(mm[0, :5]).all() and np.isfinite(mm[1:]).all()
    # +2 rad is a range increase: motion away from the satellite, so negative LOS mm
    assert mm[5, 5] == pytest.approx(2.0 * MM_PER_RAD) and mm[5, 5] == pytest.approx(-8.828, abs=1e-3)
    assert np.allclose(grid.lat[[0, -1]], [37.9995, 37.9995 - 0.039]) and np.allclose(grid.lon[0], 101.0005)


def test_coherence_uint8_and_float(tmp_path: Path) -> None:
    u8 = np.full(GRID.shape, 255, np.uint8)
    u8[0, 0] = 0
    cc, _ = read_cc(write_raster(tmp_path / "u.tif", u8, GRID), GRID)
    assert np.isnan(cc[0, 0]) and cc[1, 1] == pytest.approx(1.0)
    f = np.full(GRID.shape, 0.5, np.float32)
    cc, _ = read_cc(write_raster(tmp_path / "f.tif", f, GRID), GRID)
    assert cc[3, 3] == pytest.approx(0.5)
    with pytest.raises(LicsarFileError) as ei:
        read_cc(write_raster(tmp_path / "bad.tif", f * 4, GRID), GRID)
    assert ei.value.reason == "bad_values"
    w = coherence_weights(np.array([0.2, 0.9, np.nan], np.float32), looks=20)
    assert w[1] > w[0] > 0 and w[2] == 0  # higher coherence, smaller phase variance, more weight
    var_mm2 = (1 - 0.81) / (2 * 20 * 0.81) * MM_PER_RAD**2
    assert w[1] == pytest.approx(1 / var_mm2, rel=1e-5)


def test_truncated_and_mis_gridded_files_raise(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "t.tif", np.ones(GRID.shape, np.float32), GRID)
    raw = path.read_bytes()
    for cut in (len(raw) // 2, 200):
        short = tmp_path / f"cut{cut}.tif"
        short.write_bytes(raw[:cut])
        with pytest.raises(LicsarFileError) as ei:
            read_unw(short, GRID)
        assert ei.value.reason == "truncated" and "truncated" in str(ei.value)
    shifted = FrameGrid(40, 50, 38.0995, 101.0005, -0.001, 0.001)
    other = write_raster(tmp_path / "o.tif", np.ones(GRID.shape, np.float32), shifted)
    with pytest.raises(LicsarFileError) as ei:
        read_unw(other, GRID)
    assert ei.value.reason == "grid_mismatch" and "wrong grid" in str(ei.value)
    small = write_raster(tmp_path / "s.tif", np.ones((40, 49), np.float32), FrameGrid(40, 49, 37.9995, 101.0005, -0.001, 0.001))
    with pytest.raises(LicsarFileError, match="shape"):
        read_unw(small, GRID)
    with pytest.raises(LicsarFileError) as ei:
        read_unw(tmp_path / "missing.tif", GRID)
    assert ei.value.reason == "missing"


def test_pair_names() -> None:
    assert parse_pair("20220101_20220113") == (dt.date(2022, 1, 1), dt.date(2022, 1, 13))
    for name, reason in (("20220113_20220101", "pair_order"), ("20220101_20220101", "pair_order"),
                         ("20220101-20220113", "bad_name"), ("20220230_20220301", "bad_name")):
        with pytest.raises(LicsarFileError) as ei:
            parse_pair(name)
        assert ei.value.reason == reason, name


def test_metadata_and_baselines(tmp_path: Path) -> None:
    (tmp_path / "metadata.txt").write_text("master=20180308\ncenter_time=11:22:33\nheading=-169.9\navg_incidence_angle=39.1\n")
    meta = read_metadata_txt(tmp_path / "metadata.txt")
    assert meta["master"] == "20180308" and float(meta["heading"]) == -169.9
    (tmp_path / "baselines").write_text("20180308 20180320 32.4 12.0\n20180308 20180401 -50.5 24.0\n")
    bl = read_baselines(tmp_path / "baselines")
    assert bl == {dt.date(2018, 3, 8): 0.0, dt.date(2018, 3, 20): 32.4, dt.date(2018, 4, 1): -50.5}
    (tmp_path / "old").write_text("1 20170218 20170326 96.6 36.0 -12.0 24.0 34.2 130.9\n")
    assert read_baselines(tmp_path / "old") == {dt.date(2017, 2, 18): 34.2, dt.date(2017, 3, 26): 130.9}
    (tmp_path / "bad").write_text("20180308 20180320\n")
    with pytest.raises(LicsarFileError, match="line 1"):
        read_baselines(tmp_path / "bad")


def test_reference_window_parsing_and_offset() -> None:
    assert parse_ref("3:8/10:15", GRID) == RefWindow(3, 8, 10, 15)
    # degrees: columns of lon 101.0035..101.0075, rows of lat 37.9895..37.9855 -> the same window
    assert parse_ref("101.0035/101.0075/37.9855/37.9895", GRID) == RefWindow(3, 8, 10, 15)
    for bad in ("3:80/10:15", "a/b/c/d", "3:8"):
        with pytest.raises(ValueError):
            parse_ref(bad, GRID)
    mm = np.full(GRID.shape, 7.0, np.float32)
    win = RefWindow(10, 14, 10, 14)
    out, offset, used = reference(mm, win)
    assert offset == pytest.approx(7.0) and np.allclose(out, 0.0) and used == win
    # a decorrelated window (a coseismic pair's near field) grows about its centre until it has data
    mm[8:16, 8:16] = np.nan
    mm[16:, :] = 9.0
    out, offset, used = reference(mm, win)
    assert used == RefWindow(4, 20, 4, 20) and offset == pytest.approx((128 * 7 + 64 * 9) / 192)
    # the window decorrelated even grown 16 times: the frame's median is the last resort
    far = np.full(GRID.shape, np.nan, np.float32)
    far[:3, :] = 5.0
    far[:3, :4] = 2.0
    out, offset, used = reference(far, RefWindow(40, 42, 30, 32))
    assert used.how == FRAME_MEDIAN and used.area == GRID.n_lat * GRID.n_lon and offset == 5.0 and np.nanmedian(out) == 0.0
    with pytest.raises(ValueError, match="valid pixels"):
        reference(np.full(GRID.shape, np.nan, np.float32), win)


def test_auto_reference_prefers_coherent_smooth_ground() -> None:
    rng = np.random.default_rng(0)
    ifgs, cohs = [], []
    for _ in range(3):
        mm = rng.normal(0, 1.0, GRID.shape).astype(np.float32)
        mm[:20, :] += rng.normal(0, 15, (20, GRID.n_lon)).astype(np.float32)  # rough (turbulent/deforming) north
        mm[30:, 40:] = np.nan  # a decorrelated corner
        cc = np.full(GRID.shape, 0.4, np.float32)
        cc[20:30, 20:30] = 0.9  # the coherent patch the reference should sit on
        ifgs.append(mm)
        cohs.append(cc)
    win = auto_reference(ifgs, cohs, size=10)
    assert win == RefWindow(20, 30, 20, 30, "auto")


def test_auto_reference_never_fails(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    ifgs, cohs = [], []
    for i in range(8):
        mm = rng.normal(0, 1.0, GRID.shape).astype(np.float32)
        cc = np.full(GRID.shape, 0.5, np.float32)
        # winter: the west and the east of the frame decorrelate in turn, so no window is
        # valid in all 8 pairs and the best are usable in 4
        if i % 2:
            mm[:, 20:] = np.nan
        else:
            mm[:, :30] = np.nan
        if i == 3:
            mm[:10, :10] = np.nan
        ifgs.append(mm)
        cohs.append(cc)
    with caplog.at_level("WARNING", logger="ladsdin.ingest.reference"):
        win = auto_reference(ifgs, cohs, size=10)
    assert win.how == "auto" and "usable in 4 of them" in caplog.text
    # every interferogram can be referenced to it: grown, or to the frame median
    for mm in ifgs:
        out, _, used = reference(mm, win)
        assert np.isfinite(out).any() and used.how in ("auto", FRAME_MEDIAN)
    # nothing usable anywhere: each interferogram goes to its frame median
    caplog.clear()
    sparse = np.full(GRID.shape, np.nan, np.float32)
    sparse[::4, ::4] = 1.0
    with caplog.at_level("WARNING", logger="ladsdin.ingest.reference"):
        win = auto_reference([sparse], [cohs[0]])
    assert win.how == FRAME_MEDIAN and "frame" in caplog.text
    out, offset, used = reference(sparse, win)
    assert offset == 1.0 and used.how == FRAME_MEDIAN


def test_generator_writes_the_real_layout(tmp_path: Path) -> None:
    cube, truth = simulate("menyuan", "A", n_lat=30, n_lon=36, n_epochs=8, seed=1, missing_fraction=0.0)
    gen = SyntheticFrame(cube, tmp_path, truth=truth, links=3, looks=None, seed=3)
    frame_dir = gen.write()
    frame = cube.attrs["frame"]
    entries, problems = scan_frame(frame_dir)
    assert not problems and [(e.d1, e.d2) for e in entries] == [
        (cube.time.values[a].astype("datetime64[D]").item(), cube.time.values[b].astype("datetime64[D]").item())
        for a, b in short_baseline_network(cube.sizes["time"], 3)]
    for e in entries:
        assert e.unw.name == f"{e.name}.geo.unw.tif" and e.cc.name == f"{e.name}.geo.cc.tif"
    import rasterio

    with rasterio.open(entries[0].unw) as src:
        assert src.dtypes[0] == "float32" and src.crs.to_epsg() == 4326 and src.nodata == 0
    with rasterio.open(entries[0].cc) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0
    geo = read_geometry(frame_dir, frame)
    assert geo is not None and geo.track == "A" and geo.grid.mismatch(gen.grid) is None
    assert geo.u is not None and 0.7 < float(np.nanmean(geo.u)) < 0.85  # ground->satellite, mostly up
    assert geo.metadata["master"] == f"{entries[0].d1:%Y%m%d}" and len(geo.baselines) == cube.sizes["time"]
    # noise-free: an interferogram referenced to the cube's reference window is exactly d[b] - d[a]
    ref = parse_ref(cube.attrs["ref_window"], gen.grid)
    mm, w, used = load_interferogram(entries[5], gen.grid, ref, min_coherence=0.0, looks=20)
    assert used == ref
    a, b = short_baseline_network(cube.sizes["time"], 3)[5]  # before the event's decorrelated near field
    want = (cube.displacement.values[b] - cube.displacement.values[a]).ravel()
    ok = np.isfinite(mm) & np.isfinite(want)
    assert ok.mean() > 0.8 and np.abs(mm[ok] - want[ok]).max() < 1e-3
    assert (w[ok] > 0).all() and (w[~np.isfinite(mm)] == 0).all()
