"""The paper's offline workflow on a whole cube: clean, train, score every later epoch.

``detect_cube`` is the array-level driver behind ``ladsdin detect``; it returns a
:class:`DetectionResult` that knows how to become the three contract outputs (GeoJSON features,
the ``anomalies.nc`` dataset and ``summary.json``), without doing any file I/O itself.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ladsdin.models.alerts import object_feature
from ladsdin.models.cleaning import Calendar, gap_runs, knn_fill, missing_slots, to_calendar
from ladsdin.models.cube import SIGN, UNITS, CubeError, pixel_spacing_deg
from ladsdin.models.config import DetectConfig
from ladsdin.models.detector import EpochScore, PixelGrid, ScoreParams, score_epoch
from ladsdin.models.forecaster import Forecaster, PixelState, fit_forecaster
from ladsdin.models.frame import frame_pixel_area, prepare_frame
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, seismic_pixel_count

log = logging.getLogger(__name__)

MODEL_VERSION = "ladsdin-1"
#: The fewest acquired epochs a frame needs in its training period.
MIN_TRAIN_EPOCHS = 20


@dataclass
class DetectionResult:
    """Everything a detection run produced, over the (downsampled) grid."""

    frame: str
    track: str
    config: DetectConfig
    grid: PixelGrid
    calendar: Calendar
    n_a: int
    pixel_area_km2: float  # native A_p at the frame centre
    forecaster: Forecaster
    scores: list[EpochScore]
    model_version: str
    timings: dict[str, float]
    missing_dates: list[str]
    train_end: str  # last calendar date of the training period

    def features(self) -> list[dict[str, Any]]:
        """One GeoJSON Feature per seismic object, in epoch order."""
        feats = []
        for s in self.scores:
            for obj in s.objects:
                feats.append(
                    object_feature(
                        obj, lat=self.grid.lat, lon=self.grid.lon, frame=self.frame, track=self.track, epoch=s.date,
                        nm=self.config.nm, n_a=self.n_a, model_version=self.model_version,
                        extra={"gap_steps": s.horizon_max - 1, "filled_epoch": s.filled},
                    )
                )
        return feats

    def alert_epochs(self) -> list[str]:
        return [s.date for s in self.scores if s.objects]

    def dataset(self) -> xr.Dataset:
        """``anomalies.nc``: anomaly, seismic (int8), predicted, deformation over scored epochs, sigma."""
        times = np.array([np.datetime64(s.date, "ns") for s in self.scores])
        coords = {"time": times, "lat": self.grid.lat, "lon": self.grid.lon}
        stack = lambda name, dt: np.stack([getattr(s, name) for s in self.scores]).astype(dt)  # noqa: E731
        mm = {"units": UNITS, "sign": SIGN}
        ds = xr.Dataset(
            {
                "anomaly": (("time", "lat", "lon"), stack("anomaly", np.int8), {"long_name": "|D_k - P_k| > N_m sigma g(m) (eq. 4)", "flag_values": "0 1"}),
                "seismic": (("time", "lat", "lon"), stack("seismic", np.int8), {"long_name": "pixel of a seismic object (> N_a pixels)"}),
                "predicted": (("time", "lat", "lon"), stack("predicted", np.float32), {"long_name": "forecast P_k", **mm}),
                "threshold": (("time", "lat", "lon"), stack("threshold", np.float32), {"long_name": "N_m * sigma * g(m)", "units": UNITS}),
                "deformation": (("time", "lat", "lon"), stack("deformation", np.float32), {"long_name": "seismic deformation D_s = D_k - P_k (eq. 6)", **mm}),
                "sigma": (("lat", "lon"), self.grid.scatter(self.forecaster.sigma), {"long_name": "one-step residual std (eq. 3)", "units": UNITS}),
                "n_anomalous": (("time",), np.array([s.n_anomalous for s in self.scores], np.int64), {"long_name": "C_k"}),
                "common_mode": (("time",), np.array([s.common_mode_mm for s in self.scores], np.float32), {"units": UNITS}),
            },
            coords=coords,
            attrs={"frame": self.frame, "track": self.track, "nm": self.config.nm, "n_a": self.n_a, "model_version": self.model_version, "sign": SIGN},
        )
        return ds

    def summary(self) -> dict[str, Any]:
        """``summary.json``: per-epoch C_k, largest object, N_a, training R² and run facts."""
        rep = self.forecaster.report
        return {
            "frame": self.frame,
            "track": self.track,
            "model_version": self.model_version,
            "n_a": self.n_a,
            "pixel_area_km2": self.pixel_area_km2,
            "downsample": self.config.downsample,
            "nm": self.config.nm,
            "seismic_area_km2": self.config.seismic_area_km2,
            "gap_fill": self.config.gap_fill,
            "train_end": self.train_end,
            "n_pixels_modelled": int(self.grid.index.size),
            "grid_shape": list(self.grid.shape),
            "missing_dates": self.missing_dates,
            "training": {**rep, "r2": rep.get("r2_mean")},
            "alert_epochs": self.alert_epochs(),
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "epochs": [
                {
                    "epoch": s.date,
                    "slot": s.slot,
                    "gap_steps": s.horizon_max - 1,
                    "filled": s.filled,
                    "n_valid": s.n_valid,
                    "c_k": s.n_anomalous,
                    "examined": s.examined,
                    "largest_object_px": s.largest_object,
                    "n_seismic_objects": len(s.objects),
                    "common_mode_mm": round(s.common_mode_mm, 3),
                    "seconds": round(s.seconds, 4),
                }
                for s in self.scores
            ],
            "units": UNITS,
            "sign": SIGN,
        }


@dataclass
class FrameModel:
    """A frame's fitted detector: what the stream persists per frame (with the pixel state)."""

    forecaster: Forecaster
    grid: PixelGrid
    params: ScoreParams
    model_version: str
    pixel_area_km2: float  # native A_p at the frame centre


def bootstrap_frame(
    y: np.ndarray, grid: PixelGrid, train_calendar: Calendar, pixel_area: float, cfg: DetectConfig, device: torch.device, progress: bool = False
) -> tuple[FrameModel, PixelState]:
    """Fit a frame's detector on its training slots and warm every pixel's state through them.

    Args:
        y: (n_slots, P) float32 training displacement of the modelled pixels, LOS mm, NaN = gap.
        train_calendar: slot 0 = row 0 of ``y``; ``n_slots`` = rows of ``y``.
        pixel_area: native A_p (km²) at the frame centre, for N_a (eq. 5).

    Returns:
        (the frame model, the pixel state after the last training slot).
    """
    cm_on = cfg.common_mode != "none" and grid.index.size >= MIN_PIXELS_FOR_COMMON_MODE
    fc, state = fit_forecaster(y, train_calendar, cfg.train, device, cfg.nm, cm_on, progress)
    n_a = seismic_pixel_count(cfg.seismic_area_km2, pixel_area, cfg.downsample)  # eq. 5
    params = ScoreParams(cfg.nm, n_a, cfg.connectivity, cfg.common_mode if cm_on else "none", cfg.reanchor)
    version = f"{MODEL_VERSION}/{fc.report['kind']}-K{fc.report['layers']}S{fc.report['hidden']}/{cfg.digest()}"
    return FrameModel(fc, grid, params, version, pixel_area), state


def detect_cube(cube: xr.Dataset, cfg: DetectConfig, device: torch.device, progress: bool = False) -> DetectionResult:
    """Run the LADSDIn workflow on a normalised cube (see ``models.cube.normalize_cube``).

    Raises:
        CubeError: too few epochs for training, or no pixel coherent/observed enough to model.
    """
    cfg.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prep = prepare_frame(cube["time"].values, cube["lat"].values, cube["lon"].values, cfg)
    cal, slots, n_train, split = prep.calendar, prep.slots, prep.n_train, prep.split
    d = prep.sample(cube["displacement"].values[prep.keep])
    coh = prep.sample(cube["coherence"].values) if "coherence" in cube else None
    n_obs = slots.size
    if n_train < MIN_TRAIN_EPOCHS or n_train >= n_obs:
        raise CubeError(
            f"{n_obs} epochs with --train-fraction {cfg.train_fraction} give {n_train} training and "
            f"{n_obs - n_train} scored epochs; need >= {MIN_TRAIN_EPOCHS} training epochs and >= 1 to score"
        )
    # Training ends at the last training acquisition (as a stream bootstraps from what it has
    # buffered); missing slots before the first scored epoch are stepped through when scoring.
    grid, y = prep.training(d, coh, cfg)
    full = None
    if cfg.gap_fill == "knn":
        # The paper fills every gap (past and future) before training: offline only.
        full = knn_fill(to_calendar(d, slots, cal.n_slots).reshape(cal.n_slots, -1)[:, grid.index], cfg.knn_k)
        y = full[:split]
    timings["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    dlat, dlon = pixel_spacing_deg(cube)
    a_p = frame_pixel_area(cube["lat"].values, dlat, dlon)
    model, state = bootstrap_frame(y, grid, prep.train_calendar, a_p, cfg, device, progress)
    fc, params, n_a, model_version = model.forecaster, model.params, model.params.n_a, model.model_version
    fc.calendar = cal
    timings["train_and_warmup"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    observed = {int(s): i for i, s in enumerate(slots)}
    scored_slots = range(split, cal.n_slots) if full is not None else [int(s) for s in slots[n_train:]]
    scores: list[EpochScore] = []
    ny, nx = grid.shape
    for s in tqdm(scored_slots, desc="score", disable=not progress, leave=False):
        if full is not None:
            obs_map = np.full(ny * nx, np.nan, np.float32)
            obs_map[grid.index] = full[s]
            obs_map = obs_map.reshape(ny, nx)
            filled = s not in observed
        else:
            obs_map, filled = d[observed[s]], False
        score, state = score_epoch(fc, state, obs_map, s, str(cal.date(s)), grid, params, filled)
        scores.append(score)
        if score.objects:
            log.info("epoch %s: %d seismic object(s), C_k=%d >= N_a=%d", score.date, len(score.objects), score.n_anomalous, n_a)
    timings["score"] = time.perf_counter() - t2
    timings["score_per_epoch"] = timings["score"] / max(len(scores), 1)
    missing = [str(cal.date(int(m))) for m in missing_slots(slots, cal.n_slots)]
    log.info("gaps: %s", gap_runs(slots))
    return DetectionResult(
        frame=str(cube.attrs.get("frame", "unknown")),
        track=str(cube.attrs.get("track", "")),
        config=cfg,
        grid=grid,
        calendar=cal,
        n_a=n_a,
        pixel_area_km2=a_p,
        forecaster=fc,
        scores=scores,
        model_version=model_version,
        timings=timings,
        missing_dates=missing,
        train_end=str(cal.date(split - 1)),
    )
