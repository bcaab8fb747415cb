"""The post-event regime, the bounded common mode, one-sign objects and the classical detector."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.classical import detect_classical
from ladsdin.models.cube import normalize_cube
from ladsdin.models.detector import ScoreParams
from ladsdin.models.labelling import label_signed
from ladsdin.models.screens import screen_epoch
from ladsdin.models.simulation.simulate import afterslip_time_function
from ladsdin.models.thresholds import common_mode, common_mode_bound
from ladsdin.models.training import TrainConfig

from .synthetic import small_cube

CPU = torch.device("cpu")
FAST = TrainConfig(max_passes=8, patience=3)
EVENT, AFTERSHOCK, N_T = 80, 118, 130


def _afterslip_cube() -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    """A 40 x 40 frame: an 80 mm step in a central disc at slot 80, then 45 mm of logarithmic
    afterslip there over the next 50 epochs, and a 60 mm aftershock in a corner block at 118."""
    base = small_cube(n_t=N_T, ny=40, nx=40, noise=4.0, step_at=EVENT, step_mm=80.0, seed=11)
    d = base["displacement"].values.copy()
    yy, xx = np.mgrid[:40, :40]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 < 10**2
    block = (yy < 12) & (xx < 12)
    days = (np.arange(N_T) - EVENT) * 12.0 + 6.0
    ramp = 45.0 * afterslip_time_function(days, 20.0) / afterslip_time_function(np.array([50 * 12.0]), 20.0)[0]
    ramp[:EVENT] = 0.0
    d += (ramp[:, None, None] * disc[None]).astype(np.float32)
    d[AFTERSHOCK:] += np.where(block, 60.0, 0.0).astype(np.float32)[None]
    out = base.copy(data={"displacement": base["displacement"].copy(data=d)})
    return normalize_cube(out), disc, block


@pytest.fixture(scope="module")
def afterslip_run():
    cube, disc, block = _afterslip_cube()
    cfg = DetectConfig(seismic_area_km2=1.0, train_fraction=0.6, train=FAST)
    return cube, disc, block, cfg, detect_cube(cube, cfg, CPU)


def test_afterslip_is_tracked_not_alerted_and_an_aftershock_still_alerts(afterslip_run):
    cube, disc, block, cfg, res = afterslip_run
    dates = [str(t)[:10] for t in cube["time"].values]
    assert res.alert_epochs() == [dates[EVENT], dates[AFTERSHOCK]]
    after = [s for s in res.scores if EVENT < s.slot < AFTERSHOCK]
    # the disc is in the regime for a year (31 slots) and its tracked motion grows with the afterslip
    regime = [s for s in after if s.slot <= EVENT + 30]
    assert all(s.post_event_pixels >= 0.8 * disc.sum() for s in regime)
    assert regime[-1].afterslip_median_mm > 25.0
    # then it ends (a few isolated confirmed steps elsewhere may hold their own)
    assert all(s.post_event_pixels < 0.1 * disc.sum() for s in after if s.slot > EVENT + 31)
    # the afterslip is reported as its own signal, inside the disc, never as a seismic object
    reported = [s for s in after if s.afterslip_objects]
    assert reported, "45 mm of afterslip at N_m 6 (sigma ~5 mm) should pass the screens at least once"
    for s in reported:
        for o in s.afterslip_objects:
            assert disc[o.rows, o.cols].mean() > 0.9
            assert o.los_min_mm > 0  # one sign: the afterslip is positive here
    first = next(s for s in res.scores if s.slot == AFTERSHOCK)
    inside = np.isfinite(first.deformation)
    assert block[inside].mean() > 0.9


def test_classical_detector_scores_the_same_epochs_with_the_same_screens(afterslip_run):
    cube, _, block, cfg, res = afterslip_run
    scores, rep = detect_classical(cube, cfg)
    assert [s.slot for s in scores] == [s.slot for s in res.scores]
    assert rep["n_a"] == res.n_a and rep["pixels"] == res.model.n_pixels
    alerts = [s.date for s in scores if s.objects]
    dates = [str(t)[:10] for t in cube["time"].values]
    assert dates[EVENT] in alerts and dates[AFTERSHOCK] in alerts


def test_common_mode_bound_keeps_the_far_field_when_an_event_covers_most_of_the_frame():
    rng = np.random.default_rng(0)
    n = 20_000
    r = rng.normal(0.0, 4.0, n)
    r[: int(0.85 * n)] = rng.normal(-80.0, 6.0, int(0.85 * n))  # a deformed plateau over 85 % of the frame
    sigma = np.full(n, 4.0)
    assert common_mode(r, sigma, 6.0) < -50.0  # unbounded: the mode lands on the plateau
    bound = common_mode_bound(np.array([3.0, -8.0, 5.0, np.nan]))
    assert bound == pytest.approx(1.5 * 8.0 + 2.0)
    assert abs(common_mode(r, sigma, 6.0, bound=bound)) < 3.0
    assert common_mode_bound(np.array([np.nan])) == float("inf")


def test_objects_hold_one_sign():
    a = np.zeros((6, 8), bool)
    a[1:5, 1:7] = True
    pos = np.zeros((6, 8), bool)
    pos[:, :4] = True
    labels, n = label_signed(a, pos)
    assert n == 2
    assert set(np.unique(labels[1:5, 1:4])) == {1} and set(np.unique(labels[1:5, 4:7])) == {2}
    # the screens: a lobe of +40 mm touching noise of -40 mm makes two objects, not one
    shape = (6, 8)
    vidx = np.arange(48)
    resid = np.where(pos.reshape(-1), 40.0, -40.0).astype(np.float32) * a.reshape(-1)
    thr = np.full(48, 10.0, np.float32)
    sigma = np.full(48, 2.0, np.float32)
    split = screen_epoch(resid, thr, sigma, vidx, shape, ScoreParams(6.0, 5, common_mode="none", sign_split=True))
    joined = screen_epoch(resid, thr, sigma, vidx, shape, ScoreParams(6.0, 5, common_mode="none", sign_split=False))
    assert [o.n_pixels for o in split.objects] == [12, 12]
    assert [o.n_pixels for o in joined.objects] == [24]
