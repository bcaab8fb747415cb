"""A tiny seeded cube for unit tests: trend + annual + white noise + frame offsets, optional step."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ladsdin.models.cube import normalize_cube


def small_cube(
    n_t: int = 80, ny: int = 24, nx: int = 24, noise: float = 5.0, step_at: int | None = None, step_mm: float = 100.0,
    missing: tuple[int, ...] = (), seed: int = 0,
) -> xr.Dataset:
    """(n_t, ny, nx) cube on a 12-day calendar; ``step_at`` adds a permanent step in a central disc."""
    rng = np.random.default_rng(seed)
    yrs = np.arange(n_t) * 12 / 365.25
    d = (
        rng.normal(0, 5, (ny, nx))[None] * yrs[:, None, None]
        + rng.uniform(0, 8, (ny, nx))[None] * np.sin(2 * np.pi * yrs)[:, None, None]
        + rng.normal(0, noise, (n_t, ny, nx))
        + rng.normal(0, 8, (n_t, 1, 1))
    ).astype(np.float32)
    if step_at is not None:
        yy, xx = np.mgrid[:ny, :nx]
        disc = (yy - ny / 2) ** 2 + (xx - nx / 2) ** 2 < (min(ny, nx) / 4) ** 2
        d[step_at:] += np.where(disc, step_mm, 0.0).astype(np.float32)[None]
    keep = np.ones(n_t, bool)
    keep[list(missing)] = False
    times = np.datetime64("2019-01-05") + np.arange(n_t) * 12 * np.timedelta64(1, "D")
    ds = xr.Dataset(
        {"displacement": (("time", "lat", "lon"), d[keep], {"units": "mm"})},
        coords={"time": times[keep], "lat": 37.9 - np.arange(ny) * 0.002, "lon": 101.0 + np.arange(nx) * 0.002},
        attrs={"frame": "128A_05210_131313", "track": "A"},
    )
    return normalize_cube(ds)
