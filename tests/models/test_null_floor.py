"""The object-size floor calibrated on the training epochs' null (models/null_floor.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ladsdin.models.bootstrap import null_z
from ladsdin.models.detector import ScoreParams
from ladsdin.models.null_floor import MIN_NULL_SLOTS, NullObjects, object_floor


def test_the_floor_is_the_tail_quantile_of_a_power_law_null():
    rng = np.random.default_rng(0)
    alpha, x0, rate, step = 1.5, 3.0, 0.1, 12
    sizes = np.round(x0 * rng.uniform(size=8000) ** (-1.0 / alpha)).astype(np.int64)  # P(X > x) = (x0 / x)^alpha
    floor, info = object_floor(sizes, rate, step)
    p = rate * step / 365.25
    truth = x0 * p ** (-1.0 / alpha)
    assert abs(floor - truth) / truth < 0.15, (floor, truth)
    assert abs(info["null_tail_index"] - alpha) < 0.15
    assert info["null_floor_px"] == floor and info["null_slots"] == 8000
    # a lower tolerated rate asks for larger objects
    assert object_floor(sizes, 0.01, step)[0] > floor


def test_the_floor_extrapolates_beyond_a_short_training_record():
    # ~100 slots: p = 0.0033 lies beyond the sample, so the floor exceeds its largest value
    rng = np.random.default_rng(1)
    sizes = np.round(2.0 * rng.uniform(size=100) ** (-1.0 / 1.2)).astype(np.int64)
    floor, info = object_floor(sizes, 0.1, 12)
    assert floor > info["null_max_px"] == sizes.max()


def test_no_floor_without_a_rate_or_enough_slots():
    sizes = np.arange(100)
    assert object_floor(sizes, 0.0, 12)[0] == 0
    assert object_floor(sizes[: MIN_NULL_SLOTS - 1], 0.1, 12)[0] == 0
    # a null without any anomaly: nothing to extrapolate, no floor
    assert object_floor(np.zeros(100, np.int64), 0.1, 12)[0] == 0


def test_null_objects_are_labelled_on_the_whole_frame_with_one_sign_each():
    shape, n_t = (20, 30), 4
    z = np.zeros((n_t, *shape), np.float32)
    z[1, 5:10, 8:14] = 7.0  # 30 px positive, straddling column 11
    z[1, 5:10, 14:16] = -7.0  # 10 px negative beside it
    z[2, 0, 0] = np.nan
    z[3] = np.nan  # no data at all: not a calibration slot
    flat = z.reshape(n_t, -1)
    idx = np.arange(flat.shape[1])
    cols = idx % shape[1]
    whole = NullObjects(shape, n_t, nm=4.0)
    whole.add(idx, flat)
    tiled = NullObjects(shape, n_t, nm=4.0)
    for part in (cols < 11, cols >= 11):  # two tiles: the positive object is cut in two
        tiled.add(idx[part], flat[:, part])
    assert whole.largest().tolist() == tiled.largest().tolist() == [0, 30, 0]
    mixed = NullObjects(shape, n_t, nm=4.0, sign_split=False)
    mixed.add(idx, flat)
    assert mixed.largest().tolist() == [0, 40, 0]


def test_null_z_is_the_scores_own_z():
    rc = np.array([[4.0, -4.0], [4.0, 4.0], [4.0, np.nan]], np.float32)
    sigma = np.array([2.0, 1.0], np.float32)
    g = np.array([1.0, 1.5, 2.0], np.float32)
    gap_in = np.array([[0, 0], [1, 0], [0, 0]], np.int16)  # pixel 0 saw one missing slot before slot 1
    z = null_z(rc, sigma, g, gap_in, n_fit=1, calib=1.25)
    # slot 0 is a fitting slot: its residuals are scaled up by the calibration ratio
    np.testing.assert_allclose(z[0], [2.5, -5.0])
    np.testing.assert_allclose(z[1], [4.0 / 3.0, 4.0])
    assert z[2, 0] == 2.0 and np.isnan(z[2, 1])


@pytest.mark.parametrize("n_a, floor, expect", [(50, 0, 50), (50, 120, 120), (200, 120, 200)])
def test_objects_need_more_than_the_larger_of_n_a_and_the_floor(n_a, floor, expect):
    assert ScoreParams(4.0, n_a, null_floor=floor).min_object == expect
