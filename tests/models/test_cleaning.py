"""Calendar regularisation, gaps, masking, downsampling and the paper's KNN fill."""
from __future__ import annotations

import numpy as np

from ladsdin.models.cleaning import downsample, gap_runs, knn_fill, missing_slots, regularise, to_calendar, valid_pixels


def _dates(days):
    return np.datetime64("2020-01-01") + np.array(days) * np.timedelta64(1, "D")


def test_regularise_rounds_to_slots_and_finds_gaps():
    t = _dates([0, 12, 25, 60, 72, 108])  # 25 is a day late; 36, 48 and 84, 96 missing
    cal, slots, keep = regularise(t)
    assert cal.step_days == 12 and cal.n_slots == 10
    assert slots.tolist() == [0, 1, 2, 5, 6, 9] and keep.all()
    assert missing_slots(slots, cal.n_slots).tolist() == [3, 4, 7, 8]
    assert gap_runs(slots) == [(3, 2), (7, 2)]
    assert str(cal.date(5)) == "2020-03-01"


def test_regularise_keeps_the_closer_of_two_acquisitions_in_a_slot():
    cal, slots, keep = regularise(_dates([0, 6, 12, 17]))  # S1A/S1B 6-day alternation
    assert keep.tolist() == [True, False, True, False] or keep.sum() == 2
    assert slots[keep].tolist() == [0, 1]


def test_to_calendar_scatters_with_nan_gaps():
    d = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = to_calendar(d, np.array([0, 2, 3]), 5)
    assert np.isnan(out[1]).all() and np.isnan(out[4]).all()
    np.testing.assert_array_equal(out[3], d[2])


def test_valid_pixels_needs_coherence_and_observations():
    d = np.ones((10, 2, 2), np.float32)
    d[:8, 0, 1] = np.nan
    coh = np.array([[0.9, 0.9], [0.1, 0.9]])
    ok = valid_pixels(d, coh, min_coherence=0.25, min_valid_fraction=0.5)
    assert ok.tolist() == [[True, False], [False, True]]


def test_downsample_is_every_t_th_pixel():
    a = np.arange(2 * 7 * 7).reshape(2, 7, 7)
    np.testing.assert_array_equal(downsample(a, 3), a[:, [0, 3, 6]][:, :, [0, 3, 6]])


def test_knn_fill_averages_the_nearest_observed_epochs():
    s = np.array([[0.0], [np.nan], [np.nan], [np.nan], [4.0], [8.0]], np.float32)
    out = knn_fill(s, k=2)
    assert out[1, 0] == 2.0  # nearest: slot 0 (d=1) and slot 4 (d=3)... then slot 5? no: k=2 -> 0 and 4
    assert out[2, 0] == 2.0  # slots 0 and 4 are both 2 away
    assert out[3, 0] == 6.0  # slots 4 and 5
    assert np.isfinite(out).all()
