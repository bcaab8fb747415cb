"""Scoring one new epoch (paper steps 4-7), tile by tile: the step shared by ``detect`` and the stream.

1. **Forecast, per tile (pipelined: the next tile's state loads while this one is forecast).**
   Step the tile's state through any missing slots, forecast P_k, and put the residual
   D_k - P_k and the gap-widened threshold N_m sigma g(m) (eq. 4) into full-frame maps.
2. **Frame-wide screens, on the full maps** (:func:`ladsdin.models.screens.screen_epoch`). The
   epoch's robust common mode, the anomaly mask (eq. 4), C_k against N_a (eq. 5), connected
   objects and D_s (eq. 6), and the re-anchoring of confirmed steps: those inside a seismic
   object at once, any other as soon as it holds at the pixel's next observation (then it no
   longer counts as anomalous). These see the whole frame, so they do not depend on the tiling.
   **The post-event regime:** the pixels re-anchored with a seismic object (and those beside it
   that the event left unobserved), and every confirmed step, enter it for ``ScoreParams.post_event_slots`` slots. There
   the level follows every observation, so the forecast is "last value + the model's
   increment" with its own, wider threshold (``Forecaster.track_factor``), and postseismic
   motion (afterslip) is tracked as its own signal instead of alerting as a new earthquake; a
   new step (an aftershock) still does. Regime pixels stay out of the common mode, and a pixel
   back from the event's decorrelation is re-anchored without counting.
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

from ladsdin.models.detector import EpochScore, FrameModel
from ladsdin.models.forecaster import STEP_DTYPE, PixelState
from ladsdin.models.screens import afterslip_objects, grow_region, near_objects, screen_epoch

StateLoader = Callable[[int], PixelState]
StateSaver = Callable[[int, PixelState], None]


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
    post_flat = np.zeros(obs_flat.size, bool)  # in the post-event regime
    after_flat = np.full(obs_flat.size, np.nan, np.float32)  # motion since entering it, mm (NaN: not yet seen)
    rep_flat = np.zeros(obs_flat.size, np.float32)  # the part of it already reported
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
            post = (st.post > 0).cpu().numpy()
            # eq. 4 threshold, gap-widened; in the post-event regime the level follows each
            # observation, so the forecast is "last value + the model's increment", whose error
            # is track_factor times larger
            factor = torch.from_numpy(np.where(post, np.float32(fc.track_factor), np.float32(1.0))).to(dev)
            thr = (params.nm * torch.from_numpy(fc.sigma).to(dev) * fc.widen(horizon) * factor).cpu().numpy()
            resid_flat[idx], thr_flat[idx], pred_flat[idx] = resid, thr, pred.cpu().numpy()
            pending_flat[idx] = st.last_step.float().cpu().numpy()
            post_flat[idx] = post
            after_flat[idx] = st.after_mm.float().cpu().numpy()
            rep_flat[idx] = st.after_rep.float().cpu().numpy()
            ok = np.isfinite(resid) & np.isfinite(fc.sigma)
            if ok.any():
                horizon_max = max(horizon_max, int(horizon.cpu().numpy()[ok].max()))
            states[i] = st

    t_cluster = time.perf_counter()
    sigma_flat = model.sigma_map.reshape(-1)
    vidx = np.flatnonzero(np.isfinite(resid_flat) & np.isfinite(sigma_flat))  # valid pixels, row-major
    thr_v, pending_v, post_v = thr_flat[vidx], pending_flat[vidx], post_flat[vidx]
    after_v = after_flat[vidx]
    # a pixel that entered the regime unobserved (beside an event, decorrelated) and is seen
    # again: its first value carries the event's step plus the motion since. It is part of that
    # event: re-anchored, not counted (DESIGN.md §1, "the near field comes back later").
    returning_v = post_v & ~np.isfinite(after_v)
    sc = screen_epoch(resid_flat[vidx], np.where(returning_v, np.float32(np.inf), thr_v), sigma_flat[vidx], vidx, shape,
                      params, pending_v, post_v if params.post_event_slots else None, model.forecaster.cm_bound_mm)
    rc_v, hit, confirmed = sc.rc_v, sc.hit_v, sc.confirmed_v
    objects, deformation, seismic_map = sc.objects, sc.deformation, sc.seismic
    region_v = np.zeros(vidx.size, bool)
    if params.reanchor and objects:
        # Re-anchor: a confirmed step becomes the pixel's new level, so a network that learned
        # "jumps revert" does not keep forecasting a return (late or repeated alerts).
        region_v = grow_region(sc, thr_flat[vidx], vidx, shape, params)
    shift_flat = None
    regime = params.reanchor and params.post_event_slots > 0
    enter_flat = None  # pixels entering the post-event regime: 1 observed (level known), 2 unobserved
    after_objects: list = []
    if params.reanchor:
        # in the regime, the level follows every observation (last value + model increment)
        anchor_v = region_v | confirmed | (post_v if regime else False) | returning_v
        if anchor_v.any():
            shift_flat = np.zeros(obs_flat.size, np.float32)
            shift_flat[vidx] = np.where(anchor_v, rc_v, 0.0)
        # an anomalous pixel not re-anchored now holds its step for confirmation; a normal or
        # re-anchored one holds none; an unobserved one keeps what it had
        pending_flat[vidx] = np.where(hit & ~anchor_v, rc_v, np.nan)
    if regime:
        # motion tracked in the regime (afterslip), and a new event or aftershock restarting it
        tracked = post_v & ~region_v & ~confirmed & np.isfinite(after_v)
        after_flat[vidx] = np.where(tracked, after_v + rc_v, np.where(returning_v, 0.0, after_v))
        if objects or confirmed.any():
            # a seismic object's pixels, and any confirmed step (an isolated station or point
            # that stepped: DESIGN.md §1), enter the regime
            enter = np.zeros(obs_flat.size, np.int8)
            enter[vidx[region_v | confirmed]] = 1
            if objects:
                unseen = near_objects(seismic_map, params.n_a).reshape(-1) & ~np.isfinite(obs_flat) & np.isfinite(sigma_flat)
                enter[unseen & (enter == 0)] = 2
            enter_flat = enter
        sigma_v = sigma_flat[vidx] * params.nm
        unrep = np.where(tracked, after_flat[vidx] - rep_flat[vidx], np.nan)
        after_objects, reported_v = afterslip_objects(unrep, sigma_v, vidx, shape, params)
        rep_flat[vidx] = np.where(reported_v, after_flat[vidx], rep_flat[vidx])
    n_post = int(post_v.sum()) if regime else 0
    moved = after_flat[vidx][post_v] if n_post else np.zeros(0, np.float32)
    moved = moved[np.isfinite(moved)]
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
            if regime:
                after, rep = after_flat[idx], rep_flat[idx]
                post = st.post
                if enter_flat is not None:
                    e = enter_flat[idx]
                    # the regime starts (again) one slot longer: advancing spends one
                    post = torch.where(torch.from_numpy(e > 0).to(dev), torch.tensor(min(params.post_event_slots + 1, 255), dtype=torch.uint8, device=dev), post)
                    after = np.where(e == 1, 0.0, np.where(e == 2, np.nan, after))
                    rep = np.where(e > 0, 0.0, rep)
                left = (post > 0).cpu().numpy()
                st.post = post
                st.after_mm = torch.from_numpy(np.where(left, after, 0.0).astype(np.float32)).to(dev, STEP_DTYPE)
                st.after_rep = torch.from_numpy(np.where(left, rep, 0.0).astype(np.float32)).to(dev, STEP_DTYPE)
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
        n_anomalous=sc.c_k,
        examined=bool(sc.examined),
        largest_object=int(sc.largest),
        common_mode_mm=float(np.median(sc.cm_v)) if vidx.size else 0.0,
        objects=objects,
        afterslip_objects=after_objects,
        post_event_pixels=n_post,
        afterslip_median_mm=float(np.median(moved)) if moved.size else 0.0,
        anomaly=sc.anomaly,
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
