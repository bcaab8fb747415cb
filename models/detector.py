"""Scoring one new epoch (paper steps 4-7): the step shared by the batch driver and the stream.

``score_epoch`` is synchronous and pure apart from the returned state: forecast, threshold
against the stored sigma (eq. 4), temporal screen (eq. 5), spatial screen, D_s (eq. 6), then
re-anchor confirmed steps and advance every pixel's recurrent state with what was observed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ladsdin.models.forecaster import Forecaster, PixelState
from ladsdin.models.labelling import SeismicObject, label_anomalies, object_sizes, seismic_objects
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, common_mode, planar_ramp

COMMON_MODES = ("none", "median", "plane")


@dataclass(frozen=True)
class PixelGrid:
    """Where the modelled pixels sit: ``index`` (P,) flat indices into a (n_lat, n_lon) grid."""

    lat: np.ndarray  # (n_lat,) pixel-centre latitude, degrees
    lon: np.ndarray  # (n_lon,) pixel-centre longitude, degrees
    index: np.ndarray  # (P,) int64

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def scatter(self, values: np.ndarray, fill: float = np.nan, dtype: type = np.float32) -> np.ndarray:
        """(P,) values -> (n_lat, n_lon) map, ``fill`` off the modelled pixels."""
        out = np.full(self.lat.size * self.lon.size, fill, dtype=dtype)
        out[self.index] = values
        return out.reshape(self.shape)


@dataclass(frozen=True)
class ScoreParams:
    """Per-frame scoring parameters."""

    nm: float  # N_m (eq. 4)
    n_a: int  # N_a (eq. 5)
    connectivity: int = 4
    common_mode: str = "median"  # 'none' | 'median' | 'plane'
    reanchor: bool = True


@dataclass
class EpochScore:
    """The result of scoring one epoch; maps are (n_lat, n_lon)."""

    slot: int
    date: str  # YYYY-MM-DD
    horizon_max: int  # longest forecast horizon (slots) among valid pixels; 1 = no gap
    n_valid: int
    n_anomalous: int  # C_k
    examined: bool  # C_k >= N_a (eq. 5)
    largest_object: int  # pixels in the largest connected anomaly object
    common_mode_mm: float
    objects: list[SeismicObject] = field(default_factory=list)
    anomaly: np.ndarray | None = None  # bool
    seismic: np.ndarray | None = None  # bool
    predicted: np.ndarray | None = None  # float32 P_k, LOS mm
    threshold: np.ndarray | None = None  # float32 N_m * sigma * g(m), mm
    deformation: np.ndarray | None = None  # float32 D_s, NaN outside seismic objects
    filled: bool = False  # the epoch was invented by KNN filling (paper mode only)
    seconds: float = 0.0  # wall time of scoring this epoch
    #: wall time per stage: "predict" (forecast, residual, eq. 4 thresholds, the state's LSTM
    #: step) and "cluster" (connected objects, eqs. 5-6, re-anchoring)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def score_epoch(
    fc: Forecaster,
    state: PixelState,
    obs_map: np.ndarray,
    slot: int,
    date: str,
    grid: PixelGrid,
    params: ScoreParams,
    filled: bool = False,
) -> tuple[EpochScore, PixelState]:
    """Score the acquisition at calendar ``slot`` and return the advanced state.

    Args:
        fc: the frame's fitted forecaster.
        state: pixel state after some slot < ``slot``; missing slots in between are stepped
            through without observations (a multi-step forecast across the gap).
        obs_map: (n_lat, n_lon) float32 displacement at ``slot``, LOS mm, +towards satellite,
            NaN = no data.

    Returns:
        (the epoch's score, the state after ``slot``).
    """
    if slot <= state.slot:
        raise ValueError(f"slot {slot} is not after the state's last slot {state.slot}")
    t0 = time.perf_counter()
    while state.slot < slot - 1:
        state = fc.advance(state, None)
    pred, horizon = fc.predict(state)
    obs = torch.from_numpy(np.ascontiguousarray(obs_map, dtype=np.float32).reshape(-1)[grid.index]).to(fc.device)
    resid = (obs - pred).cpu().numpy()
    sigma = fc.sigma
    thr = (params.nm * torch.from_numpy(sigma).to(fc.device) * fc.widen(horizon)).cpu().numpy()  # eq. 4 threshold, gap-widened
    valid = np.isfinite(resid) & np.isfinite(sigma)
    if params.common_mode == "none" or valid.sum() < MIN_PIXELS_FOR_COMMON_MODE:
        cm = np.zeros_like(resid)
    elif params.common_mode == "median":
        cm = np.full_like(resid, common_mode(np.where(valid, resid, np.nan), sigma, params.nm))
    elif params.common_mode == "plane":
        rows, cols = np.divmod(grid.index, grid.shape[1])
        cm = planar_ramp(np.where(valid, resid, np.nan), rows.astype(np.float64), cols.astype(np.float64), sigma, params.nm)
    else:
        raise ValueError(f"unknown common mode '{params.common_mode}'; use one of {COMMON_MODES}")
    rc = resid - cm
    with np.errstate(invalid="ignore"):
        anomalous = valid & (np.abs(rc) > thr)  # eq. 4 on the common-mode-corrected residual
    c_k = int(anomalous.sum())
    t_cluster = time.perf_counter()
    anomaly_map = grid.scatter(anomalous, fill=False, dtype=bool)
    examined = c_k >= params.n_a  # eq. 5, temporal screen
    objects: list[SeismicObject] = []
    deformation = np.full(grid.shape, np.nan, dtype=np.float32)
    if examined:
        # D_s from the uncorrected residual (DESIGN.md §1): a large event moves the median too.
        objects, deformation, largest = seismic_objects(anomaly_map, grid.scatter(resid), params.n_a, params.connectivity)
    else:
        labels, n = label_anomalies(anomaly_map, params.connectivity)
        largest = int(object_sizes(labels, n).max()) if n else 0
    seismic_map = np.isfinite(deformation)

    if params.reanchor and objects:
        # Re-anchor: a confirmed step becomes the pixel's new level, so a network that learned
        # "jumps revert" does not keep forecasting a return (late or repeated alerts). The
        # deformation field reaches beyond the N_m sigma contour, so pixels above half the
        # threshold that connect to a seismic object are re-anchored too (hysteresis).
        with np.errstate(invalid="ignore"):
            weak = valid & (np.abs(rc) > 0.5 * thr)
        labels, _ = label_anomalies(grid.scatter(weak, fill=False, dtype=bool), params.connectivity)
        hit = np.unique(labels[seismic_map])
        region = np.isin(labels, hit[hit > 0]).reshape(-1)[grid.index]
        state.offset = state.offset + torch.from_numpy(np.where(region, rc, 0.0).astype(np.float32)).to(fc.device)
    t_advance = time.perf_counter()
    new_state = fc.advance(state, obs)
    t_end = time.perf_counter()
    score = EpochScore(
        slot=slot,
        date=date,
        horizon_max=int(horizon.cpu().numpy()[valid].max()) if valid.any() else 0,
        n_valid=int(valid.sum()),
        n_anomalous=c_k,
        examined=bool(examined),
        largest_object=int(largest),
        common_mode_mm=float(np.median(cm[valid])) if valid.any() else 0.0,
        objects=objects,
        anomaly=anomaly_map,
        seismic=seismic_map,
        predicted=grid.scatter(pred.cpu().numpy()),
        threshold=grid.scatter(thr),
        deformation=deformation,
        filled=filled,
        seconds=t_end - t0,
        stage_seconds={"predict": (t_cluster - t0) + (t_end - t_advance), "cluster": t_advance - t_cluster},
    )
    return score, new_state
