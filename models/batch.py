"""The paper's offline workflow on a whole cube: clean, train, score every later epoch.

``detect_cube`` is the array-level driver behind ``ladsdin detect``; it returns a
:class:`DetectionResult` that knows how to become the three contract outputs (GeoJSON features,
the ``anomalies.nc`` dataset and ``summary.json``), without doing any file I/O itself.

It runs in bounded memory on full-size frames: the cube is read window by window
(:class:`~ladsdin.models.windows.CubeWindows`; lazily from its file when opened with
``lazy=True``), the detector is fitted tile by tile (:func:`~ladsdin.models.frame.bootstrap_frame`)
and each epoch is scored tile by tile (:func:`~ladsdin.models.scoring.score_epoch`). An
``on_score`` callback can take each epoch's maps as they come (``ladsdin detect`` writes them to
``anomalies.nc``) so that the result need not keep them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ladsdin.models.alerts import object_feature
from ladsdin.models.bootstrap import TileSeries
from ladsdin.models.cleaning import Calendar, gap_runs, knn_fill, missing_slots, to_calendar
from ladsdin.models.config import DetectConfig
from ladsdin.models.cube import SIGN, UNITS, CubeError, pixel_spacing_deg
from ladsdin.models.detector import EpochScore, FrameModel, PixelGrid
from ladsdin.models.forecaster import Forecaster, PixelState
from ladsdin.models.frame import MODEL_VERSION, bootstrap_frame, frame_pixel_area, prepare_frame
from ladsdin.models.scoring import score_in_memory
from ladsdin.models.windows import CubeWindows

__all__ = ["MODEL_VERSION", "DetectConfig", "DetectionResult", "FrameModel", "detect_cube", "epoch_variables"]

log = logging.getLogger(__name__)

#: The fewest acquired epochs a frame needs in its training period.
MIN_TRAIN_EPOCHS = 20
_MM = {"units": UNITS, "sign": SIGN}


def epoch_variables(s: EpochScore) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
    """The (lat, lon) maps of one scored epoch in ``anomalies.nc``: name -> (values, attributes)."""
    return {
        "anomaly": (s.anomaly.astype(np.int8), {"long_name": "|D_k - P_k| > N_m sigma g(m) (eq. 4)", "flag_values": "0 1"}),
        "seismic": (s.seismic.astype(np.int8), {"long_name": "pixel of a seismic object (> N_a pixels)"}),
        "predicted": (s.predicted.astype(np.float32), {"long_name": "forecast P_k", **_MM}),
        "threshold": (s.threshold.astype(np.float32), {"long_name": "N_m * sigma * g(m)", "units": UNITS}),
        "deformation": (s.deformation.astype(np.float32), {"long_name": "seismic deformation D_s = D_k - P_k (eq. 6)", **_MM}),
    }


@dataclass
class DetectionResult:
    """Everything a detection run produced, over the (downsampled) grid.

    ``scores`` keep their maps unless ``detect_cube`` was asked not to (``keep_maps=False``):
    then only the counts, the objects and the timings remain.
    """

    frame: str
    track: str
    config: DetectConfig
    model: FrameModel
    calendar: Calendar
    scores: list[EpochScore]
    timings: dict[str, float]
    missing_dates: list[str]
    train_end: str  # last calendar date of the training period

    @property
    def grid(self) -> PixelGrid:
        return self.model.grid

    @property
    def forecaster(self) -> Forecaster:
        """The frame-level forecaster (network, calendar, gap factors, training report)."""
        return self.model.forecaster

    @property
    def n_a(self) -> int:
        return self.model.params.n_a

    @property
    def pixel_area_km2(self) -> float:
        return self.model.pixel_area_km2

    @property
    def model_version(self) -> str:
        return self.model.model_version

    def features(self) -> list[dict[str, Any]]:
        """One GeoJSON Feature per seismic object, in epoch order."""
        feats = []
        for s in self.scores:
            for obj in s.objects:
                feats.append(
                    object_feature(
                        obj, lat=self.grid.lat, lon=self.grid.lon, frame=self.frame, track=self.track, epoch=s.date,
                        nm=self.config.nm, n_a=self.n_a, model_version=self.model_version,
                        extra={"gap_steps": s.horizon_max - 1, "filled_epoch": s.filled,
                               "min_object_px": self.model.params.min_object},
                    )
                )
        return feats

    def alert_epochs(self) -> list[str]:
        return [s.date for s in self.scores if s.objects]

    def attributes(self) -> dict[str, Any]:
        """Global attributes of ``anomalies.nc``."""
        return {"frame": self.frame, "track": self.track, "nm": self.config.nm, "n_a": self.n_a, "model_version": self.model_version, "sign": SIGN}

    def dataset(self) -> xr.Dataset:
        """``anomalies.nc`` in memory: anomaly, seismic (int8), predicted, threshold, deformation
        over the scored epochs, and sigma (needs the maps: ``keep_maps=True``)."""
        if any(s.anomaly is None for s in self.scores):
            raise ValueError("the scores kept no maps (keep_maps=False); write anomalies.nc while scoring instead")
        times = np.array([np.datetime64(s.date, "ns") for s in self.scores])
        per_epoch = [epoch_variables(s) for s in self.scores]
        data: dict[str, Any] = {}
        for name, (_, attrs) in (per_epoch[0].items() if per_epoch else ()):
            data[name] = (("time", "lat", "lon"), np.stack([v[name][0] for v in per_epoch]), attrs)
        data.update(
            sigma=(("lat", "lon"), self.model.sigma_map, {"long_name": "one-step residual std (eq. 3)", "units": UNITS}),
            n_anomalous=(("time",), np.array([s.n_anomalous for s in self.scores], np.int64), {"long_name": "C_k"}),
            common_mode=(("time",), np.array([s.common_mode_mm for s in self.scores], np.float32), {"units": UNITS}),
        )
        return xr.Dataset(data, coords={"time": times, "lat": self.grid.lat, "lon": self.grid.lon}, attrs=self.attributes())

    def summary(self) -> dict[str, Any]:
        """``summary.json``: per-epoch C_k, largest object, N_a, training R² and run facts."""
        rep = self.forecaster.report
        return {
            "frame": self.frame,
            "track": self.track,
            "model_version": self.model_version,
            "n_a": self.n_a,
            "min_object_px": self.model.params.min_object,
            "false_alerts_per_year": self.config.false_alerts_per_year,
            "pixel_area_km2": self.pixel_area_km2,
            "downsample": self.config.downsample,
            "nm": self.config.nm,
            "seismic_area_km2": self.config.seismic_area_km2,
            "gap_fill": self.config.gap_fill,
            "train_end": self.train_end,
            "n_pixels_modelled": int(self.model.n_pixels),
            "tiles": self.model.tiling.to_dict(),
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
                    "post_event_pixels": s.post_event_pixels,
                    "afterslip_median_mm": round(s.afterslip_median_mm, 3),
                    "n_afterslip_objects": len(s.afterslip_objects),
                    "seconds": round(s.seconds, 4),
                }
                for s in self.scores
            ],
            "units": UNITS,
            "sign": SIGN,
        }


def _knn_series(windows: CubeWindows, prep: Any, tiling: Any, coh_window: Callable, cfg: DetectConfig) -> tuple[list[TileSeries], list[np.ndarray]]:
    """The paper's KNN gap filling, tile by tile: each tile's modelled pixels over the whole
    calendar, filled from past *and* future epochs (offline only; holds every filled series)."""
    cal = prep.calendar
    train, full = [], []
    for i in range(tiling.n_tiles):
        rows, cols = tiling.window(i)
        d = windows.acquisitions(rows, cols)
        ts = prep.tile_training(d, coh_window(rows, cols), tiling, i, cfg)
        r0, _, c0, _ = tiling.bounds(i)
        local = np.unravel_index(ts.index, tiling.shape)
        series = to_calendar(d, prep.slots, cal.n_slots)[:, local[0] - r0, local[1] - c0]
        filled = knn_fill(series, cfg.knn_k)
        train.append(TileSeries(ts.index, filled[: prep.split]))
        full.append(filled)
    return train, full


def detect_cube(cube: xr.Dataset, cfg: DetectConfig, device: torch.device, progress: bool = False, *,
                on_score: Callable[[EpochScore], None] | None = None, keep_maps: bool = True) -> DetectionResult:
    """Run the LADSDIn workflow on a normalised cube (see ``models.cube.normalize_cube``).

    Args:
        cube: in memory, or lazily backed by its file (read window by window).
        on_score: called with each scored epoch, maps included, as soon as it is scored.
        keep_maps: keep each epoch's maps in the result (False for full-size frames: the maps
            of every epoch would not fit in memory; ``on_score`` sees them first).

    Raises:
        CubeError: too few epochs for training, or no pixel coherent/observed enough to model.
    """
    cfg.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prep = prepare_frame(cube["time"].values, cube["lat"].values, cube["lon"].values, cfg)
    cal, slots, n_train, split = prep.calendar, prep.slots, prep.n_train, prep.split
    n_obs = slots.size
    if n_train < MIN_TRAIN_EPOCHS or n_train >= n_obs:
        raise CubeError(
            f"{n_obs} epochs with --train-fraction {cfg.train_fraction} give {n_train} training and "
            f"{n_obs - n_train} scored epochs; need >= {MIN_TRAIN_EPOCHS} training epochs and >= 1 to score"
        )
    windows = CubeWindows(cube, prep)
    tiling = prep.tiling(cfg)
    full: list[np.ndarray] | None = None
    if cfg.gap_fill == "knn":
        # The paper fills every gap (past and future) before training: offline only.
        train_series, full = _knn_series(windows, prep, tiling, windows.coherence_window, cfg)
        read = train_series.__getitem__
    else:
        # Training ends at the last training acquisition (as a stream bootstraps from what it has
        # buffered); missing slots before the first scored epoch are stepped through when scoring.
        def read(i: int) -> TileSeries:
            rows, cols = tiling.window(i)
            return prep.tile_training(windows.training(rows, cols), windows.coherence_window(rows, cols), tiling, i, cfg)
    timings["prepare"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    dlat, dlon = pixel_spacing_deg(cube)
    a_p = frame_pixel_area(cube["lat"].values, dlat, dlon)
    states: list[PixelState | None] = [None] * tiling.n_tiles
    try:
        model = bootstrap_frame(read, tiling, prep.lat, prep.lon, prep.train_calendar, a_p, cfg, device, states.__setitem__, progress)
    except CubeError:
        if not windows.any_finite:
            raise CubeError("displacement holds no finite value in the training epochs (all NaN); check the nodata handling "
                            "of the source") from None
        raise
    model.forecaster.calendar = cal
    timings["train_and_warmup"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    observed = {int(s): i for i, s in enumerate(slots)}
    scored_slots = range(split, cal.n_slots) if full is not None else [int(s) for s in slots[n_train:]]
    scores: list[EpochScore] = []
    for s in tqdm(scored_slots, desc="score", disable=not progress, leave=False):
        if full is not None:
            flat = np.full(tiling.n_lat * tiling.n_lon, np.nan, np.float32)
            for tm, series in zip(model.tiles, full):
                flat[tm.index] = series[s]
            obs_map, filled = flat.reshape(tiling.shape), s not in observed
        else:
            obs_map, filled = windows.epoch(observed[s]), False
        score = score_in_memory(model, states, obs_map, s, str(cal.date(s)), filled)
        if on_score is not None:
            on_score(score)
        if not keep_maps:
            score.anomaly = score.seismic = score.predicted = score.threshold = score.deformation = None
        scores.append(score)
        if score.objects:
            log.info("epoch %s: %d seismic object(s), C_k=%d >= N_a=%d", score.date, len(score.objects), score.n_anomalous, model.params.n_a)
    timings["score"] = time.perf_counter() - t2
    timings["score_per_epoch"] = timings["score"] / max(len(scores), 1)
    missing = [str(cal.date(int(m))) for m in missing_slots(slots, cal.n_slots)]
    log.info("gaps: %s", gap_runs(slots))
    return DetectionResult(
        frame=str(cube.attrs.get("frame", "unknown")),
        track=str(cube.attrs.get("track", "")),
        config=cfg,
        model=model,
        calendar=cal,
        scores=scores,
        timings=timings,
        missing_dates=missing,
        train_end=str(cal.date(split - 1)),
    )
