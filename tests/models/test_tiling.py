"""Tiles: the geometry, the seeded pixel keys, and results that do not depend on the tiling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.simulation import simulate
from ladsdin.models.tiling import Tiling, pixel_keys, scatter_tiles
from ladsdin.models.training import TrainConfig

CPU = torch.device("cpu")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 50), st.integers(1, 50))
def test_tiles_partition_the_grid_in_raster_order(n_lat, n_lon, rows, cols):
    t = Tiling.of((n_lat, n_lon), (rows, cols))
    seen = np.zeros((n_lat, n_lon), int)
    flat: list[np.ndarray] = []
    for i in range(t.n_tiles):
        r0, r1, c0, c1 = t.bounds(i)
        seen[r0:r1, c0:c1] += 1
        idx = t.global_index(i, np.ones((r1 - r0, c1 - c0), bool))
        assert (np.diff(idx) > 0).all() and (t.tile_of(idx) == i).all()  # increasing, and in the tile
        flat.append(idx)
    assert (seen == 1).all()  # every pixel in exactly one tile
    assert np.array_equal(np.sort(np.concatenate(flat)), np.arange(n_lat * n_lon))
    assert Tiling.from_dict(t.to_dict()) == t


def test_scatter_and_keys():
    t = Tiling.of((3, 4), 2)
    parts = [(t.global_index(i, np.ones(tuple(s.stop - s.start for s in t.window(i)), bool)), np.full(1, float(i))) for i in range(t.n_tiles)]
    m = scatter_tiles(t.shape, [(idx, np.full(idx.size, v[0])) for idx, v in parts])
    assert m.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]]
    k = pixel_keys(np.arange(10_000), seed=0)
    assert k.dtype == np.uint64 and np.unique(k).size == 10_000  # distinct, seeded, reproducible
    assert np.array_equal(k, pixel_keys(np.arange(10_000), seed=0)) and not np.array_equal(k, pixel_keys(np.arange(10_000), seed=1))
    with pytest.raises(ValueError, match="tile size"):
        Tiling.of((3, 4), 0)


@pytest.mark.parametrize("kind", ["median", "plane"])
def test_tiled_and_untiled_detection_are_identical(kind):
    """Masks, alert epochs and alert polygons do not depend on the tiling (also at 1 M pixels:
    benchmarks/parity_bench.py). The frame is bigger than the calibration sample so the sample
    path is the one taken."""
    cube, truth = simulate("menyuan", "A", n_lat=150, n_lon=130, n_epochs=80, seed=2)
    # a short sampled training: the parity holds for any network
    train = TrainConfig(max_passes=6, calibration_pixels=5_000, train_pixels=2_000, sample_pass_pixels=32_768)
    runs = {t: detect_cube(cube, DetectConfig(seismic_area_km2=40.0, tile=t, common_mode=kind, train=train), CPU) for t in (512, 37)}
    one, many = runs[512], runs[37]
    assert one.model.tiling.n_tiles == 1 and many.model.tiling.n_tiles == 20
    assert one.alert_epochs() == many.alert_epochs() == [truth.attrs["first_post_event"]]
    for a, b in zip(one.scores, many.scores):
        assert np.array_equal(a.anomaly, b.anomaly) and np.array_equal(a.deformation, b.deformation, equal_nan=True)
        assert a.common_mode_mm == b.common_mode_mm and a.n_anomalous == b.n_anomalous
    assert [f["geometry"] for f in one.features()] == [f["geometry"] for f in many.features()]
    assert np.array_equal(one.model.sigma_map, many.model.sigma_map, equal_nan=True)
