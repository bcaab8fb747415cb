"""Scoring one new epoch (paper steps 4-7), tile by tile: the step shared by ``detect`` and the stream.

1. **Forecast, per tile (pipelined: the next tile's state loads while this one is forecast).**
   Step the tile's state through any missing slots, forecast P_k, and put the residual
   D_k - P_k and the gap-widened threshold N_m sigma g(m) (eq. 4) into full-frame maps.
2. **Frame-wide screens, on the full maps.** The epoch's robust common mode, the anomaly mask
   (eq. 4), C_k against N_a (eq. 5), connected objects and D_s (eq. 6), and the re-anchoring of
   confirmed steps: those inside a seismic object at once, any other as soon as it holds at
   the pixel's next observation (then it no longer counts as anomalous). These see the whole
   frame, so they do not depend on the tiling.
3. **Advance, per tile (pipelined: the previous tile's state is written while this one runs).**
   Re-anchor, then feed the observation to every pixel's recurrent state.

States come from ``load(tile)`` and go to ``save(tile, state)``: lists in ``detect``, the state
store in the stream (where the saves form a new state version that becomes visible only when the
epoch commits).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ladsdin.models.detector import COMMON_MODES, EpochScore, FrameModel
from ladsdin.models.forecaster import STEP_DTYPE, PixelState
from ladsdin.models.labelling import label_anomalies, object_sizes, seismic_objects
from ladsdin.models.thresholds import MIN_PIXELS_FOR_COMMON_MODE, common_mode, planar_ramp

StateLoader = Callable[[int], PixelState]
StateSaver = Callable[[int, PixelState], None]


def _common_mode(resid: np.ndarray, sigma: np.ndarray, vidx: np.ndarray, n_lon: int, mode: str, nm: float) -> np.ndarray:
    """The epoch's common mode at the valid pixels ``vidx`` (row-major), mm."""
    if mode == "none" or vidx.size < MIN_PIXELS_FOR_COMMON_MODE:
        return np.zeros(vidx.size, np.float32)
    if mode == "median":
        return np.full(vidx.size, common_mode(resid, sigma, nm), np.float32)
    if mode == "plane":
        rows, cols = np.divmod(vidx, n_lon)
        return planar_ramp(resid, rows.astype(np.float64), cols.astype(np.float64), sigma, nm).astype(np.float32)
    raise ValueError(f"unknown common mode '{mode}'; use one of {COMMON_MODES}")


def score_epoch(model: FrameModel, load: StateLoader, save: StateSaver, obs_map: np.ndarray, slot: int, date: str,
                filled: bool = False) -> EpochScore:
    """Score the acquisition at calendar ``slot`` and save every tile's advanced state.

    Args:
        model: the frame's fitted, tiled detector.
        load: tile -> its state after some slot < ``slot``; missing slots in between are stepped
            through without observations (a multi-step forecast across the gap).
        save: receives every tile's state after ``slot``, once the whole epoch has scored.
        obs_map: (n_lat, n_lon) float32 displacement at ``slot``, LOS mm, +towards satellite,
            NaN = no data.
        filled: the epoch was invented by KNN filling (paper mode; recorded in the score).

    Returns:
        The epoch's score; ``stage_seconds`` has "state_load" (waiting for states), "predict"
        (forecasts, thresholds and the recurrent step), "cluster" (eqs. 4-6 and re-anchoring on
        the full frame) and "state_write" (waiting for saves).
    """
    t0 = time.perf_counter()
    params, tiling, dev = model.params, model.tiling, model.forecaster.device
    shape = tiling.shape
    obs_flat = np.ascontiguousarray(obs_map, dtype=np.float32).reshape(-1)
    if obs_flat.size != shape[0] * shape[1]:
        raise ValueError(f"the epoch map has shape {np.shape(obs_map)}, the frame's grid is {shape}")
    n = tiling.n_tiles
    resid_flat = np.full(obs_flat.size, np.nan, np.float32)
    thr_flat = np.full(obs_flat.size, np.nan, np.float32)
    pred_flat = np.full(obs_flat.size, np.nan, np.float32)
    pending_flat = np.full(obs_flat.size, np.nan, np.float32)  # steps awaiting confirmation
    horizon_max = 0
    states: list[PixelState | None] = [None] * n
    waits = {"state_load": 0.0, "state_write": 0.0}
    with ThreadPoolExecutor(1, thread_name_prefix="tile-load") as io:
        nxt: Future[PixelState] = io.submit(load, 0)
        for i in range(n):
            tw = time.perf_counter()
            st = nxt.result()
            waits["state_load"] += time.perf_counter() - tw
            if i + 1 < n:
                nxt = io.submit(load, i + 1)  # the next tile loads while this one is forecast
            if slot <= st.slot:
                raise ValueError(f"slot {slot} is not after tile {i}'s last slot {st.slot}")
            fc, idx = model.tile_forecaster(i), model.tiles[i].index
            while st.slot < slot - 1:
                st = fc.advance(st, None)
            pred, horizon = fc.predict(st)
            resid = obs_flat[idx] - pred.cpu().numpy()
            thr = (params.nm * torch.from_numpy(fc.sigma).to(dev) * fc.widen(horizon)).cpu().numpy()  # eq. 4 threshold, gap-widened
            resid_flat[idx], thr_flat[idx], pred_flat[idx] = resid, thr, pred.cpu().numpy()
            pending_flat[idx] = st.last_step.float().cpu().numpy()
            ok = np.isfinite(resid) & np.isfinite(fc.sigma)
            if ok.any():
                horizon_max = max(horizon_max, int(horizon.cpu().numpy()[ok].max()))
            states[i] = st

    t_cluster = time.perf_counter()
    sigma_flat = model.sigma_map.reshape(-1)
    vidx = np.flatnonzero(np.isfinite(resid_flat) & np.isfinite(sigma_flat))  # valid pixels, row-major
    resid_v = resid_flat[vidx]
    cm_v = _common_mode(resid_v, sigma_flat[vidx], vidx, shape[1], params.common_mode, params.nm)
    rc_v = resid_v - cm_v
    thr_v, pending_v = thr_flat[vidx], pending_flat[vidx]
    with np.errstate(invalid="ignore"):
        # A step confirmed: anomalous last time it was seen, not re-anchored then, and the level
        # has held since (DESIGN.md §1: every confirmed step is re-anchored, not only those in
        # seismic objects). Measured against that level it is normal: it re-anchors now and
        # does not count again (a lobe that missed N_a at the event epoch raises no late alert).
        confirmed = np.isfinite(pending_v) & (np.abs(rc_v - pending_v) <= thr_v)
        hit = (np.abs(rc_v) > thr_v) & ~confirmed  # eq. 4 on the common-mode-corrected residual
    anomaly_flat = np.zeros(obs_flat.size, bool)
    anomaly_flat[vidx] = hit
    anomaly_map = anomaly_flat.reshape(shape)
    c_k = int(hit.sum())
    examined = c_k >= params.n_a  # eq. 5, temporal screen
    resid_map = resid_flat.reshape(shape)
    if examined:
        # D_s from the uncorrected residual (DESIGN.md §1): a large event moves the median too.
        objects, deformation, largest = seismic_objects(anomaly_map, resid_map, params.n_a, params.connectivity)
    else:
        labels, n_obj = label_anomalies(anomaly_map, params.connectivity)
        largest = int(object_sizes(labels, n_obj).max()) if n_obj else 0
        objects, deformation = [], np.full(shape, np.nan, np.float32)
    seismic_map = np.isfinite(deformation)
    region_v = np.zeros(vidx.size, bool)
    if params.reanchor and objects:
        # Re-anchor: a confirmed step becomes the pixel's new level, so a network that learned
        # "jumps revert" does not keep forecasting a return (late or repeated alerts). The
        # deformation field reaches beyond the N_m sigma contour, so pixels above half the
        # threshold that connect to a seismic object are re-anchored too (hysteresis).
        weak = np.zeros(obs_flat.size, bool)
        with np.errstate(invalid="ignore"):
            weak[vidx] = np.abs(rc_v) > 0.5 * thr_flat[vidx]
        labels, _ = label_anomalies(weak.reshape(shape), params.connectivity)
        hit_labels = np.unique(labels[seismic_map])
        region_v = np.isin(labels, hit_labels[hit_labels > 0]).reshape(-1)[vidx]
    shift_flat = None
    if params.reanchor:
        anchor_v = region_v | confirmed
        if anchor_v.any():
            shift_flat = np.zeros(obs_flat.size, np.float32)
            shift_flat[vidx] = np.where(anchor_v, rc_v, 0.0)
        # an anomalous pixel not re-anchored now holds its step for confirmation; a normal or
        # re-anchored one holds none; an unobserved one keeps what it had
        pending_flat[vidx] = np.where(hit & ~anchor_v, rc_v, np.nan)
    t_advance = time.perf_counter()

    # each tile is written while the next one advances (the stream writes a new state version,
    # invisible until the epoch commits, so a failure here leaves the previous epoch whole)
    with ThreadPoolExecutor(1, thread_name_prefix="tile-save") as io:
        pending: list[Future[None]] = []
        for i in range(n):
            st, states[i] = states[i], None
            fc, idx = model.tile_forecaster(i), model.tiles[i].index
            if shift_flat is not None:
                st.offset = st.offset + torch.from_numpy(shift_flat[idx]).to(dev)
            st.last_step = torch.from_numpy(pending_flat[idx]).to(dev, STEP_DTYPE)
            pending.append(io.submit(save, i, fc.advance(st, torch.from_numpy(obs_flat[idx]).to(dev))))
        t_saves = time.perf_counter()
        for f in pending:
            f.result()
    t_end = time.perf_counter()
    waits["state_write"] = t_end - t_saves
    compute = (t_cluster - t0 - waits["state_load"]) + (t_saves - t_advance)
    return EpochScore(
        slot=slot,
        date=date,
        horizon_max=horizon_max,
        n_valid=int(vidx.size),
        n_anomalous=c_k,
        examined=bool(examined),
        largest_object=int(largest),
        common_mode_mm=float(np.median(cm_v)) if vidx.size else 0.0,
        objects=objects,
        anomaly=anomaly_map,
        seismic=seismic_map,
        predicted=pred_flat.reshape(shape),
        threshold=thr_flat.reshape(shape),
        deformation=deformation,
        filled=filled,
        seconds=t_end - t0,
        stage_seconds={"predict": compute, "cluster": t_advance - t_cluster, **waits},
    )


def score_in_memory(model: FrameModel, states: list[PixelState], obs_map: np.ndarray, slot: int, date: str,
                    filled: bool = False) -> EpochScore:
    """:func:`score_epoch` with the tiles' states in a list, replaced in place."""
    return score_epoch(model, states.__getitem__, states.__setitem__, obs_map, slot, date, filled)
