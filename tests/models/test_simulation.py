"""The LiCSAR-like simulator: contract, noise calibration (DESIGN.md §2), calendar, events, truth."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ladsdin.models.names import LICSAR_FRAME_RE
from ladsdin.models.cube import MM_PER_CYCLE, SIGN, frame_centre_code, normalize_cube
from ladsdin.models.simulation import MENYUAN, simulate
from ladsdin.models.simulation.atmosphere import Turbulence
from ladsdin.models.simulation.scene import KM_PER_DEG

Sim = tuple[xr.Dataset, xr.Dataset]


@pytest.fixture(scope="module")
def null_a() -> Sim:
    return simulate("null", "A", seed=3)


@pytest.fixture(scope="module")
def menyuan() -> dict[str, Sim]:
    return {t: simulate("menyuan", t, n_epochs=100, seed=1) for t in "AD"}


@pytest.fixture(scope="module")
def delingha() -> dict[str, Sim]:
    return {t: simulate("delingha", t, n_lat=160, n_lon=160, n_epochs=60, seed=2) for t in "AD"}


def _increment_std(cube: xr.Dataset) -> float:
    """Median over 12-day pairs of the spatial std of the difference (pixels valid in both)."""
    d = cube["displacement"].values
    gaps = np.diff(cube["time"].values).astype("timedelta64[D]").astype(int)
    return float(np.median([np.nanstd(d[k + 1] - d[k]) for k in np.flatnonzero(gaps == 12)]))


def test_cube_meets_the_contract(null_a: Sim) -> None:
    cube, _ = null_a
    norm = normalize_cube(cube)
    d = cube["displacement"]
    assert d.dims == ("time", "lat", "lon") and d.dtype == np.float32
    assert norm["coherence"].dtype == np.float32
    lat, lon = cube["lat"].values, cube["lon"].values
    assert (np.diff(lat) < 0).all() and (np.diff(lon) > 0).all()
    np.testing.assert_allclose(np.abs(np.diff(lat)), 0.002, rtol=1e-9)
    assert LICSAR_FRAME_RE.fullmatch(cube.attrs["frame"])
    assert cube.attrs["frame"].startswith("128A_" + frame_centre_code(MENYUAN.centre_lat))
    assert cube.attrs["track"] == "A" and cube.attrs["units"] == "mm" and cube.attrs["sign"] == SIGN
    assert cube.attrs["preset"] == "null" and cube.attrs["seed"] == 3 and "simulate(" in cube.attrs["history"]
    coh = cube["coherence"].values
    assert np.nanmin(coh) >= 0.0 and np.nanmax(coh) <= 1.0 and np.isnan(coh).any()  # water
    first = d.values[0]
    assert np.all(first[np.isfinite(first)] == 0.0)  # cum[0] = 0
    # reference window: per-epoch mean removed, as LiCSBAS does
    x, y = cube.attrs["ref_window"].split("/")
    (c0, c1), (r0, r1) = (map(int, x.split(":")), map(int, y.split(":")))
    ref_means = np.nanmean(d.values[:, r0:r1, c0:c1], axis=(1, 2))
    assert np.abs(ref_means).max() < 1e-3
    # water is NaN in every epoch
    water = np.isnan(coh)
    assert np.isnan(d.values[:, water]).all()


def test_turbulence_std_and_correlation_length() -> None:
    turb = Turbulence((240, 240), 0.002 * KM_PER_DEG, 0.002 * KM_PER_DEG * 0.79, correlation_km=4.0)
    rng = np.random.default_rng(0)
    e_fold = []
    for _ in range(10):
        f = turb.unit(rng).astype(np.float64)
        assert f.std() == pytest.approx(1.0, rel=1e-5)
        ac = np.fft.ifft2(np.abs(np.fft.fft2(f)) ** 2).real
        row = ac[0, :120] / ac[0, 0]
        e_fold.append(np.argmax(row < np.exp(-1)) * 0.002 * KM_PER_DEG * 0.79)
    # ~4 km; a 42 km wide frame loses the longest wavelengths, so slightly less
    assert 2.5 < np.mean(e_fold) < 5.0


def test_per_acquisition_turbulence_within_3_to_8_mm(null_a: Sim) -> None:
    std = null_a[1]["turbulence_std"].values
    assert std.min() >= 3.0 and std.max() <= 8.0
    assert std.max() - std.min() > 2.0  # drawn, not constant


@pytest.mark.parametrize("track", ["A", "D"])
def test_12_day_increment_std_within_8_to_14_mm(null_a: Sim, track: str) -> None:
    cube = null_a[0] if track == "A" else simulate("null", "D", seed=3)[0]
    assert 8.0 <= _increment_std(cube) <= 14.0


def test_gap_runs_are_absent_and_singles_make_24_day_gaps() -> None:
    cube, truth = simulate("null", "A", n_lat=64, n_lon=64, n_epochs=80, seed=5, gap_runs=[(30, 5)])
    start = np.datetime64("2019-01-05")
    run_dates = start + np.arange(30, 35) * np.timedelta64(12, "D")
    times = cube["time"].values.astype("datetime64[D]")
    assert not np.isin(run_dates, times).any()
    assert set(map(str, run_dates)) <= set(truth.attrs["missing_dates"].split(","))
    assert truth.attrs["gap_runs"] == "30:5"
    gaps = np.diff(times).astype(int)
    assert (gaps % 12 == 0).all() and 24 in gaps and gaps.max() >= 72
    assert len(truth.attrs["missing_dates"].split(",")) == 80 - times.size


@pytest.mark.parametrize("track", ["A", "D"])
def test_menyuan_peak_los_and_decorrelated_near_field(menyuan: dict[str, Sim], track: str) -> None:
    cube, truth = menyuan[track]
    cos = truth["coseismic"].values
    assert 600.0 <= np.abs(cos).max() <= 900.0
    dec = truth["decorrelated"].values.astype(bool)
    assert dec.any()
    post = truth["post_event"].values.astype(bool)
    d = cube["displacement"].values
    assert np.isnan(d[post][:, dec]).all()
    # before the event only snow (some winter epochs) and water hide it
    snow = truth["snow"].values.astype(bool)
    water = truth["water"].values.astype(bool)
    assert np.isfinite(d[~post & ~snow][:, dec & ~water]).all()
    assert np.isfinite(d[~post][:, dec]).mean() > 0.8
    # the step is in the data: far from the fault, post minus pre follows the truth
    far = ~dec & np.isfinite(d).all(axis=0)
    step = d[post].mean(axis=0) - d[~post].mean(axis=0)
    assert np.corrcoef(step[far], cos[far])[0, 1] > 0.95


def test_menyuan_ascending_and_descending_see_opposite_patterns(menyuan: dict[str, Sim]) -> None:
    cos_a = menyuan["A"][1]["coseismic"].values
    cos_d = menyuan["D"][1]["coseismic"].values
    assert np.corrcoef(cos_a.ravel(), cos_d.ravel())[0, 1] < -0.5
    # left-lateral E-W fault: the north block moves west, towards an ascending (west-looking
    # back) satellite and away from a descending one; read 8 km north of the epicentre
    lat = menyuan["A"][1]["lat"].values
    row = int(np.argmin(np.abs(lat - (MENYUAN.centre_lat + 8.0 / KM_PER_DEG))))
    col = cos_a.shape[1] // 2
    assert cos_a[row, col] - cos_a[-5, col] > 100.0
    assert cos_d[row, col] - cos_d[-5, col] < -100.0


@pytest.mark.parametrize("track", ["A", "D"])
def test_delingha_is_small(delingha: dict[str, Sim], track: str) -> None:
    _, truth = delingha[track]
    peak = np.abs(truth["coseismic"].values).max()
    assert 20.0 <= peak <= 40.0
    assert peak < MM_PER_CYCLE * 1.5
    assert not truth["decorrelated"].values.any()


def test_event_in_last_15_percent_and_between_acquisitions(menyuan: dict[str, Sim]) -> None:
    for cube, truth in menyuan.values():
        n_slots = truth.attrs["n_slots"]
        start = np.datetime64(truth.attrs["calendar_start"])
        first_post = np.datetime64(truth.attrs["first_post_event"])
        slot = int((first_post - start).astype(int) // 12)
        assert slot == truth.attrs["event_slot"] and slot >= 0.85 * n_slots
        times = cube["time"].values.astype("datetime64[D]")
        k = int(np.flatnonzero(times == first_post)[0])
        assert (times[k] - times[k - 1]).astype(int) == 12  # never inside a gap
        event = np.datetime64(truth.attrs["event_time"][:10])
        assert times[k - 1] < event < times[k]
        assert truth["post_event"].values[k] == 1 and truth["post_event"].values[k - 1] == 0


def test_real_event_date_used_when_it_fits() -> None:
    # slots 91 and 92 from 2019-01-05 are 2022-01-01 and 2022-01-13
    _, truth = simulate("menyuan", "A", n_lat=32, n_lon=32, n_epochs=100, event_index=92)
    assert truth.attrs["event_time"] == "2022-01-07T17:45:30Z"
    assert truth.attrs["first_post_event"] == "2022-01-13"
    with pytest.raises(ValueError, match="gap run"):
        simulate("menyuan", "A", n_lat=32, n_lon=32, n_epochs=100, event_index=92, gap_runs=[(90, 2)])


def test_null_has_no_event(null_a: Sim) -> None:
    truth = null_a[1]
    assert truth.attrs["event_time"] == "" and truth.attrs["first_post_event"] == ""
    assert not truth["coseismic"].values.any() and not truth["post_event"].values.any()


def test_unwrapping_errors_are_whole_cycles_on_few_epochs(null_a: Sim) -> None:
    cube, truth = null_a
    uw = truth["unwrap_error"].values
    assert set(np.unique(uw)) <= {-1, 0, 1}
    hit = np.flatnonzero(uw.any(axis=(1, 2)))
    assert 0 < hit.size <= 0.1 * uw.shape[0]
    d = cube["displacement"].values
    coherent = cube["coherence"].values > 0.3  # sand pixels are too noisy to read a step from
    px_km2 = (0.002 * KM_PER_DEG) ** 2 * np.cos(np.radians(MENYUAN.centre_lat))
    jumps = []
    for k in hit:
        for sign in (-1, 1):
            blob = uw[k] == sign
            if not blob.any():
                continue
            assert blob.sum() * px_km2 < 4.0**2  # an ellipse at most 4 km wide
            # the blob steps against its surroundings, relative to a neighbouring epoch; the
            # turbulence differs by several mm over a few km, so read one blob loosely
            j = k - 1 if k == d.shape[0] - 1 else k + 1
            diff = d[k] - d[j]
            rows, cols = np.nonzero(blob)
            box = (slice(max(rows.min() - 8, 0), rows.max() + 9), slice(max(cols.min() - 8, 0), cols.max() + 9))
            inside = blob[box] & coherent[box]
            ring = ~blob[box] & (uw[k][box] == 0) & coherent[box]
            if inside.sum() < 10:
                continue
            jumps.append(sign * (np.nanmedian(diff[box][inside]) - np.nanmedian(diff[box][ring])))
    assert len(jumps) >= 3
    assert all(0.4 * MM_PER_CYCLE < j < 1.6 * MM_PER_CYCLE for j in jumps)
    assert np.median(jumps) == pytest.approx(MM_PER_CYCLE, abs=0.2 * MM_PER_CYCLE)


def test_deterministic_by_seed() -> None:
    a, ta = simulate("delingha", "D", n_lat=48, n_lon=48, n_epochs=30, seed=7)
    b, tb = simulate("delingha", "D", n_lat=48, n_lon=48, n_epochs=30, seed=7)
    c, _ = simulate("delingha", "D", n_lat=48, n_lon=48, n_epochs=30, seed=8)
    assert a.identical(b) and ta.identical(tb)
    assert not np.array_equal(a["displacement"].values, c["displacement"].values, equal_nan=True)


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(ValueError, match="preset"):
        simulate("tohoku")
    with pytest.raises(ValueError, match="track"):
        simulate("null", "X")
    with pytest.raises(ValueError, match="gap run"):
        simulate("null", n_lat=32, n_lon=32, n_epochs=20, gap_runs=[(15, 10)])


def test_afterslip_grows_logarithmically_after_the_event_only():
    from ladsdin.models.simulation.simulate import afterslip_time_function

    cube, truth = simulate("menyuan", "A", n_lat=64, n_lon=64, spacing_deg=0.004, n_epochs=100, seed=1, event_index=60)
    h = truth["afterslip_time"].values
    post = truth["post_event"].values.astype(bool)
    assert (h[~post] == 0).all() and (np.diff(h[post]) > 0).all()  # 0 before, then increasing
    assert afterslip_time_function(np.array([365.25]), 30.0)[0] == pytest.approx(1.0)
    a = truth["afterslip"].values
    cos = truth["coseismic"].values
    # a year of afterslip is a fraction of the step, same lobes mostly (down-dip slip on the same fault)
    assert 0.02 < np.abs(a).max() / np.abs(cos).max() < 0.3
    big = np.abs(cos) > 50
    assert np.mean(np.sign(a[big]) == np.sign(cos[big])) > 0.8
    # the cube holds it: without afterslip, the difference is afterslip_time x afterslip exactly
    plain, _ = simulate("menyuan", "A", n_lat=64, n_lon=64, spacing_deg=0.004, n_epochs=100, seed=1, event_index=60, afterslip=False)
    k = int(np.flatnonzero(post)[-1])
    diff = cube["displacement"].values[k] - plain["displacement"].values[k]
    ok = np.isfinite(diff)
    np.testing.assert_allclose(diff[ok], (a * h[k])[ok], atol=0.05)


def test_hard_nuisance_adds_seasonal_motion_strong_stratification_and_unwrapping_errors():
    soft, ts = simulate("null", "A", n_lat=64, n_lon=64, n_epochs=90, seed=4)
    hard, th = simulate("null", "A", n_lat=64, n_lon=64, n_epochs=90, seed=4, nuisance="hard")
    assert th.attrs["nuisance"] == "hard"
    # 25-35 mm/km seasonal amplitude against 10-15 (plus a few mm/km of jitter on both)
    assert np.percentile(np.abs(th["stratified_coef"].values), 90) > 1.5 * np.percentile(np.abs(ts["stratified_coef"].values), 90)
    amp = th["seasonal_amplitude"].values
    assert np.mean(amp > 20.0) > 0.6  # 30 mm on most pixels
    n_unwrap = int((np.abs(th["unwrap_error"].values).reshape(th.sizes["time"], -1).max(axis=1) > 0).sum())
    assert n_unwrap >= 0.08 * th.sizes["time"]
    with pytest.raises(ValueError, match="nuisance"):
        simulate("null", "A", n_lat=32, n_lon=32, n_epochs=20, nuisance="extreme")
