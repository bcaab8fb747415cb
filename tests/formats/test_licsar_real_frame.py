"""The LiCSAR readers on the real frame 106A_09048_000909 (Fernandina 2024; ../shared/data/real).

The frame's metadata.txt, baselines and coherence products are LiCSAR's own files, not ones
our synthetic writer produced, so these checks catch a reader that only understands ourselves.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ladsdin.formats.licsar import Geometry, read_baselines, read_cc, read_geometry, read_metadata_txt

FRAME = "106A_09048_000909"
ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / f"licsar_{FRAME}"


def test_metadata_txt_of_the_real_frame():
    meta = read_metadata_txt(ROOT / "metadata" / "metadata.txt")
    assert meta["master"] == "20201210"
    assert float(meta["heading"]) == pytest.approx(-12.019061)
    assert float(meta["avg_incidence_angle"]) == pytest.approx(41.6437)
    assert meta["center_time"].startswith("0:26:14")
    # heading -12° flies north: an ascending track, as the frame ID's 'A' says
    geo = Geometry(None, None, None, None, None, meta, {})
    assert geo.track == "A" == FRAME[3]


def test_baselines_of_the_real_frame():
    path = ROOT / "metadata" / "baselines"
    bl = read_baselines(path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    # one entry per secondary date, plus the primary at 0 m
    assert len(bl) == len({ln.split()[1] for ln in lines} | {ln.split()[0] for ln in lines})
    assert bl[dt.date(2020, 12, 10)] == 0.0
    assert bl[dt.date(2016, 11, 19)] == -98.0
    assert min(bl) >= dt.date(2016, 1, 1) and max(bl) <= dt.date(2026, 12, 31)
    # Sentinel-1's orbital tube keeps perpendicular baselines within a few hundred metres
    assert max(abs(v) for v in bl.values()) < 400.0


@pytest.mark.parametrize("pair", ["20240106_20240118", "20240211_20240306"])
def test_coherence_of_the_real_frame(pair: str):
    cc, grid = read_cc(ROOT / "interferograms" / pair / f"{pair}.geo.cc.tif")
    assert cc.shape == (grid.n_lat, grid.n_lon) == (1913, 1840)  # 3.5 M pixels
    assert grid.lat0 == pytest.approx(0.4866667, abs=1e-6) and grid.lon0 == pytest.approx(-92.425, abs=1e-6)
    assert grid.dlat == pytest.approx(-0.001) and grid.dlon == pytest.approx(0.001)
    ok = np.isfinite(cc)
    assert cc.dtype == np.float32 and ok.any()
    assert cc[ok].min() > 0.0 and cc[ok].max() <= 1.0  # uint8 / 255, 0 = nodata -> NaN
    # much of the frame is ocean: nodata there
    assert 0.1 < (~ok).mean() < 0.95


def test_read_geometry_without_the_georeferenced_layers():
    # the E/N/U/hgt GeoTIFFs are not shipped with this frame (DATA_NOTES.md): no geometry, so
    # the interferograms define the grid
    assert not any((ROOT / "metadata" / f"{FRAME}.geo.{k}.tif").exists() for k in ("E", "N", "U", "hgt"))
    assert read_geometry(ROOT, FRAME) is None
