"""The denoiser front end trial (models/denoise.py) and the all-objects null floor it uses."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ladsdin.models.denoise import DenoiserConfig, calibrate_screen, denoise_maps, source_bank, train_denoiser
from ladsdin.models.null_floor import MIN_NULL_SLOTS, NullObjects, exceedance_floor


def test_the_exceedance_floor_is_the_rate_quantile_of_a_power_law_null():
    rng = np.random.default_rng(0)
    alpha, x0, n_slots, per_slot, rate, step = 1.4, 2.0, 40, 50, 0.1, 12
    sizes = np.round(x0 * rng.uniform(size=n_slots * per_slot) ** (-1.0 / alpha)).astype(np.int64)
    floor, info = exceedance_floor(sizes, n_slots, rate, step)
    # N(x) = per_slot (x0 / x)^alpha objects per slot exceed x; the floor has N = p
    p = rate * step / 365.25
    truth = x0 * (per_slot / p) ** (1.0 / alpha)
    assert abs(np.log(floor / truth)) < np.log(1.5), (floor, truth)
    assert abs(info["null_tail_index"] - alpha) < 0.3
    assert info["null_objects"] == sizes.size and info["null_slots"] == n_slots
    assert exceedance_floor(sizes, n_slots, 0.01, step)[0] > floor


def test_the_exceedance_floor_without_objects_rate_or_slots():
    assert exceedance_floor(np.zeros(0, np.int64), 50, 0.1, 12)[0] == 0
    assert exceedance_floor(np.arange(1, 200), 50, 0.0, 12)[0] == 0
    assert exceedance_floor(np.arange(1, 200), MIN_NULL_SLOTS - 1, 0.1, 12)[0] == 0
    # too few objects for a tail: the largest one seen
    floor, info = exceedance_floor(np.array([1, 1, 3, 28, 2]), 30, 0.1, 12)
    assert floor == 28 and info["null_tail"] == "too few objects"
    # a rate within the sample (many slots): the empirical size, no extrapolation
    sizes = np.arange(1, 2001)
    floor, info = exceedance_floor(sizes, 10_000, 3.0, 12)  # p ~ 0.1 -> the 1,000th largest
    assert floor == sizes[::-1][int(np.ceil(3.0 * 12 / 365.25 * 10_000)) - 1] and "null_tail_index" not in info


def test_null_objects_sizes_lists_every_object():
    shape = (10, 10)
    z = np.zeros((3, *shape), np.float32)
    z[0, 1:3, 1:3] = 6.0
    z[0, 6:9, 6:8] = -6.0
    z[1, 0, 0] = 6.0
    z[2] = np.nan
    null = NullObjects(shape, 3, nm=4.0)
    null.add(np.arange(100), z.reshape(3, -1))
    sizes, n = null.sizes()
    assert n == 2 and sorted(sizes.tolist()) == [1, 4, 6]
    assert null.largest().tolist() == [6, 1]


def test_source_bank_patterns():
    bank = source_bank(np.random.default_rng(0), 8, 32, 0.25, 0.25)
    assert bank.shape == (8, 32, 32) and np.isfinite(bank).all()
    assert np.allclose(np.abs(bank).reshape(8, -1).max(1), 1.0)


def _noise(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Spatially coherent unit-variance noise: the atmosphere of a z stack."""
    z = ndimage.gaussian_filter(rng.standard_normal((n, *shape)), (0, 3, 3))
    return (z / z.std()).astype(np.float32)


def test_the_denoiser_returns_an_injected_source_and_suppresses_noise():
    rng = np.random.default_rng(3)
    shape = (64, 64)
    z = _noise(rng, 60, shape)
    z[10, :, :5] = np.nan  # a partly observed slot
    cfg = DenoiserConfig(window=3, patch=32, width=8, steps=250, batch=8, bank=64, seed=0)
    net = train_denoiser(z, np.arange(2, 40), 0.25, 0.25, cfg)
    src = 5.0 * source_bank(np.random.default_rng(9), 1, 64, 0.25, 0.25)[0]
    test = z.copy()
    test[50] += src
    out = denoise_maps(net, test, np.array([50, 0]), cfg.window)
    assert np.isnan(out[1]).all()  # a window that would start before slot 0
    corr_out = np.corrcoef(out[0].ravel(), src.ravel())[0, 1]
    corr_in = np.corrcoef(test[50].ravel(), src.ravel())[0, 1]
    assert corr_out > corr_in and corr_out > 0.6, (corr_out, corr_in)
    # on held-out noise alone the output is smaller than its input
    held = denoise_maps(net, z, np.arange(40, 60), cfg.window)
    assert np.nanstd(held) < 0.5 * np.nanstd(z[40:60])
    # the screens calibrated on that null flag the source, and nothing on a null map
    screen = calibrate_screen(held, nm=4.0, n_a=10, rate=0.1, step_days=12)
    assert screen.min_object >= 10 and screen.floor_info["null_slots"] == 20
    found = screen.objects(out[0])
    assert found and (np.abs(src[found[0]]) > 1.0).mean() > 0.8
