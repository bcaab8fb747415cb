"""The forecaster and the per-epoch scoring step on a small seeded cube."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.cleaning import Calendar
from ladsdin.models.bootstrap import fit_forecaster
from ladsdin.models.detector import FrameModel, PixelGrid, ScoreParams
from ladsdin.models.scoring import score_in_memory
from ladsdin.models.tiling import TileModel, Tiling
from ladsdin.models.training import TrainConfig

from .synthetic import small_cube

CPU = torch.device("cpu")
FAST = TrainConfig(max_passes=8, patience=3)


@pytest.fixture(scope="module")
def fitted():
    cube = small_cube(n_t=90, noise=5.0, seed=3)
    y = cube["displacement"].values.reshape(90, -1)[:70]
    cal = Calendar(np.datetime64("2019-01-05"), 12, 70)
    fc, state = fit_forecaster(y, cal, FAST, CPU, nm=6.0)
    return cube, y, fc, state


def test_stepping_reproduces_the_sequence_run(fitted):
    _, y, fc, state = fitted
    st = fc.init_state()
    stepped = []
    for t in range(y.shape[0]):
        p, _ = fc.predict(st)
        stepped.append(p.numpy())
        st = fc.advance(st, torch.from_numpy(y[t]))
    xn = (y - np.stack([fc.trend(t).numpy() for t in range(y.shape[0])])) / fc.scale
    f, _ = fc.run_sequence(xn.astype(np.float32))
    seq = np.stack([fc.trend(t).numpy() for t in range(y.shape[0])]) + fc.scale * f
    # stepping keeps h and c in float16 (the stored state) where the sequence run keeps float32:
    # they agree to far below a millimetre and far below sigma
    np.testing.assert_allclose(np.stack(stepped)[1:], seq[1:], atol=0.05)
    np.testing.assert_allclose(st.h.float().numpy(), state.h.float().numpy(), atol=5e-3)
    np.testing.assert_allclose(fc.head(st.h).numpy(), fc.head(state.h).numpy(), atol=5e-3)
    assert st.h.dtype == state.h.dtype == torch.float16


def test_sigma_matches_the_one_step_error_and_lstm_beats_the_baseline(fitted):
    _, _, fc, _ = fitted
    rep = fc.report
    # white noise of 5 mm around a trend: the ideal one-step error is ~5 mm; "last value +
    # increment" doubles the noise variance (~7.1 mm)
    assert 4.0 < rep["sigma_median_mm"] < 6.5
    assert rep["val_rms_lstm_mm"] < 0.85 * rep["val_rms_baseline_mm"]
    g = np.array(rep["gap_factor"])
    assert g[0] == 1.0 and (np.diff(g) >= 0).all() and g[-1] < 1.6


def test_training_r2_is_reported(fitted):
    assert 0.0 < fitted[2].report["r2_mean"] <= 1.0


def test_scoring_steps_through_a_gap_and_refuses_replays(fitted):
    cube, y, fc, state = fitted
    index = np.arange(y.shape[1])
    grid = PixelGrid(cube["lat"].values, cube["lon"].values, index)
    model = FrameModel(fc, Tiling.of(grid.shape, max(grid.shape)), [TileModel(index, fc.coef, fc.scale, fc.sigma)], grid,
                       ScoreParams(nm=6.0, n_a=20), "test", 0.01)
    obs = cube["displacement"].values[73]
    states = [state]
    score = score_in_memory(model, states, obs, 73, "2021-05-24")  # slots 70-72 missing
    new = states[0]
    assert new.slot == 73 and score.horizon_max == 4
    assert int(new.since_obs.max()) == 0
    assert score.n_anomalous <= 3
    with pytest.raises(ValueError, match="not after"):
        score_in_memory(model, states, obs, 73, "2021-05-24")
    assert states[0] is new  # a refused epoch saves nothing


def test_a_permanent_step_alerts_once_then_becomes_normal():
    cube = small_cube(n_t=100, noise=4.0, step_at=92, step_mm=80.0, seed=5)
    res = detect_cube(cube, DetectConfig(seismic_area_km2=2.0, train=FAST), CPU)
    assert res.alert_epochs() == [str(cube["time"].values[92])[:10]]
    first = next(s for s in res.scores if s.objects)
    inside = np.isfinite(first.deformation)
    # D_s recovers the step (plus that epoch's frame offset, which the uncorrected residual keeps)
    assert abs(np.nanmedian(first.deformation[inside]) - 80.0 - first.common_mode_mm) < 6.0
    # re-anchored: the new level is normal from the next epoch on (no repeated alerts)
    assert all(s.n_anomalous < res.n_a for s in res.scores if s.date > first.date)


def test_detect_refuses_too_short_a_record():
    from ladsdin.models.cube import CubeError

    with pytest.raises(CubeError, match="training"):
        detect_cube(small_cube(n_t=20), DetectConfig(train=FAST), CPU)
