"""Simulation presets: where the frame is, which tracks see it, and which fault breaks.

Facts from DESIGN.md §2 unless noted:

- ``menyuan``: 2022-01-07 17:45:30 UTC, Mw 6.6-6.7, epicentre 37.83N 101.29E, left-lateral,
  strike 104-109°, dip ~80-86°, ~30 km of rupture reaching the surface, up to ~3.5 m of slip
  at ~4 km depth, LOS up to ~0.6-0.9 m near the fault, near field decorrelated in C-band. The
  slip model here is a coarse 3 x 3 patch model tuned to that peak LOS, not an inversion.
- ``delingha``: 2022-01-23 Mw 5.6, buried right-lateral, ~0.2 m of slip at 2-7.6 km, about
  ±27 mm of LOS. Epicentre 38.44N 97.37E and origin 10:21 Beijing time (02:21 UTC) from the
  China Earthquake Networks Center (Xinhua, 2022-01-23); the westward dip of 60° follows Wang et
  al. (2024, Remote Sens. 16, 4237, doi:10.3390/rs16224237). The strike (140°, dipping SW) and
  the 8 km length are assumptions chosen so that 0.2 m of slip gives 20-30 mm of LOS on both
  tracks (a N-S strike-slip fault would be nearly invisible to a near-polar orbit).
- ``null``: the Menyuan frame with no event, for false-alarm rates.

Afterslip: both events are followed by logarithmic afterslip on their own patches, deeper
patches slipping more (``afterslip_fraction`` of the coseismic slip after one year: 12 % for
Menyuan, 10 % for Delingha). These are simulator choices of the order reported after shallow
continental strike-slip events, not fitted values.

The track numbers of the Menyuan frames (128A, 026D) are the LiCSAR tracks over Menyuan; those of
the Delingha preset are illustrative (they only have to make valid frame IDs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ladsdin.models.cube import frame_centre_code

from ladsdin.models.simulation.okada import Fault


@dataclass(frozen=True)
class Scenario:
    """A preset frame and its (optional) earthquake.

    Attributes:
        name: preset name.
        centre_lat, centre_lon: frame centre, degrees.
        track_numbers: relative orbit per track letter, e.g. {'A': 128, 'D': 26}.
        burst_code: the 6-digit IIJJKK part of the frame ID.
        faults: rectangular patches in km east/north of the frame centre; empty = no event.
        event_time: real origin time, ISO UTC ('' = no event).
        magnitude: Mw (nan = no event).
        decorrelation_km: half-width of the post-event decorrelated strip around the surface
            trace of the patches that reach within 1 km of the surface (0 = none).
        interseismic_mm_yr: fault-parallel interseismic slip rate of the main fault (arctangent
            profile, Savage & Burford 1973), mm/yr; 0 for none.
        locking_depth_km: locking depth of that profile, km.
        dem_mean_m, dem_std_m: elevation of the synthetic DEM, metres.
        afterslip_fraction: postseismic afterslip one year after the event, as a fraction of
            the coseismic slip, on the same patches weighted towards depth (down-dip afterslip);
            0 for none. Its time function is logarithmic, log(1 + t/tau) (Marone et al. 1991).
        afterslip_tau_days: the decay time tau of that logarithm, days.
    """

    name: str
    centre_lat: float
    centre_lon: float
    track_numbers: dict[str, int]
    burst_code: str = "131313"
    faults: tuple[Fault, ...] = ()
    event_time: str = ""
    magnitude: float = float("nan")
    decorrelation_km: float = 0.0
    interseismic_mm_yr: float = 0.0
    locking_depth_km: float = 15.0
    dem_mean_m: float = 3600.0
    dem_std_m: float = 450.0
    afterslip_fraction: float = 0.0
    afterslip_tau_days: float = 30.0
    description: str = field(default="", compare=False)

    @property
    def has_event(self) -> bool:
        """True when the preset contains an earthquake."""
        return bool(self.faults)

    def frame_id(self, track: str, centre_lat: float | None = None) -> str:
        """LiCSAR frame ID ``TTTP_CCCCC_IIJJKK`` (DESIGN.md §2) for ``track`` 'A' or 'D'."""
        lat = self.centre_lat if centre_lat is None else centre_lat
        return f"{self.track_numbers[track]:03d}{track}_{frame_centre_code(lat)}_{self.burst_code}"


def segmented_fault(east_km: float, north_km: float, strike_deg: float, dip_deg: float,
                    segment_km: float, depths_km: tuple[float, ...], slip_m: np.ndarray,
                    rake_deg: float) -> tuple[Fault, ...]:
    """A planar fault cut into patches: ``slip_m[i, j]`` on depth layer i, along-strike segment j.

    Args:
        east_km, north_km: surface projection of the middle of the fault's top edge.
        strike_deg, dip_deg, rake_deg: Aki & Richards angles, degrees.
        segment_km: along-strike length of each segment.
        depths_km: layer boundaries, (n_layers + 1,), increasing, km.
        slip_m: (n_layers, n_segments) slip, m.

    Returns:
        The patches, all on one plane.
    """
    slip_m = np.asarray(slip_m, dtype=np.float64)
    n_layers, n_seg = slip_m.shape
    s = np.radians(strike_deg)
    strike_v = np.array([np.sin(s), np.cos(s)])
    dip_v = np.array([np.cos(s), -np.sin(s)])  # down-dip horizontal direction: strike + 90°
    top0 = depths_km[0]
    out = []
    for i in range(n_layers):
        # the plane's top edge at depth top0 is at (east, north); deeper layers move down-dip
        shift = (depths_km[i] - top0) / np.tan(np.radians(dip_deg)) if dip_deg < 90 else 0.0
        for j in range(n_seg):
            along = (j - (n_seg - 1) / 2.0) * segment_km
            e, n = np.array([east_km, north_km]) + along * strike_v + shift * dip_v
            out.append(Fault(float(e), float(n), strike_deg, dip_deg, segment_km,
                             float(depths_km[i]), float(depths_km[i + 1]), rake_deg, float(slip_m[i, j])))
    return tuple(out)


_MENYUAN_SLIP = np.array([
    [1.3, 2.15, 1.5],  # 0-3 km: the rupture reaches the surface
    [2.2, 3.5, 2.4],  # 3-8 km: the ~3.5 m asperity at ~4-5 km depth
    [0.8, 1.4, 1.0],  # 8-14 km
])

MENYUAN = Scenario(
    name="menyuan",
    centre_lat=37.83,
    centre_lon=101.29,
    track_numbers={"A": 128, "D": 26},
    faults=segmented_fault(0.0, 0.0, 106.0, 83.0, 10.0, (0.0, 3.0, 8.0, 14.0), _MENYUAN_SLIP, 0.0),
    event_time="2022-01-07T17:45:30Z",
    magnitude=6.6,
    decorrelation_km=2.5,
    interseismic_mm_yr=5.0,
    locking_depth_km=15.0,
    dem_mean_m=3600.0,
    dem_std_m=450.0,
    afterslip_fraction=0.12,
    description="Menyuan 2022-01-07 Mw 6.6 left-lateral surface rupture, ~30 km",
)

DELINGHA = Scenario(
    name="delingha",
    centre_lat=38.44,
    centre_lon=97.37,
    track_numbers={"A": 55, "D": 150},
    faults=(Fault(0.0, 0.0, 140.0, 60.0, 8.0, 2.0, 7.6, 180.0, 0.2),),
    event_time="2022-01-23T02:21:00Z",
    magnitude=5.6,
    decorrelation_km=0.0,
    interseismic_mm_yr=1.0,
    locking_depth_km=12.0,
    dem_mean_m=4100.0,
    dem_std_m=350.0,
    afterslip_fraction=0.1,
    description="Delingha 2022-01-23 Mw 5.6 buried right-lateral, 0.2 m at 2-7.6 km",
)

NULL = Scenario(
    name="null",
    centre_lat=MENYUAN.centre_lat,
    centre_lon=MENYUAN.centre_lon,
    track_numbers=MENYUAN.track_numbers,
    dem_mean_m=MENYUAN.dem_mean_m,
    dem_std_m=MENYUAN.dem_std_m,
    description="the Menyuan frame without an earthquake",
)

PRESETS: dict[str, Scenario] = {s.name: s for s in (MENYUAN, DELINGHA, NULL)}


def get_scenario(name: str) -> Scenario:
    """The preset called ``name`` (case-insensitive).

    Raises:
        ValueError: unknown name; the message lists the presets.
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown simulation preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return PRESETS[key]
