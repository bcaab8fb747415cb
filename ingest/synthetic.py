"""A seeded LiCSAR frame directory, written from a simulated displacement cube.

The files have the real names, dtypes and nodata of the LiCSAR portal (see
:mod:`ladsdin.formats.licsar`): float32 ``*.geo.unw.tif`` in radians with 0 = nodata,
uint8 ``*.geo.cc.tif`` with 0 = nodata, ``metadata/<frame>.geo.{E,N,U,hgt}.tif``,
``metadata/metadata.txt`` and ``metadata/baselines``. Each new epoch ``k`` gets interferograms
from its ``links`` predecessors, like LiCSAR's short-baseline network.

Every interferogram is ``d[b] - d[a]`` of the cube, converted to phase, plus (optionally)
decorrelation noise drawn from the coherence (Cramer-Rao phase variance for ``looks`` looks), an
arbitrary constant (unwrapping leaves each interferogram with its own), and injected whole-cycle
unwrapping errors. Nothing here is real LiCSAR data.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ladsdin.models.cube import MM_PER_CYCLE, MM_PER_RAD

from ladsdin.formats.licsar import FrameGrid, ifg_paths, write_raster


def short_baseline_network(n_epochs: int, links: int = 3) -> list[tuple[int, int]]:
    """Pairs ``(a, b)`` linking each epoch ``b`` to its ``links`` predecessors, sorted by ``b``."""
    return [(a, b) for b in range(1, n_epochs) for a in range(max(0, b - links), b)]


def ifg_name(d1: Any, d2: Any) -> str:
    return f"{np.datetime64(d1, 'D').astype(dt.date):%Y%m%d}_{np.datetime64(d2, 'D').astype(dt.date):%Y%m%d}"


class SyntheticFrame:
    """Writes ``out_dir/<frame>/`` from ``cube`` (and ``truth`` for the geometry layers).

    Args:
        cube: ``displacement`` (time, lat, lon) float32 LOS mm (+towards the satellite, NaN = no
            data, lat descending) and optional ``coherence`` (lat, lon); attrs ``frame``, ``track``.
        truth: optional simulation truth with ``dem``, ``los_east``, ``los_north``, ``los_up``.
        links: interferograms per new epoch (LiCSAR makes 1-4), or one count per epoch (index k:
            epoch k links to its ``links[k]`` predecessors; index 0 is unused).
        looks: effective looks of the decorrelation noise; None = noise-free.
        offset_mm: each interferogram gets a uniform random constant in +-offset_mm.
        unwrap_errors: {(a, b): (n_lat, n_lon) bool} pixels of interferogram (a, b) that carry a
            +1 cycle (+MM_PER_CYCLE mm) unwrapping error.
        pair_coherence: optional ``(a, b) -> (n_lat, n_lon)`` coherence of pair (a, b) in [0, 1]
            (0 = no data), for seasonal decorrelation and snow; default: the cube's coherence.
        seed: every random draw is a function of the seed and the pair.
    """

    def __init__(self, cube: Any, out_dir: Path, *, truth: Any = None, links: int | Sequence[int] = 3,
                 looks: float | None = 20.0, offset_mm: float = 40.0,
                 unwrap_errors: dict[tuple[int, int], np.ndarray] | None = None,
                 pair_coherence: Callable[[int, int], np.ndarray] | None = None, seed: int = 0) -> None:
        self.cube, self.truth = cube, truth
        self.frame, self.track = str(cube.attrs["frame"]), str(cube.attrs["track"])
        self.dir = Path(out_dir) / self.frame
        self.links, self.looks, self.offset_mm, self.seed = links, looks, offset_mm, seed
        self.unwrap_errors = unwrap_errors or {}
        self.pair_coherence = pair_coherence
        lat, lon = cube["lat"].values, cube["lon"].values
        self.grid = FrameGrid(lat.size, lon.size, float(lat[0]), float(lon[0]),
                              float((lat[-1] - lat[0]) / (lat.size - 1)), float((lon[-1] - lon[0]) / (lon.size - 1)))
        self.times = cube["time"].values
        self.disp = cube["displacement"].values
        coh = cube["coherence"].values if "coherence" in cube else np.full(self.grid.shape, 0.7, np.float32)
        self.coherence = np.nan_to_num(coh, nan=0.0).astype(np.float32)

    @property
    def n_epochs(self) -> int:
        return len(self.times)

    def pairs_to(self, k: int) -> list[tuple[int, int]]:
        n = self.links if isinstance(self.links, int) else int(self.links[k])
        return [(a, k) for a in range(max(0, k - n), k)]

    def name(self, a: int, b: int) -> str:
        return ifg_name(self.times[a], self.times[b])

    def write_metadata(self) -> None:
        """``metadata/``: E, N, U, hgt GeoTIFFs (float32, nodata 0 as LiCSAR), metadata.txt, baselines."""
        meta = self.dir / "metadata"
        heading = float(self.cube.attrs.get("heading_deg", -10.0 if self.track == "A" else -170.0))
        inc = float(self.cube.attrs.get("incidence_deg", 39.0))
        h, i = np.radians(heading), np.radians(inc)
        # ground -> satellite for a right-looking SAR: horizontally against the look direction (h + 90)
        enu = {"E": -np.sin(i) * np.cos(h), "N": np.sin(i) * np.sin(h), "U": np.cos(i)}
        for key, tname in (("E", "los_east"), ("N", "los_north"), ("U", "los_up")):
            layer = self.truth[tname].values if self.truth is not None and tname in self.truth else np.full(self.grid.shape, enu[key])
            write_raster(meta / f"{self.frame}.geo.{key}.tif", layer.astype(np.float32), self.grid, nodata=0)
        hgt = self.truth["dem"].values if self.truth is not None and "dem" in self.truth else np.full(self.grid.shape, 1000.0)
        write_raster(meta / f"{self.frame}.geo.hgt.tif", hgt.astype(np.float32), self.grid, nodata=0)
        d0 = np.datetime64(self.times[0], "D").astype(dt.date)
        (meta / "metadata.txt").write_text(
            f"master={d0:%Y%m%d}\ncenter_time=11:22:33.456789\nheading={heading:.4f}\navg_incidence_angle={inc:.4f}\n"
            "azimuth_resolution=13.97\nrange_resolution=2.33\ncentre_range_m=846500.1\n"
            f"avg_height={float(np.nanmean(hgt)):.1f}\napplied_DEM=synthetic\n")
        rng = np.random.default_rng(self.seed)
        lines = []
        for t in self.times:
            d = np.datetime64(t, "D").astype(dt.date)
            bp = 0.0 if d == d0 else float(rng.normal(0, 60))
            lines.append(f"{d0:%Y%m%d} {d:%Y%m%d} {bp:.1f} {(d - d0).days:.1f}")
        (meta / "baselines").write_text("\n".join(lines) + "\n")

    def interferogram(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(unw float32 rad with 0 = nodata, cc uint8 with 0 = nodata) of pair (a, b)."""
        rng = np.random.default_rng([self.seed, a, b])
        mm = (self.disp[b].astype(np.float64) - self.disp[a]).astype(np.float64)
        coh = self.coherence if self.pair_coherence is None else np.nan_to_num(self.pair_coherence(a, b), nan=0.0)
        valid = np.isfinite(mm) & (coh > 0)
        cc = np.clip(coh * rng.uniform(0.85, 1.0, self.grid.shape), 1.0 / 255, 1.0).astype(np.float32)
        if self.looks is not None:
            g = np.clip(cc, 0.01, 0.995)
            std_rad = np.sqrt((1.0 - g * g) / (2.0 * self.looks * g * g))
            mm = mm + rng.normal(0.0, 1.0, self.grid.shape) * std_rad * abs(MM_PER_RAD)
        mm = mm + rng.uniform(-self.offset_mm, self.offset_mm)
        if (a, b) in self.unwrap_errors:
            mm = mm + np.where(self.unwrap_errors[(a, b)], MM_PER_CYCLE, 0.0)
        rad = (mm / MM_PER_RAD).astype(np.float32)
        rad[rad == 0] = np.float32(1e-6)  # 0 is LiCSAR's nodata: never write it for a valid pixel
        rad[~valid] = 0.0
        cc_u8 = np.where(valid, np.maximum(np.round(cc * 255), 1), 0).astype(np.uint8)
        return rad, cc_u8

    def write_pair(self, a: int, b: int) -> Path:
        unw, cc = ifg_paths(self.dir, self.name(a, b))
        rad, cc_u8 = self.interferogram(a, b)
        write_raster(cc, cc_u8, self.grid, nodata=0)
        write_raster(unw, rad, self.grid, nodata=0)  # the unw last: a pair is complete when both exist
        return unw

    def write_epoch(self, k: int) -> list[Path]:
        """Write the interferograms that make epoch ``k`` (k >= 1)."""
        if not 1 <= k < self.n_epochs:
            raise ValueError(f"epoch {k} is not in 1..{self.n_epochs - 1}")
        return [self.write_pair(a, b) for a, b in self.pairs_to(k)]

    def write(self, upto: int | None = None) -> Path:
        """Metadata and every epoch's interferograms up to epoch ``upto`` (default: all); the frame dir."""
        self.write_metadata()
        for k in range(1, (self.n_epochs - 1 if upto is None else upto) + 1):
            self.write_epoch(k)
        return self.dir
