"""A LiCSAR/LiCSBAS-like displacement cube with known truth, epoch by epoch.

Each acquisition k (a 12-day calendar slot that was not missed) is the sum of

- secular LOS velocity x time (regional field, interseismic loading, a subsidence bowl),
- annual permafrost heave (10-30 mm on high ground),
- turbulent troposphere (3-8 mm spatial std, ~4 km correlation; summer passes are stormier),
- stratified troposphere (seasonal ±10-15 mm per km of relief plus per-epoch jitter),
- an orbital ramp (~0.1 mm/km), pixel decorrelation noise (from coherence),
- on ~``unwrap_fraction`` of the epochs, ±1 cycle (27.73 mm) unwrapping-error blobs,
- after the event, the Okada (1985) coseismic LOS step and logarithmic afterslip
  (``A(x) log(1 + t/tau) / log(1 + 365.25/tau)``, ``A`` the LOS of one year of afterslip, see
  :func:`.scene.afterslip_patches`),

then referenced as LiCSBAS does: minus the per-epoch mean of a 5 x 5 reference window, and
minus the first epoch (cum[0] = 0). NaN marks water (all epochs), snow on high ground (some
winter epochs), and the near field after the event (C-band decorrelation). Noise levels follow
DESIGN.md §2. ``nuisance="hard"`` makes a frame that a detector should find hard to keep quiet
on: stratified delay of 25-35 mm per km of relief, 30 mm of annual motion on most pixels
(irrigation, wetlands, permafrost: a smooth amplitude field on ~85 % of the frame, its phase
varying over tens of km), and unwrapping errors on at least 15 % of the epochs. Memory: the cube plus an int8 cube of the unwrapping truth; float32 throughout.
"""
from __future__ import annotations

import json
import logging
import dataclasses
from dataclasses import asdict
from typing import Iterable

import numpy as np
import xarray as xr

import ladsdin
from ladsdin.models.cube import MM_PER_CYCLE, SIGN, UNITS, WAVELENGTH_M

from ladsdin.models.simulation.acquisitions import Calendar, event_datetime, make_calendar
from ladsdin.models.simulation.atmosphere import Turbulence, orbital_ramp, paint_unwrap_blobs, stratified_coefficient
from ladsdin.models.simulation.scenarios import Scenario, get_scenario
from ladsdin.models.simulation.scene import HEADING_DEG, REF_SIZE, Grid, Scene, build_scene, make_grid, smooth_field

logger = logging.getLogger(__name__)

_TRACK_CODE = {"A": 1, "D": 2}
# seed-stream roles, so that one part of the simulation never shifts another's random numbers
_SCENE, _CALENDAR, _EPOCH, _EVENT, _NUISANCE = 0, 1, 2, 3, 4
#: Nuisance levels of :func:`simulate`.
NUISANCE_LEVELS = ("standard", "hard")
#: The hard level's unwrapping-error fraction (a floor on ``unwrap_fraction``).
HARD_UNWRAP_FRACTION = 0.15
_WINTER_MONTHS = (12, 1, 2, 3)
_SNOW_PROBABILITY = 0.5


def _check_args(track: str, n_lat: int, n_lon: int, spacing_deg: float, unwrap_fraction: float) -> str:
    t = str(track).strip().upper()[:1]
    if t not in _TRACK_CODE:
        raise ValueError(f"track {track!r} is not 'A' (ascending) or 'D' (descending)")
    if min(n_lat, n_lon) < 16:
        raise ValueError(f"grid {n_lat}x{n_lon} is too small; use at least 16x16 pixels")
    if not 0.0 < spacing_deg <= 0.05:
        raise ValueError(f"spacing_deg={spacing_deg} must be in (0, 0.05]; LiCSAR posts at 0.001°")
    if not 0.0 <= unwrap_fraction <= 1.0:
        raise ValueError(f"unwrap_fraction={unwrap_fraction} must be in [0, 1]")
    return t


def _hard_seasonal(scene: Scene, grid: Grid, seed: int) -> Scene:
    """``scene`` with 30 mm of annual LOS motion added on ~85 % of its pixels (nuisance "hard")."""
    rng = np.random.default_rng([seed, _NUISANCE])

    cover = np.clip((smooth_field(rng, grid, 25.0) + 1.04) / 0.4, 0.0, 1.0)  # ~15 % of the frame without
    amp = 30.0 * cover
    phase = 2 * np.pi * (30.0 + 40.0 * smooth_field(rng, grid, 40.0)) / 365.25
    return dataclasses.replace(scene, seasonal_cos=(scene.seasonal_cos + amp * np.cos(phase)).astype(np.float32),
                               seasonal_sin=(scene.seasonal_sin + amp * np.sin(phase)).astype(np.float32))


def afterslip_time_function(days: np.ndarray, tau_days: float) -> np.ndarray:
    """log(1 + t/tau) / log(1 + 365.25/tau): 0 at the event, 1 a year later (0 before it)."""
    t = np.maximum(np.asarray(days, dtype=np.float64), 0.0)
    return np.log1p(t / tau_days) / np.log1p(365.25 / tau_days)


def _epoch_field(rng: np.random.Generator, scene: Scene, grid: Grid, turb: Turbulence, dem_km: np.ndarray,
                 date: np.datetime64, t_years: float, strat_amp: float, strat_peak: float,
                 ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """One acquisition's field, without the coseismic step, unwrapping errors or referencing.

    Returns:
        (field, turbulence unit field, turbulence std mm, stratification mm/km): the fields are
        (n_lat, n_lon) float32, LOS mm.
    """
    doy = float((date - date.astype("datetime64[Y]")).astype(int))
    # turbulence is stronger in the wet season; the std stays within 3-8 mm (DESIGN.md §2)
    wet = 1.2 * np.cos(2 * np.pi * (doy - strat_peak) / 365.25) + rng.normal(0.0, 0.8)
    sigma = 3.0 + 5.0 / (1.0 + float(np.exp(-wet)))
    unit = turb.unit(rng)
    field = unit * np.float32(sigma)
    coef = float(stratified_coefficient(np.array([doy]), strat_amp, strat_peak, rng.normal(0.0, 3.0, 1))[0])
    # wet season: more delay over low ground (thicker wet layer above it), which reads as motion
    # away from the satellite there, i.e. LOS grows with height
    field += np.float32(coef) * dem_km
    ge, gn, quad = orbital_ramp(rng)
    east = grid.east_km.astype(np.float32)
    field += (np.float32(ge) * east + np.float32(quad) * east * east)[None, :]
    field += (np.float32(gn) * grid.north_km.astype(np.float32))[:, None]
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise *= scene.noise_std
    field += noise
    field += scene.velocity * np.float32(t_years)
    wt = 2 * np.pi * float((date - np.datetime64("2000-01-01", "D")).astype(int)) / 365.25
    field += scene.seasonal_cos * np.float32(np.cos(wt))
    field += scene.seasonal_sin * np.float32(np.sin(wt))
    return field, unit, sigma, coef


def simulate(
    preset: str,
    track: str = "A",
    n_lat: int = 240,
    n_lon: int = 240,
    spacing_deg: float = 0.002,
    n_epochs: int = 150,
    seed: int = 0,
    start: str = "2019-01-05",
    step_days: int = 12,
    missing_fraction: float = 0.08,
    gap_runs: Iterable[tuple[int, int]] = (),
    unwrap_fraction: float = 0.03,
    event_index: int | None = None,
    progress: bool = False,
    afterslip: bool = True,
    nuisance: str = "standard",
) -> tuple[xr.Dataset, xr.Dataset]:
    """Simulate one frame's LOS displacement time series and its ground truth.

    Args:
        preset: 'menyuan', 'delingha' or 'null' (see :mod:`.scenarios`).
        track: 'A' (ascending, heading -10°) or 'D' (descending, heading -170°).
        n_lat, n_lon: grid size; spacing_deg: pixel spacing, degrees (LiCSAR: 0.001).
        n_epochs: number of calendar slots (acquired epochs are fewer).
        seed: everything is a deterministic function of the arguments.
        start: ISO date of slot 0; step_days: revisit.
        missing_fraction: probability of a single missed pass per slot.
        gap_runs: (start slot, length) runs of consecutive missed passes.
        unwrap_fraction: probability that an epoch carries unwrapping-error blobs.
        event_index: calendar slot of the first post-event acquisition (default: ~90 % of the
            slots, within the last 15 %, never next to a gap).
        progress: show a tqdm bar over epochs.
        afterslip: add the preset's postseismic afterslip after its event (False: a pure step).
        nuisance: 'standard' (DESIGN.md §2) or 'hard' (see the module docstring).

    Returns:
        (cube, truth). cube: ``displacement`` (time, lat, lon) float32 LOS mm, +towards the
        satellite, NaN = no data, cum[0] = 0; ``coherence`` (lat, lon) float32 0..1; lat
        descending; attrs frame, track, units, sign, preset, seed, history, ref_window.
        truth: see :func:`_truth_dataset`.

    Raises:
        ValueError: an unknown preset or track, or impossible sizes, fractions, runs or slot.
    """
    scenario = get_scenario(preset)
    trk = _check_args(track, n_lat, n_lon, spacing_deg, unwrap_fraction)
    if nuisance not in NUISANCE_LEVELS:
        raise ValueError(f"nuisance {nuisance!r} is not one of {', '.join(NUISANCE_LEVELS)}")
    tc = _TRACK_CODE[trk]
    grid = make_grid(scenario.centre_lat, scenario.centre_lon, n_lat, n_lon, spacing_deg)
    runs = tuple(tuple(r) for r in gap_runs)
    cal = make_calendar(np.random.default_rng([seed, _CALENDAR, tc]), n_epochs, start, step_days,
                        missing_fraction, runs, scenario.has_event, event_index)
    rng_scene = np.random.default_rng([seed, _SCENE])  # shared by both tracks: same ground
    scene = build_scene(rng_scene, grid, scenario, trk)
    strat_amp = float(rng_scene.uniform(10.0, 15.0))
    strat_peak = float(rng_scene.uniform(190.0, 220.0))
    if nuisance == "hard":
        scene = _hard_seasonal(scene, grid, seed)
        strat_amp = float(np.random.default_rng([seed, _NUISANCE, 1]).uniform(25.0, 35.0))
        unwrap_fraction = max(unwrap_fraction, HARD_UNWRAP_FRACTION)
    if not afterslip:
        scene = dataclasses.replace(scene, afterslip=np.zeros_like(scene.afterslip))
    turb = Turbulence(grid.shape, grid.dy_km, grid.dx_km, correlation_km=4.0)
    dem_km = ((scene.dem - scene.dem.mean(dtype=np.float64)) / 1000.0).astype(np.float32)
    snow_levels = np.quantile(scene.dem, np.linspace(0.70, 0.95, 26))

    dates, slots = cal.dates, cal.slots
    n_t = dates.size
    cube = np.empty((n_t, n_lat, n_lon), dtype=np.float32)
    unwrap = np.zeros((n_t, n_lat, n_lon), dtype=np.int8)
    turb_std = np.empty(n_t, dtype=np.float32)
    strat = np.empty(n_t, dtype=np.float32)
    snowy = np.zeros(n_t, dtype=np.int8)
    post = slots >= cal.event_slot if cal.event_slot > 0 else np.zeros(n_t, dtype=bool)
    r0, c0 = scene.ref
    ref_win = (slice(r0, r0 + REF_SIZE), slice(c0, c0 + REF_SIZE))
    forbid = ~scene.snow_ok
    blob_weights = (1.0 - np.nan_to_num(scene.coherence, nan=0.0)) ** 2 + 1e-3
    blob_weights[scene.nodata] = 0.0
    event_iso, note = "", "no event"
    after_t = np.zeros(n_t, dtype=np.float32)  # afterslip time function per acquisition
    if scenario.has_event:
        when, note = event_datetime(cal, scenario.event_time, np.random.default_rng([seed, _EVENT, tc]))
        event_iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        days = (dates.astype("datetime64[s]") - np.datetime64(event_iso.rstrip("Z"), "s")).astype(np.float64) / 86400.0
        after_t = np.where(post, afterslip_time_function(days, scenario.afterslip_tau_days), 0.0).astype(np.float32)
    first = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_t, desc=f"simulate {scenario.name} {trk}", unit="epoch")
    for k in range(n_t):
        rng = np.random.default_rng([seed, _EPOCH, tc, int(slots[k])])
        t_years = float((dates[k] - dates[0]).astype(int)) / 365.25
        field, unit, turb_std[k], strat[k] = _epoch_field(
            rng, scene, grid, turb, dem_km, dates[k], t_years, strat_amp, strat_peak)
        if post[k]:
            field += scene.coseismic
            if after_t[k]:
                field += scene.afterslip * after_t[k]
        if k > 0 and rng.random() < unwrap_fraction:
            paint_unwrap_blobs(rng, unwrap[k], grid.dy_km, grid.dx_km, blob_weights, unit,
                               1 + int(rng.poisson(0.5)), forbid=forbid)
            field += unwrap[k].astype(np.float32) * np.float32(MM_PER_CYCLE)
        field -= np.float32(field[ref_win].mean(dtype=np.float64))  # LiCSBAS reference window
        if first is None:
            first = field.copy()
        field -= first  # cum[0] = 0
        mask = scene.nodata.copy()
        if post[k]:
            mask |= scene.decorrelated
        month = int(str(dates[k])[5:7])
        if k > 0 and month in _WINTER_MONTHS and rng.random() < _SNOW_PROBABILITY:
            snowy[k] = 1
            line = snow_levels[int(rng.integers(snow_levels.size))]
            mask |= ((scene.dem + np.float32(80.0) * unit) > line) & scene.snow_ok
        np.copyto(field, np.float32(np.nan), where=mask)
        cube[k] = field
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    frame = scenario.frame_id(trk)
    args = dict(preset=scenario.name, track=trk, n_lat=n_lat, n_lon=n_lon, spacing_deg=spacing_deg,
                n_epochs=n_epochs, seed=seed, start=str(start), step_days=step_days,
                missing_fraction=missing_fraction, gap_runs=[list(r) for r in cal.gap_runs],
                unwrap_fraction=unwrap_fraction, event_index=event_index, afterslip=afterslip, nuisance=nuisance)
    history = f"ladsdin {ladsdin.__version__} ladsdin.models.simulation.simulate({json.dumps(args)})"
    refarea = f"{c0}:{c0 + REF_SIZE}/{r0}:{r0 + REF_SIZE}"  # LiCSBAS 'x1:x2/y1:y2', half-open
    time = dates.astype("datetime64[ns]")
    coords = {"lat": grid.lat, "lon": grid.lon}
    cube_ds = xr.Dataset(
        {
            "displacement": (("time", "lat", "lon"), cube,
                             {"units": UNITS, "long_name": "LOS displacement", "sign": SIGN}),
            "coherence": (("lat", "lon"), scene.coherence, {"units": "1", "long_name": "average coherence"}),
        },
        coords={"time": time, **coords},
        attrs={
            "frame": frame, "track": trk, "units": UNITS, "sign": SIGN, "preset": scenario.name,
            "seed": int(seed), "history": history, "ref_window": refarea,
            "heading_deg": HEADING_DEG[trk], "incidence_deg": float(scene.incidence[n_lat // 2, n_lon // 2]),
            "wavelength_m": WAVELENGTH_M, "spacing_deg": float(spacing_deg),
            "source": "synthetic (ladsdin.models.simulation), not real LiCSAR data",
        },
    )
    cos_ref = scene.coseismic - np.float32(scene.coseismic[ref_win].mean(dtype=np.float64))
    aft_ref = scene.afterslip - np.float32(scene.afterslip[ref_win].mean(dtype=np.float64))
    truth = _truth_dataset(scenario, cal, scene, cos_ref, aft_ref, after_t, unwrap, turb_std, strat, snowy, post,
                           time, coords, ref_win,
                           dict(frame=frame, track=trk, preset=scenario.name, seed=int(seed),
                                event_time=event_iso, event_time_note=note, ref_window=refarea,
                                history=history, nuisance=nuisance,
                                afterslip_tau_days=float(scenario.afterslip_tau_days) if afterslip else 0.0))
    logger.info("simulated %s %s: %d epochs of %d slots, event slot %d", frame, scenario.name, n_t,
                n_epochs, cal.event_slot)
    return cube_ds, truth


def _truth_dataset(scenario: Scenario, cal: Calendar, scene: Scene, coseismic: np.ndarray,
                   afterslip: np.ndarray, afterslip_time: np.ndarray, unwrap: np.ndarray, turb_std: np.ndarray, strat: np.ndarray, snowy: np.ndarray,
                   post: np.ndarray, time: np.ndarray, coords: dict[str, np.ndarray],
                   ref_win: tuple[slice, slice], attrs: dict[str, object]) -> xr.Dataset:
    """The truth sidecar.

    Variables (LOS mm are positive towards the satellite, relative to the reference window):

    - ``coseismic`` (lat, lon) float32 LOS mm: the step added to every post-event epoch (0 for null)
    - ``afterslip`` (lat, lon) float32 LOS mm: one year of afterslip (0 without); epoch k holds
      ``coseismic + afterslip * afterslip_time[k]`` of event signal
    - ``afterslip_time`` (time) float32: the afterslip time function (0 before the event)
    - ``decorrelated`` (lat, lon) int8: 1 = near field set to NaN in every post-event epoch
    - ``unwrap_error`` (time, lat, lon) int8: unwrapping error in 2π cycles added to that epoch
      only (+1 = +27.73 mm, ``cube.MM_PER_CYCLE``)
    - ``velocity`` (lat, lon) float32 LOS mm/yr; ``seasonal_amplitude`` (lat, lon) float32 LOS mm
    - ``dem`` (lat, lon) float32 m; ``water`` (lat, lon) int8 (NaN in every epoch)
    - ``los_east``, ``los_north``, ``los_up`` (lat, lon) float32: ground-to-satellite unit vector
    - ``turbulence_std`` (time) float32 mm: spatial std of the turbulent delay of each acquisition
    - ``stratified_coef`` (time) float32 mm/km; ``snow`` (time) int8: snow masking applied
    - ``post_event`` (time) int8; coordinate ``slot`` (time) int32: calendar slot

    Attrs: event_time (ISO UTC, '' for null), event_time_note, first_post_event (YYYY-MM-DD, ''
    for null), event_slot (-1 for null), missing_dates (comma-separated ISO dates), gap_runs
    ('slot:len,...'), n_slots, calendar_start, preset, track, frame, seed, magnitude, faults
    (JSON list of patches), ref_window, nuisance, afterslip_tau_days (0 = no afterslip), units, sign.
    """
    vel_ref = scene.velocity - np.float32(scene.velocity[ref_win].mean(dtype=np.float64))
    amp = np.hypot(scene.seasonal_cos, scene.seasonal_sin).astype(np.float32)
    first_post = str(cal.slot_dates[cal.event_slot]) if cal.event_slot > 0 else ""
    ll = ("lat", "lon")
    return xr.Dataset(
        {
            "coseismic": (ll, coseismic.astype(np.float32), {"units": UNITS, "sign": SIGN,
                          "long_name": "coseismic LOS step, relative to the reference window"}),
            "afterslip": (ll, afterslip.astype(np.float32), {"units": UNITS, "sign": SIGN,
                          "long_name": "LOS of one year of afterslip, relative to the reference window"}),
            "afterslip_time": (("time",), afterslip_time.astype(np.float32),
                               {"long_name": "log(1 + t/tau) / log(1 + 365.25 d/tau), t since the event"}),
            "decorrelated": (ll, scene.decorrelated.astype(np.int8), {"long_name": "near field NaN after the event"}),
            "unwrap_error": (("time", "lat", "lon"), unwrap, {"units": "cycles", "mm_per_cycle": MM_PER_CYCLE,
                             "long_name": "unwrapping error added to this epoch only"}),
            "velocity": (ll, vel_ref.astype(np.float32), {"units": "mm/yr", "sign": SIGN}),
            "seasonal_amplitude": (ll, amp, {"units": UNITS, "long_name": "annual LOS amplitude"}),
            "dem": (ll, scene.dem, {"units": "m"}),
            "water": (ll, scene.nodata.astype(np.int8), {"long_name": "no data in any epoch"}),
            "los_east": (ll, scene.e_east, {"units": "1"}),
            "los_north": (ll, scene.e_north, {"units": "1"}),
            "los_up": (ll, scene.e_up, {"units": "1"}),
            "turbulence_std": (("time",), turb_std, {"units": UNITS}),
            "stratified_coef": (("time",), strat, {"units": "mm/km"}),
            "snow": (("time",), snowy, {"long_name": "snow decorrelation applied"}),
            "post_event": (("time",), post.astype(np.int8)),
        },
        coords={"time": time, "slot": ("time", cal.slots.astype(np.int32)), **coords},
        attrs={
            **attrs,
            "first_post_event": first_post,
            "event_slot": int(cal.event_slot),
            "missing_dates": ",".join(str(d) for d in cal.missing_dates),
            "gap_runs": ",".join(f"{s}:{n}" for s, n in cal.gap_runs),
            "n_slots": int(cal.slot_dates.size),
            "calendar_start": str(cal.slot_dates[0]),
            "magnitude": float(scenario.magnitude),
            "faults": json.dumps([asdict(f) for f in scenario.faults]),
            "units": UNITS,
            "sign": SIGN,
        },
    )
