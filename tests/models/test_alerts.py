"""GeoJSON polygons of seismic objects: lon/lat, closed, counter-clockwise, deterministic ids."""
from __future__ import annotations

import numpy as np
import pytest

from ladsdin.models.alerts import alert_id, object_feature
from ladsdin.models.labelling import seismic_objects


def _feature(lat):
    a = np.zeros((lat.size, 8), bool)
    a[2:5, 3:6] = True  # 3x3 block
    resid = np.full(a.shape, 40.0, np.float32)
    lon = 101.0 + 0.001 * np.arange(8)
    (obj,), _, _ = seismic_objects(a, resid, n_a=2)
    return object_feature(obj, lat=lat, lon=lon, frame="128A_05172_131313", track="A", epoch="2022-01-08", nm=6, n_a=2, model_version="t")


@pytest.mark.parametrize("descending", [True, False])
def test_polygon_bounds_the_pixels(descending):
    lat = 37.9 + 0.001 * np.arange(8) * (-1 if descending else 1)
    f = _feature(lat)
    ring = np.array(f["geometry"]["coordinates"][0])
    assert (ring[0] == ring[-1]).all()
    x, y = ring[:, 0], ring[:, 1]
    assert 0.5 * (np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) > 0  # CCW (RFC 7946)
    assert x.min() == pytest.approx(101.0025) and x.max() == pytest.approx(101.0055)
    rows = lat[2:5]
    assert y.min() == pytest.approx(rows.min() - 0.0005) and y.max() == pytest.approx(rows.max() + 0.0005)
    p = f["properties"]
    assert p["id"] == alert_id("128A_05172_131313", "2022-01-08", 0) == "128A_05172_131313:2022-01-08:000"
    assert p["n_pixels"] == 9 and p["los_min_mm"] == p["los_max_mm"] == 40.0
    assert p["centroid_lon"] == pytest.approx(101.004)
    side_km = 6371.0088 * np.pi / 180 * 0.001  # 0.001 deg of arc
    assert p["area_km2"] == pytest.approx(9 * side_km**2 * np.cos(np.radians(37.9)), rel=0.01)
    for key in ("epoch", "frame", "track", "nm", "n_a", "model_version", "centroid_lat"):
        assert key in p
