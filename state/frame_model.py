"""A frame's fitted detector and its pixel state <-> codec blobs (safe: no pickle, no torch.save).

Model blob (``meta["kind"] == "ladsdin.frame-model"``), arrays:

- ``net.<name>``: every tensor of the network's ``state_dict``, float32 (shared LSTM: a few KB;
  per-pixel LSTM: (P, ...) per tensor)
- ``coef`` (P, 4) float64 trend coefficients (mm, mm/yr); ``scale``, ``sigma`` (P,) float32 mm;
  ``gap_factor`` (MAX_GAP,) float32
- ``grid.lat`` (n_lat,) and ``grid.lon`` (n_lon,) float64 degrees; ``grid.index`` (P,) int64

and meta: ``network`` {kind, layers, hidden, n_pixels}, ``calendar`` {start, step_days,
n_slots}, ``params`` (:class:`ScoreParams`), ``report`` (training report), ``info`` (the
caller's JSON dict), ``content_hash`` (of the arrays, network, calendar and params: identifies
the fitted model), ``model_version`` (``info["model_version"]`` when the caller names one, else the content
hash) and ``config_hash`` (of network, calendar, params and info).

State blob (``meta["kind"] == "ladsdin.pixel-state"``): ``h``, ``c`` (K, P, S) float32,
``pred`` (P,) float32, ``since_obs`` (P,) int32, ``offset`` (P,) float32 mm; meta ``slot``.

Everything is decoded onto the CPU and then moved to the requested device (STYLE.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ladsdin.models.cleaning import Calendar
from ladsdin.models.detector import PixelGrid, ScoreParams
from ladsdin.models.forecaster import Forecaster, PixelState
from ladsdin.models.lstm import build_network

from ladsdin.state.codec import StateFormatError, decode_arrays, encode_arrays

MODEL_KIND = "ladsdin.frame-model"
STATE_KIND = "ladsdin.pixel-state"
#: Layout of the model blob's arrays and meta (bump on an incompatible change; the codec's own
#: format version covers the container).
MODEL_SCHEMA = 1


def _hash(obj: Any, arrays: Mapping[str, np.ndarray] | None = None) -> str:
    h = hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays or {}):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8))  # no copy of the weights
    return h.hexdigest()[:16]


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A decoded (read-only) array as a tensor on ``device`` that owns its memory."""
    if device.type == "cpu":
        return torch.from_numpy(np.array(a, copy=True))
    with warnings.catch_warnings():
        # the read-only view is only read, by the host-to-device copy
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(a).to(device)


def _require(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], kind: str, names: tuple[str, ...]) -> None:
    if meta.get("kind") != kind:
        raise StateFormatError(f"blob holds {meta.get('kind')!r}, not {kind!r}: a state and a model blob were swapped")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise StateFormatError(f"{kind} blob lacks arrays {missing}: it is corrupt or from another ladsdin; re-bootstrap the frame")


def encode_model(fc: Forecaster, grid: PixelGrid, params: ScoreParams, info: Mapping[str, Any] | None = None) -> bytes:
    """Serialise a fitted forecaster with its grid and scoring parameters into one blob."""
    net = fc.net
    if grid.index.size != fc.n_pixels:
        raise ValueError(f"grid has {grid.index.size} pixels but the forecaster {fc.n_pixels}; pass the grid the model was fitted on")
    arrays: dict[str, np.ndarray] = {f"net.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays.update(
        coef=np.asarray(fc.coef, np.float64),
        scale=np.asarray(fc.scale, np.float32),
        sigma=np.asarray(fc.sigma, np.float32),
        gap_factor=np.asarray(fc.gap_factor, np.float32),
    )
    arrays["grid.lat"], arrays["grid.lon"], arrays["grid.index"] = np.asarray(grid.lat), np.asarray(grid.lon), np.asarray(grid.index, np.int64)
    config = {
        "network": {"kind": net.kind, "layers": int(net.layers), "hidden": int(net.hidden), "n_pixels": fc.n_pixels},
        "calendar": {
            "start": np.datetime_as_string(fc.calendar.start),  # keeps the datetime64 unit
            "step_days": int(fc.calendar.step_days),
            "n_slots": int(fc.calendar.n_slots),
        },
        "params": dataclasses.asdict(params),
        "info": {k: v for k, v in (info or {}).items() if k != "model_version"},
    }
    # the fitted model itself: weights, normalisation, sigma, grid, calendar, params (not info)
    content = _hash({k: v for k, v in config.items() if k != "info"}, arrays)
    meta = {
        "kind": MODEL_KIND,
        "schema": MODEL_SCHEMA,
        **config,
        "info": dict(info or {}),
        "report": fc.report,
        "config_hash": _hash(config),
        "content_hash": content,
        "model_version": str((info or {}).get("model_version") or content),
    }
    return encode_arrays(arrays, meta)


def decode_model(blob: bytes, device: torch.device) -> tuple[Forecaster, PixelGrid, ScoreParams, dict[str, Any]]:
    """Rebuild (forecaster on ``device``, grid, params, info) from :func:`encode_model`'s blob.

    ``info`` is the dict given to :func:`encode_model` plus ``model_version``, ``config_hash``
    and ``content_hash`` (the training report is in ``forecaster.report``; the whole header is
    available through :func:`ladsdin.state.codec.read_header`).

    Raises:
        StateFormatError: not a model blob, or its arrays do not fit its network.
    """
    arrays, meta = decode_arrays(blob)
    _require(arrays, meta, MODEL_KIND, ("coef", "scale", "sigma", "gap_factor", "grid.lat", "grid.lon", "grid.index"))
    if meta.get("schema") != MODEL_SCHEMA:
        raise StateFormatError(f"model schema {meta.get('schema')} is not {MODEL_SCHEMA}; upgrade ladsdin or re-bootstrap the frame")
    try:
        spec, cal, params = meta["network"], meta["calendar"], ScoreParams(**meta["params"])
        net = build_network(spec["kind"], int(spec["layers"]), int(spec["hidden"]), int(spec["n_pixels"]))
        weights = {k[len("net.") :]: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(weights, strict=True)  # on the CPU first, then moved (STYLE.md)
        calendar = Calendar(np.datetime64(cal["start"]), int(cal["step_days"]), int(cal["n_slots"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StateFormatError(f"model blob does not describe a valid network/calendar/params ({e}); re-bootstrap the frame") from e
    net = net.to(device).eval()
    n_p = int(spec["n_pixels"])
    grid = PixelGrid(np.array(arrays["grid.lat"]), np.array(arrays["grid.lon"]), np.array(arrays["grid.index"]))
    sizes = {n: arrays[n].shape[0] if arrays[n].ndim else -1 for n in ("coef", "scale", "sigma", "grid.index")}
    if any(s != n_p for s in sizes.values()):
        raise StateFormatError(f"model blob arrays {sizes} do not all have the network's {n_p} pixels: it is corrupt")
    fc = Forecaster(
        net=net,
        calendar=calendar,
        coef=np.array(arrays["coef"]),
        scale=np.array(arrays["scale"]),
        sigma=np.array(arrays["sigma"]),
        gap_factor=np.array(arrays["gap_factor"]),
        device=device,
        report=dict(meta.get("report") or {}),
    )
    out = dict(meta.get("info") or {})
    out.update({k: meta[k] for k in ("model_version", "config_hash", "content_hash") if k in meta})
    return fc, grid, params, out


def encode_state(state: PixelState) -> bytes:
    """Serialise every pixel's recurrent state (moved to the host; ~ (2 K S + 3) * 4 bytes per pixel)."""
    arrays = {
        "h": state.h.detach().cpu().numpy(),
        "c": state.c.detach().cpu().numpy(),
        "pred": state.pred.detach().cpu().numpy(),
        "since_obs": state.since_obs.detach().cpu().numpy(),
        "offset": state.offset.detach().cpu().numpy(),
    }
    return encode_arrays(arrays, {"kind": STATE_KIND, "slot": int(state.slot)})


def decode_state(blob: bytes, device: torch.device) -> PixelState:
    """Rebuild a :class:`PixelState` on ``device`` from :func:`encode_state`'s blob.

    Raises:
        StateFormatError: not a state blob, or inconsistent array shapes.
    """
    arrays, meta = decode_arrays(blob)
    _require(arrays, meta, STATE_KIND, ("h", "c", "pred", "since_obs", "offset"))
    h, c = arrays["h"], arrays["c"]
    n_p = h.shape[1] if h.ndim == 3 else -1
    if h.shape != c.shape or n_p < 0 or any(arrays[n].shape != (n_p,) for n in ("pred", "since_obs", "offset")):
        shapes = {n: a.shape for n, a in arrays.items()}
        raise StateFormatError(f"pixel-state blob has inconsistent shapes {shapes}; expected h, c (K, P, S) and (P,) vectors")
    slot = meta.get("slot")
    if not isinstance(slot, int):
        raise StateFormatError(f"pixel-state blob has no integer slot (got {slot!r})")
    return PixelState(*(_tensor(arrays[n], device) for n in ("h", "c", "pred", "since_obs", "offset")), slot=slot)


def check_state_fits(fc: Forecaster, state: PixelState) -> None:
    """Raise ``ValueError`` if ``state`` was not made by a model shaped like ``fc``."""
    want = (fc.net.layers, fc.n_pixels, fc.net.hidden)
    if tuple(state.h.shape) != want:
        raise ValueError(
            f"pixel state h has shape {tuple(state.h.shape)} but the model needs (K, P, S) = {want}: "
            "the state belongs to another model; re-bootstrap the frame's state from its model"
        )
