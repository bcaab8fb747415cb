"""Batch vs incremental small-baseline inversion on a synthetic cube and network."""
from __future__ import annotations

import numpy as np
import pytest

from ladsdin.models.cube import MM_PER_CYCLE
from ladsdin.models.inversion import (
    CLOSURE_THRESHOLD_MM,
    bad_pairs,
    IncrementalInversion,
    batch_inversion,
    loop_closures,
    repair_links,
)

N_EPOCHS, N_PIX, WINDOW = 30, 500, 4


def _cube(seed: int = 0) -> np.ndarray:
    """(N_EPOCHS, N_PIX) LOS mm: trend + seasonal + a co-seismic step at epoch 17, d[0] = 0."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_EPOCHS) * 12.0 / 365.25  # years, 12-day revisit
    rate = rng.normal(0, 10, N_PIX)
    amp, phase = rng.uniform(0, 8, N_PIX), rng.uniform(0, 2 * np.pi, N_PIX)
    step = np.where(np.arange(N_PIX) < 200, rng.normal(40, 10, N_PIX), 0.0)
    d = rate * t[:, None] + amp * np.sin(2 * np.pi * t[:, None] + phase) + step * (t >= t[17])[:, None]
    return d - d[0]


def _network(seed: int = 1) -> list[list[int]]:
    """Predecessors of each epoch k >= 1: its 1-4 nearest, always including k-1 (connected)."""
    rng = np.random.default_rng(seed)
    net: list[list[int]] = [[]]
    for k in range(1, N_EPOCHS):
        n = rng.integers(1, min(WINDOW, k) + 1)
        net.append([k - s for s in range(n, 0, -1)])
    return net


def _ifgs(d: np.ndarray, net: list[list[int]], noise: float, seed: int = 2):
    rng = np.random.default_rng(seed)
    pairs = np.array([(a, k) for k, preds in enumerate(net) for a in preds])
    ifg = d[pairs[:, 1]] - d[pairs[:, 0]] + rng.normal(0, noise, (len(pairs), d.shape[1]))
    return pairs, ifg


def _run_incremental(pairs, ifg, w, repair: bool = False):
    """The filter over the network; ``repair=False`` (the default here) keeps the exact batch answer."""
    inc = IncrementalInversion(ifg.shape[1], window=WINDOW, repair=repair)
    out = []
    for k in range(1, N_EPOCHS):
        sel = pairs[:, 1] == k
        out.append(inc.add_epoch(pairs[sel, 0], ifg[sel], w[sel]))
    return out


def _newest_batch(pairs, ifg, w):
    """(N_EPOCHS - 1, P): batch inversion of the data available at epoch k, read at k."""
    return np.array([batch_inversion(pairs[pairs[:, 1] <= k], ifg[pairs[:, 1] <= k],
                                     w[pairs[:, 1] <= k], k + 1)[k] for k in range(1, N_EPOCHS)])


def test_noise_free_batch_and_incremental_reproduce_the_cube():
    d = _cube()
    pairs, ifg = _ifgs(d, _network(), noise=0.0)
    w = np.ones_like(ifg)
    np.testing.assert_allclose(batch_inversion(pairs, ifg, w, N_EPOCHS), d, atol=1e-6)
    est = _run_incremental(pairs, ifg, w)
    inc = np.array([e.displacement for e in est])
    np.testing.assert_allclose(inc, d[1:], atol=1e-6)
    assert np.sqrt(np.mean((inc - d[1:]) ** 2)) < 1.0
    assert all(np.nanmax(e.residual_rms) < 1e-6 for e in est)
    assert not any(e.closure_flag.any() for e in est)


def test_noisy_incremental_equals_batch_on_the_same_data_and_noise_propagates():
    d, net, sig = _cube(), _network(), 3.0
    pairs, ifg = _ifgs(d, net, noise=sig)
    rng = np.random.default_rng(3)
    w = np.full_like(ifg, 1 / sig**2)
    w[rng.random(w.shape) < 0.05] = 0.0  # some missing interferograms at some pixels
    for k in range(1, N_EPOCHS):  # keep the k-1 link so every epoch stays tied to epoch 0
        w[(pairs[:, 1] == k) & (pairs[:, 0] == k - 1)] = 1 / sig**2
    est = _run_incremental(pairs, ifg, w)
    inc = np.array([e.displacement for e in est])
    batch_now = _newest_batch(pairs, ifg, w)
    assert np.max(np.abs(inc - batch_now)) < 0.5
    assert np.max(np.abs(inc - batch_now)) < 1e-8
    # propagated std from the normal equations of the data available at epoch k (per pixel)
    prop = np.empty_like(inc)
    for k in range(1, N_EPOCHS):
        sel = pairs[:, 1] <= k
        lam = np.zeros((N_PIX, k, k))
        for (a, b), wi in zip(pairs[sel], w[sel]):
            lam[:, b - 1, b - 1] += wi
            if a:
                lam[:, a - 1, a - 1] += wi
                lam[:, a - 1, b - 1] -= wi
                lam[:, b - 1, a - 1] -= wi
        prop[k - 1] = np.sqrt(np.linalg.inv(lam)[:, -1, -1])
    sigma = np.array([e.sigma for e in est])
    np.testing.assert_allclose(sigma, prop, rtol=1e-8)
    ratio = np.sqrt(np.mean((inc - d[1:]) ** 2)) / np.sqrt(np.mean(prop**2))
    assert 0.67 < ratio < 1.5


def _bad_epoch(net: list[list[int]]) -> int:
    return next(k for k in range(10, N_EPOCHS) if len(net[k]) >= 2)


@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_an_unwrapping_error_is_flagged_by_loop_closure(noise):
    d, net = _cube(), _network()
    pairs, ifg = _ifgs(d, net, noise=noise)
    k = _bad_epoch(net)
    i_bad = np.flatnonzero((pairs[:, 1] == k) & (pairs[:, 0] == net[k][0]))[0]
    patch = np.zeros(N_PIX, dtype=bool)
    patch[300:340] = True
    ifg[i_bad, patch] += MM_PER_CYCLE
    est = _run_incremental(pairs, ifg, np.ones_like(ifg))
    flag = est[k - 1].closure_flag
    assert flag[patch].all()
    if noise == 0.0:
        np.testing.assert_array_equal(flag, patch)
    else:
        assert flag[~patch].sum() <= 0.01 * (~patch).sum()
    # the batch closures: only triangles through the bad interferogram, only at the patch
    trip, clo = loop_closures(pairs, ifg)
    assert len(trip) > 0 and clo.shape == (len(trip), N_PIX)
    bad_pair = tuple(pairs[i_bad])
    through = np.array([bad_pair in {(a, b), (b, c), (a, c)} for a, b, c in trip])
    flagged = np.abs(clo) > CLOSURE_THRESHOLD_MM
    assert through.any() and flagged[through][:, patch].all()
    # 3 mm per ifg gives ~5 mm closure noise: a half cycle is ~2.7 sigma, so under 2 % false flags
    assert flagged[through][:, ~patch].mean() <= (0 if noise == 0 else 0.02)
    assert flagged[~through].mean() <= (0 if noise == 0 else 0.02)


def test_disconnected_pixels_are_nan_in_batch_and_incremental():
    d = _cube()[:6, :3]
    pairs = np.array([[0, 1], [1, 2], [2, 3], [1, 3], [3, 4], [4, 5], [2, 5]])
    ifg = d[pairs[:, 1]] - d[pairs[:, 0]]
    w = np.ones_like(ifg)
    w[0, 1] = 0.0  # pixel 1: epoch 1.. not tied to 0 at all
    w[2, 2] = w[3, 2] = 0.0  # pixel 2: epochs 3-4 float until (2, 5) ties them back at epoch 5
    out = batch_inversion(pairs, ifg, w, 6)
    assert np.isnan(out[1:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
    np.testing.assert_allclose(out[:, [0, 2]], d[:, [0, 2]], atol=1e-9)
    published = []
    inc = IncrementalInversion(3, window=3)
    for k in range(1, 6):
        sel = pairs[:, 1] == k
        e = inc.add_epoch(pairs[sel, 0], ifg[sel], w[sel])
        ref = batch_inversion(pairs[pairs[:, 1] <= k], ifg[pairs[:, 1] <= k], w[pairs[:, 1] <= k], k + 1)[k]
        np.testing.assert_allclose(e.displacement, ref, atol=1e-9)
        assert np.array_equal(np.isnan(e.displacement), np.isnan(ref))
        published.append(e.displacement)
    assert np.isnan(published[2][2]) and np.isnan(published[3][2]) and np.isfinite(published[4][2])


def test_bad_input_raises_specific_errors():
    inc = IncrementalInversion(5, window=4)
    with pytest.raises(ValueError, match="n_new=1, P=5"):
        inc.add_epoch([0], np.zeros((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="same shape"):
        inc.add_epoch([0], np.zeros((1, 5)), np.ones((2, 5)))
    with pytest.raises(ValueError, match=">= 0"):
        inc.add_epoch([0], np.zeros((1, 5)), -np.ones((1, 5)))
    for _ in range(5):
        inc.add_epoch([(inc.epoch, inc.epoch + 1)], np.zeros((1, 5)), np.ones((1, 5)))
    with pytest.raises(ValueError, match="window of 4"):
        inc.add_epoch([0, 5], np.zeros((2, 5)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="does not end"):
        inc.add_epoch([(4, 7)], np.zeros((1, 5)), np.ones((1, 5)))
    with pytest.raises(ValueError, match="must be in"):
        inc.add_epoch([6], np.zeros((1, 5)), np.ones((1, 5)))
    assert inc.epoch == 5  # failed calls change nothing
    with pytest.raises(ValueError, match="n_ifg=2"):
        batch_inversion(np.array([[0, 1], [1, 2]]), np.zeros((3, 4)), np.ones((3, 4)), 3)
    with pytest.raises(ValueError, match="a < b"):
        batch_inversion(np.array([[1, 0]]), np.zeros((1, 4)), np.ones((1, 4)), 3)
    with pytest.raises(ValueError, match="pairs"):
        loop_closures(np.array([[0, 1]]), np.zeros((2, 4)))


def test_checkpoint_round_trip_and_chunking_change_nothing():
    d = _cube(7)
    pairs, ifg = _ifgs(d, _network(8), noise=3.0, seed=9)
    w = np.full(ifg.shape, 1 / 9.0)
    straight = _run_incremental(pairs, ifg, w, repair=True)  # the repair path, whose stored pairs carry its removals
    inc = IncrementalInversion(ifg.shape[1], window=WINDOW)
    inc.chunk_pixels = 37  # many uneven chunks
    got = []
    for k in range(1, N_EPOCHS):
        if k in (5, 17):  # stop, checkpoint, and come back as a new object
            meta, arrays = inc.state_arrays()
            assert "lam_triu" in arrays and arrays["lam_triu"].shape == (WINDOW * (WINDOW + 1) // 2, N_PIX)
            inc = IncrementalInversion.from_state_arrays(meta, {n: a.copy() for n, a in arrays.items()})
        sel = pairs[:, 1] == k
        got.append(inc.add_epoch(pairs[sel, 0], ifg[sel], w[sel]))
    for a, b in zip(straight, got):
        np.testing.assert_allclose(b.displacement, a.displacement, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(b.closure_flag, a.closure_flag)
        np.testing.assert_array_equal(b.removed, a.removed)
    assert sum(int(e.removed.sum()) for e in got) > 0  # 3 mm noise: a few votes sit half a cycle out
    with pytest.raises(ValueError, match="expected"):
        meta, arrays = inc.state_arrays()
        IncrementalInversion.from_state_arrays(meta, {**arrays, "eta": arrays["eta"][:, :3]})


def test_gap_bridging_brings_a_pixel_back_after_a_long_gap():
    """Pixel 1 loses coherence for 5 epochs (longer than the window): exact mode leaves it NaN for
    good, bridging ties it back at its last estimate with the gap's uncertainty."""
    n_epochs, truth = 14, np.array([0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    for gap in (None, 20.0):
        inc = IncrementalInversion(2, window=3, gap_sigma_mm=gap)
        out = []
        for k in range(1, n_epochs):
            preds = list(range(max(0, k - 3), k))
            ifg = np.zeros((len(preds), 2)) + truth[k] - truth[preds][:, None]
            w = np.ones((len(preds), 2))
            if 4 <= k <= 8:
                w[:, 1] = 0.0  # pixel 1 missing at epochs 4..8: no link reaches past the gap
            out.append(inc.add_epoch(preds, ifg, w))
        after = out[-1]
        assert np.isfinite(after.displacement[0]) and after.displacement[0] == pytest.approx(0.0, abs=1e-9)
        if gap is None:
            assert np.isnan(after.displacement[1])
        else:
            assert after.displacement[1] == pytest.approx(0.0, abs=1e-9)
            assert after.sigma[1] >= gap > 10 * after.sigma[0]  # the bridge's uncertainty stays visible


def test_repair_links_removes_the_vote_a_cycle_from_the_others():
    c = MM_PER_CYCLE
    # pixels: three votes, one a cycle up | two votes, the prediction sides with the first |
    # two votes, the prediction sides with the second | two votes, the prediction halfway | one vote
    implied = np.array([[1.0, 2.0, 2.0, 0.0, 5.0],
                        [1.5 + c, 2.5 + c, 2.5 + c, c, np.nan],
                        [0.5, np.nan, np.nan, np.nan, np.nan]])
    valid = np.isfinite(implied)
    prediction = np.array([0.0, 1.0, 3.0 + c, c / 2, 5.0 + c])
    keep, unresolved = repair_links(implied, valid, prediction)
    np.testing.assert_array_equal(keep, [[True, True, False, True, True],
                                         [False, False, True, True, False],
                                         [True, False, False, False, False]])
    # halfway, no side wins: the loops at that pixel cannot be closed; a lone vote is never judged
    np.testing.assert_array_equal(unresolved, [False, False, False, True, False])


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_the_filter_removes_a_bad_new_interferogram_and_stores_it_as_missing(noise):
    """A +1 cycle patch on one of an epoch's three interferograms: removed there before the
    estimate (the epoch is right, nothing is flagged), counted in ``removed``, and the stored pair
    is NaN there, so the next epoch's loop through it does not fail. The exact (repair off) filter
    flags the patch at both epochs and carries the cycle into the estimate."""
    d = _cube()
    net = [[]] + [[k - s for s in range(min(3, k), 0, -1)] for k in range(1, N_EPOCHS)]  # 3 links from epoch 3
    pairs, ifg = _ifgs(d, net, noise=noise)
    k = 12
    i_bad = np.flatnonzero((pairs[:, 1] == k) & (pairs[:, 0] == k - 2))[0]
    patch = np.zeros(N_PIX, dtype=bool)
    patch[300:340] = True
    ifg[i_bad, patch] += MM_PER_CYCLE
    w = np.ones_like(ifg)
    fixed = _run_incremental(pairs, ifg, w, repair=True)
    exact = _run_incremental(pairs, ifg, w, repair=False)
    e = fixed[k - 1]
    assert e.removed[patch].tolist() == [1] * patch.sum()
    assert not e.closure_flag[patch].any() and not fixed[k].closure_flag[patch].any()
    err = np.abs(e.displacement - d[k])
    assert err[patch].max() < 1e-6 + 4 * noise
    assert exact[k - 1].closure_flag[patch].all() and exact[k].closure_flag[patch].all()
    assert np.abs(exact[k - 1].displacement - d[k])[patch].min() > 4.0  # a third of the cycle leaks
    if noise == 0.0:
        assert not any(x.removed.any() for i, x in enumerate(fixed) if i != k - 1)
        assert e.removed[~patch].sum() == 0


def test_bad_pairs_finds_the_pair_common_to_the_failing_loops():
    d = _cube()
    net = [[]] + [[k - s for s in range(min(3, k), 0, -1)] for k in range(1, N_EPOCHS)]
    pairs, ifg = _ifgs(d, net, noise=1.0)
    i_bad = np.flatnonzero((pairs[:, 0] == 10) & (pairs[:, 1] == 12))[0]
    patch = np.zeros(N_PIX, dtype=bool)
    patch[100:130] = True
    ifg[i_bad, patch] += MM_PER_CYCLE
    bad, unresolved = bad_pairs(pairs, ifg, np.ones(ifg.shape, bool), N_EPOCHS)
    assert bad[i_bad, patch].all() and not bad[i_bad, ~patch].any()
    assert bad[np.arange(len(pairs)) != i_bad].sum() <= 0.002 * bad.size
    assert not unresolved[:, patch].any()
    w = np.where(bad, 0.0, 1.0)
    fixed = batch_inversion(pairs, ifg, w, N_EPOCHS)
    assert np.abs(fixed[12, patch] - d[12, patch]).max() < 5.0
