"""The static part of a simulated frame: grid, LOS geometry, ground motion maps, coherence.

Everything here is drawn once per frame; :mod:`.simulate` adds the per-epoch parts.
Maps are (n_lat, n_lon) float32 with lat descending (north first), lon ascending.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ladsdin.models.cube import MM_PER_CYCLE

from ladsdin.models.simulation.atmosphere import spectral_filter, synthetic_dem, unit_field
from ladsdin.models.simulation.okada import Fault, faults_displacement
from ladsdin.models.simulation.scenarios import Scenario

#: km per degree of latitude on a sphere of radius 6371 km.
KM_PER_DEG = 6371.0 * np.pi / 180.0
#: Sentinel-1 heading (flight azimuth from north, degrees) at mid latitudes.
HEADING_DEG = {"A": -10.0, "D": -170.0}
#: IW incidence at the frame centre and its change with ground range (29°-46° over ~250 km).
INCIDENCE_DEG = 39.0
INCIDENCE_PER_KM = 0.065
REF_SIZE = 5


@dataclass(frozen=True)
class Grid:
    """A regular lat/lon grid and its local east/north km (equirectangular about the centre).

    Attributes:
        lat: (n_lat,) float64 degrees, descending.  lon: (n_lon,) float64 degrees, ascending.
        north_km: (n_lat,) float64.  east_km: (n_lon,) float64.
        dy_km, dx_km: pixel size, km.
    """

    lat: np.ndarray
    lon: np.ndarray
    north_km: np.ndarray
    east_km: np.ndarray
    dy_km: float
    dx_km: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size


def make_grid(centre_lat: float, centre_lon: float, n_lat: int, n_lon: int, spacing_deg: float) -> Grid:
    """Pixel-centre coordinates of an n_lat x n_lon frame centred on (centre_lat, centre_lon)."""
    lat = centre_lat + spacing_deg * ((n_lat - 1) / 2.0 - np.arange(n_lat))
    lon = centre_lon + spacing_deg * (np.arange(n_lon) - (n_lon - 1) / 2.0)
    coslat = np.cos(np.radians(centre_lat))
    return Grid(lat, lon, (lat - centre_lat) * KM_PER_DEG, (lon - centre_lon) * KM_PER_DEG * coslat,
                spacing_deg * KM_PER_DEG, spacing_deg * KM_PER_DEG * coslat)


def los_unit_vectors(grid: Grid, track: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground-to-satellite unit vector of a right-looking Sentinel-1 IW track.

    The horizontal part points against the look direction (heading + 90°), so
    e = (-sin(i) cos(h), sin(i) sin(h), cos(i)) in (east, north, up); the incidence i grows with
    ground range across the frame. Positive LOS = dot(u, e) = towards the satellite (cube.SIGN).

    Returns:
        (e_east, e_north, e_up, incidence_deg), each (n_lat, n_lon) float32.
    """
    h = np.radians(HEADING_DEG[track])
    # ground range grows along the look direction (cos h, -sin h)
    rng_km = grid.east_km[None, :] * np.cos(h) - grid.north_km[:, None] * np.sin(h)
    inc = np.radians(INCIDENCE_DEG + INCIDENCE_PER_KM * rng_km)
    e_e = -np.sin(inc) * np.cos(h)
    e_n = np.sin(inc) * np.sin(h)
    e_u = np.cos(inc)
    return (e_e.astype(np.float32), e_n.astype(np.float32), e_u.astype(np.float32),
            np.degrees(inc).astype(np.float32))


def smooth_field(rng: np.random.Generator, grid: Grid, outer_km: float, beta: float = 3.6) -> np.ndarray:
    """A smooth unit-variance random field, (n_lat, n_lon) float32."""
    return unit_field(rng, spectral_filter(grid.shape, grid.dy_km, grid.dx_km, beta, 2 * np.pi / outer_km), grid.shape)


def _dist_to_traces(grid: Grid, faults: tuple[Fault, ...], max_top_km: float) -> np.ndarray:
    """Distance (km) of each pixel to the nearest surface trace of patches whose top is shallower
    than ``max_top_km``; inf when there is none. (n_lat, n_lon) float64."""
    e, n = grid.east_km[None, :], grid.north_km[:, None]
    best = np.full(grid.shape, np.inf)
    for f in faults:
        if f.top_km > max_top_km:
            continue
        (e0, n0), (e1, n1) = f.trace_km()
        de, dn = e1 - e0, n1 - n0
        t = np.clip(((e - e0) * de + (n - n0) * dn) / (de * de + dn * dn), 0.0, 1.0)
        best = np.minimum(best, np.hypot(e - e0 - t * de, n - n0 - t * dn))
    return best


def _ellipse_patch(rng: np.random.Generator, grid: Grid, centre: tuple[int, int], radius_km: float,
                   rough: np.ndarray) -> np.ndarray:
    """Bool mask of a ragged ellipse around pixel ``centre`` (row, col)."""
    e = grid.east_km[None, :] - grid.east_km[centre[1]]
    n = grid.north_km[:, None] - grid.north_km[centre[0]]
    ang = rng.uniform(0, np.pi)
    ratio = rng.uniform(0.4, 1.0)
    u = e * np.cos(ang) + n * np.sin(ang)
    v = (-e * np.sin(ang) + n * np.cos(ang)) / ratio
    return (u * u + v * v) / radius_km**2 + 0.35 * rough < 1.0


@dataclass
class Scene:
    """Static maps of one frame and track (all (n_lat, n_lon) float32 unless said).

    Attributes:
        dem: metres.  coherence: 0..1 (NaN where there is water).
        noise_std: per-epoch pixel noise std, LOS mm (decorrelation noise).
        nodata: bool, no data in any epoch (water).
        velocity: secular LOS velocity, mm/yr, +towards satellite.
        seasonal_cos, seasonal_sin: annual LOS terms, mm: a_c cos(wt) + a_s sin(wt), with t in
            days since 2000-01-01 and w = 2π/365.25 (peak heave near day-of-year 60).
        coseismic: LOS mm, +towards satellite, before referencing (0 without an event).
        afterslip: LOS mm one year after the event, before referencing (0 without afterslip).
        decorrelated: bool, near field lost after the event.
        e_east, e_north, e_up, incidence: LOS geometry (see los_unit_vectors).
        ref: (row0, col0) of the REF_SIZE x REF_SIZE reference window.
        snow_ok: bool, pixels that may be snow-covered (never the reference window).
    """

    dem: np.ndarray
    coherence: np.ndarray
    noise_std: np.ndarray
    nodata: np.ndarray
    velocity: np.ndarray
    seasonal_cos: np.ndarray
    seasonal_sin: np.ndarray
    coseismic: np.ndarray
    decorrelated: np.ndarray
    afterslip: np.ndarray
    e_east: np.ndarray
    e_north: np.ndarray
    e_up: np.ndarray
    incidence: np.ndarray
    ref: tuple[int, int]
    snow_ok: np.ndarray


def afterslip_patches(scenario: Scenario) -> tuple[Fault, ...]:
    """The afterslip reached one year after the event: each coseismic patch slips again by
    ``afterslip_fraction`` of its slip, weighted by its mid-depth over the patches' mean (deeper
    patches slip more, as down-dip afterslip does); the total moment fraction is kept."""
    if not scenario.faults or scenario.afterslip_fraction <= 0:
        return ()
    mids = np.array([0.5 * (f.top_km + f.bottom_km) for f in scenario.faults])
    slips = np.array([f.slip_m for f in scenario.faults])
    w = mids / max(float(np.average(mids, weights=np.maximum(slips, 1e-9))), 1e-9)
    return tuple(dataclasses.replace(f, slip_m=float(scenario.afterslip_fraction * f.slip_m * wi), opening_m=0.0)
                 for f, wi in zip(scenario.faults, w))


def _afterslip_los(grid: Grid, scenario: Scenario, e_e: np.ndarray, e_n: np.ndarray, e_u: np.ndarray) -> np.ndarray:
    """LOS mm of one year of afterslip (0 without it); no random numbers are drawn, so a preset's
    other fields do not depend on whether it has afterslip."""
    patches = afterslip_patches(scenario)
    if not patches:
        return np.zeros(grid.shape, dtype=np.float32)
    ue, un, uz = faults_displacement(grid.east_km[None, :], grid.north_km[:, None], patches)
    return (1000.0 * (ue * e_e + un * e_n + uz * e_u)).astype(np.float32)


def _reference_corner(grid: Grid, scenario: Scenario, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left pixel of the reference window: the corner farthest from the fault (LiCSBAS picks
    a stable, coherent area; far from the event it is also outside the coseismic field)."""
    ny, nx = grid.shape
    margin_r, margin_c = max(2, ny // 25), max(2, nx // 25)
    corners = [(margin_r, margin_c), (margin_r, nx - margin_c - REF_SIZE),
               (ny - margin_r - REF_SIZE, margin_c), (ny - margin_r - REF_SIZE, nx - margin_c - REF_SIZE)]
    if not scenario.faults:
        return corners[int(rng.integers(4))]
    fe = np.mean([f.east_km for f in scenario.faults])
    fn = np.mean([f.north_km for f in scenario.faults])
    d = [np.hypot(grid.east_km[c + 2] - fe, grid.north_km[r + 2] - fn) for r, c in corners]
    return corners[int(np.argmax(d))]


def build_scene(rng: np.random.Generator, grid: Grid, scenario: Scenario, track: str) -> Scene:
    """Draw the static maps of a frame. ``rng`` should not depend on the track, so that the two
    tracks of one seed see the same ground."""
    ny, nx = grid.shape
    e_e, e_n, e_u, inc = los_unit_vectors(grid, track)
    dem = synthetic_dem(rng, grid.shape, grid.dy_km, grid.dx_km, scenario.dem_mean_m, scenario.dem_std_m)
    ref = _reference_corner(grid, scenario, rng)
    in_ref = np.zeros(grid.shape, dtype=bool)
    in_ref[ref[0]:ref[0] + REF_SIZE, ref[1]:ref[1] + REF_SIZE] = True
    near_ref = np.zeros(grid.shape, dtype=bool)
    pad = max(REF_SIZE, int(round(5.0 / grid.dy_km)))
    near_ref[max(0, ref[0] - pad):ref[0] + REF_SIZE + pad, max(0, ref[1] - pad):ref[1] + REF_SIZE + pad] = True
    d_fault = _dist_to_traces(grid, scenario.faults, max_top_km=np.inf)

    # coherence: a smooth field, lower on steep slopes (layover, shadow, vegetation)
    gy, gx = np.gradient(dem.astype(np.float64), grid.dy_km * 1000.0, grid.dx_km * 1000.0)
    slope_deg = np.degrees(np.arctan(np.hypot(gx, gy)))
    coh = 0.62 + 0.10 * smooth_field(rng, grid, 15.0) - 0.006 * slope_deg
    coh = np.clip(coh, 0.25, 0.95)
    rough = smooth_field(rng, grid, 3.0, beta=3.0)
    area_km2 = ny * nx * grid.dy_km * grid.dx_km
    allowed = ~near_ref & (d_fault > 6.0)  # keep the reference and the fault visible
    nodata = np.zeros(grid.shape, dtype=bool)
    noise_std = 2.5 * np.sqrt(1.0 - coh**2) / coh  # Cramér-Rao form, Hanssen (2001) eq. 4.2.27
    low = np.flatnonzero((dem < np.quantile(dem, 0.2)).ravel() & allowed.ravel())
    anywhere = np.flatnonzero(allowed.ravel())
    for kind, n_patch in (("water", 1 + rng.poisson(area_km2 / 5000.0)), ("sand", 1 + rng.poisson(area_km2 / 5000.0))):
        pool = low if kind == "water" and low.size else anywhere
        for _ in range(min(int(n_patch), 12) if pool.size else 0):
            c = divmod(int(rng.choice(pool)), nx)
            patch = _ellipse_patch(rng, grid, c, rng.uniform(1.5, 4.0), rough) & ~near_ref
            if kind == "water":  # lakes: no coherent phase at all, masked as LiCSBAS does
                nodata |= patch
                coh[patch] = 0.05
            else:  # dunes and sand: coherent enough to keep, but very noisy
                coh[patch] = rng.uniform(0.1, 0.2)
                noise_std[patch] = rng.uniform(15.0, 25.0)
    coherence = np.where(nodata, np.nan, coh).astype(np.float32)

    # secular motion: regional field + interseismic loading (Savage & Burford 1973) + a bowl
    vel = 1.5 * smooth_field(rng, grid, 60.0)
    if scenario.faults and scenario.interseismic_mm_yr:
        f0 = scenario.faults[0]
        s = np.radians(f0.strike_deg)
        (te, tn), _ = f0.trace_km()
        perp = -(grid.east_km[None, :] - te) * np.cos(s) + (grid.north_km[:, None] - tn) * np.sin(s)
        # the block on the left of strike moves against strike for left-lateral (rake 0) motion
        rate = -np.cos(np.radians(f0.rake_deg)) * scenario.interseismic_mm_yr
        v_par = rate / np.pi * np.arctan(perp / scenario.locking_depth_km)
        vel = vel + v_par * (np.sin(s) * e_e + np.cos(s) * e_n)
    bowl_pool = np.flatnonzero((allowed & (d_fault > 10.0)).ravel())
    if bowl_pool.size:
        c = divmod(int(rng.choice(bowl_pool)), nx)
        r2 = (grid.east_km[None, :] - grid.east_km[c[1]]) ** 2 + (grid.north_km[:, None] - grid.north_km[c[0]]) ** 2
        vel = vel - rng.uniform(15.0, 25.0) * np.exp(-r2 / (2 * rng.uniform(1.5, 4.0) ** 2)) * e_u

    # permafrost: 10-30 mm of seasonal heave on high ground, peaking in late winter
    patchy = np.clip((smooth_field(rng, grid, 12.0) - 0.6) / 0.6, 0.0, 1.0)
    high = np.clip((dem - np.quantile(dem, 0.4)) / max(np.quantile(dem, 0.8) - np.quantile(dem, 0.4), 1.0), 0.0, 1.0)
    amp = patchy * high * (10.0 + 20.0 * np.clip(0.5 + 0.35 * smooth_field(rng, grid, 20.0), 0.0, 1.0)) * e_u
    peak = 2 * np.pi * (60.0 + 15.0 * smooth_field(rng, grid, 30.0)) / 365.25

    # coseismic LOS; the near field within ~2-3 km of the trace, and any pixel where the
    # coseismic phase aliases (over half a fringe per pixel), is lost in C band
    decor = np.zeros(grid.shape, dtype=bool)
    cos_los = np.zeros(grid.shape, dtype=np.float32)
    if scenario.faults:
        ue, un, uz = faults_displacement(grid.east_km[None, :], grid.north_km[:, None], scenario.faults)
        cos_los = (1000.0 * (ue * e_e + un * e_n + uz * e_u)).astype(np.float32)
        gy, gx = np.gradient(cos_los)
        decor = np.hypot(gx, gy) > 0.5 * MM_PER_CYCLE
        if scenario.decorrelation_km > 0:
            width = scenario.decorrelation_km * (1.0 + 0.2 * np.clip(smooth_field(rng, grid, 8.0), -2.5, 2.5))
            decor |= _dist_to_traces(grid, scenario.faults, max_top_km=1.0) < width
        decor &= ~in_ref
    after_los = _afterslip_los(grid, scenario, e_e, e_n, e_u)
    return Scene(
        dem=dem, coherence=coherence, noise_std=np.minimum(noise_std, 25.0).astype(np.float32),
        nodata=nodata, velocity=vel.astype(np.float32),
        seasonal_cos=(amp * np.cos(peak)).astype(np.float32), seasonal_sin=(amp * np.sin(peak)).astype(np.float32),
        coseismic=cos_los, decorrelated=decor, afterslip=after_los, e_east=e_e, e_north=e_n, e_up=e_u, incidence=inc,
        ref=ref, snow_ok=~in_ref,
    )
