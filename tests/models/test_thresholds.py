"""Eqs. 3-5 on hand-made arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ladsdin.models.thresholds import (
    anomaly_mask,
    common_mode,
    pixel_area_km2,
    planar_ramp,
    residual_sigma,
    seismic_pixel_count,
    temporal_screen,
)


def test_paper_n_a_is_67():
    # A_s = 600 km², A_p = 0.01 km² (100 m pixels), t = 30 -> 66.7 -> 67 (eq. 5)
    assert seismic_pixel_count(600.0, 0.01, 30) == 67


def test_delingha_example_follows_the_equation_not_the_paper_text():
    # The paper quotes N_a = 20 for A_s = 2 km², t = 10; eq. 5 gives 2 (docs/METHOD.md).
    assert seismic_pixel_count(2.0, 0.01, 10) == 2


def test_n_a_rejects_nonsense():
    with pytest.raises(ValueError, match="A_s > 0"):
        seismic_pixel_count(0.0, 0.01, 1)
    with pytest.raises(ValueError, match="t >= 1"):
        seismic_pixel_count(600.0, 0.01, 0)


def test_pixel_area_depends_on_latitude():
    eq = pixel_area_km2(0.0, 0.001, 0.001)
    assert eq == pytest.approx((6371.0088 * math.radians(0.001)) ** 2, rel=1e-12)
    assert eq == pytest.approx(0.012364, rel=1e-3)
    assert pixel_area_km2(60.0, 0.001, 0.001) == pytest.approx(eq * 0.5, rel=1e-9)


def test_sigma_is_std_of_residuals():
    r = np.array([[1.0, 0.0, np.nan], [-1.0, 0.0, 2.0], [1.0, 0.0, np.nan], [-1.0, 0.0, np.nan], [1.0, 0.0, np.nan]])
    s = residual_sigma(r, min_samples=5, floor_mm=0.5)
    assert s[0] == pytest.approx(np.std([1, -1, 1, -1, 1], ddof=1))  # eq. 3
    assert s[1] == pytest.approx(0.5)  # floored
    assert np.isnan(s[2])  # too few samples


def test_anomaly_threshold_is_strict_and_widened():
    resid = np.array([6.0, 6.01, -6.01, np.nan, 7.0])
    sigma = np.ones(5)
    assert anomaly_mask(resid, sigma, 6.0).tolist() == [False, True, True, False, True]  # eq. 4
    widen = np.array([1, 1, 1, 1, 1.2])
    assert anomaly_mask(resid, sigma, 6.0, widen).tolist() == [False, True, True, False, False]


def test_temporal_screen():
    assert temporal_screen(67, 67) and not temporal_screen(66, 67)


def test_common_mode_ignores_a_large_event():
    rng = np.random.default_rng(1)
    r = rng.normal(12.0, 2.0, 10_000)
    r[:4500] += 300.0  # an earthquake over 45 % of the frame
    sigma = np.full(r.size, 2.0)
    plain = abs(np.median(r) - 12.0)
    robust = abs(common_mode(r, sigma, 6.0) - 12.0)
    assert plain > 2.5  # the plain median is dragged
    assert robust < 0.15 and robust < plain / 10


def test_common_mode_stays_with_the_far_field_when_a_quake_covers_most_of_the_frame():
    # 70 % of the pixels carry coseismic values spread over -700..+100 mm (DESIGN.md §1)
    rng = np.random.default_rng(3)
    n = 50_000
    r = rng.normal(-7.0, 6.0, n)
    quake = rng.random(n) < 0.7
    r[quake] += rng.uniform(-700.0, 100.0, quake.sum())
    sigma = np.full(n, 6.0)
    assert abs(np.median(r) - (-7.0)) > 40  # the median follows the quake
    assert common_mode(r, sigma, 6.0) == pytest.approx(-7.0, abs=1.0)


def test_common_mode_needs_enough_pixels():
    assert common_mode(np.array([5.0]), np.array([1.0]), 6.0) == 0.0


def test_planar_ramp_recovers_a_plane_despite_an_event():
    rng = np.random.default_rng(2)
    rows, cols = np.divmod(np.arange(100 * 100), 100)
    r = 3.0 + 0.2 * rows - 0.1 * cols + rng.normal(0, 0.5, rows.size)
    r[(rows < 30) & (cols < 30)] += 100.0
    plane = planar_ramp(r, rows.astype(float), cols.astype(float), np.full(r.size, 0.5), 6.0)
    truth = 3.0 + 0.2 * rows - 0.1 * cols
    assert np.abs(plane - truth).max() < 0.2
