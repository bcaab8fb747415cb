"""A frame's fitted detector and its pixel state <-> codec blobs (safe: no pickle, no torch.save).

A model is one small **manifest** blob plus one blob per tile; a pixel state is one small
**manifest** plus one blob per tile (stored under a state version, see
:mod:`ladsdin.state.store`). Every blob is a :mod:`ladsdin.state.codec` blob.

Model manifest (``meta["kind"] == "ladsdin.frame-model"``), arrays ``net.<name>`` (every tensor
of the network's ``state_dict``, float32; a few KB for the shared LSTM), ``gap_factor``
(MAX_GAP,) float32, ``grid.lat`` (n_lat,) and ``grid.lon`` (n_lon,) float64 degrees; meta
``network`` {kind, layers, hidden, n_pixels}, ``calendar`` {start, step_days, n_slots},
``params`` (:class:`ScoreParams`), ``tiling``, ``tile_pixels`` (pixels per tile), ``report``,
``track_factor`` (the post-event regime's sigma factor), ``cm_bound_mm`` (null = unbounded), ``info`` (the caller's JSON dict), ``content_hash`` (of every array, network, calendar, params
and tiling: identifies the fitted model), ``model_version`` and ``config_hash``.

Model tile (``"ladsdin.tile-model"``): ``mask`` the tile's modelled pixels as packed bits (1 bit
per pixel of the tile, row-major), ``coef`` (p, 4) float32, ``scale``, ``sigma`` (p,) float32.

State tile (``"ladsdin.pixel-state"``, the lean state: 4 K S + 12 bytes per modelled pixel, 76
for the default K = 1, S = 16): ``h``, ``c`` (K, p, S) float16, ``since_obs`` (p,) uint8
(saturating at 255: any gap beyond MAX_GAP slots is widened alike), ``offset`` (p,) float32 mm,
``last_step`` (p,) float16 mm (a step awaiting confirmation, NaN = none), the post-event regime
``post`` (p,) uint8, ``after_mm`` and ``after_rep`` (p,) float16 mm; meta ``slot``. A state
written before the post-event regime existed (no ``post``) decodes with the regime off.

State manifest (``"ladsdin.state-manifest"``): meta ``slot``, ``version`` (the store's tile
version id) and ``tiles``.

Everything is decoded onto the CPU and then moved to the requested device (STYLE.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ladsdin.models.cleaning import Calendar
from ladsdin.models.detector import FrameModel, ScoreParams, tiled_grid
from ladsdin.models.forecaster import STATE_DTYPE, STEP_DTYPE, TRACK_FACTOR_DEFAULT, Forecaster, PixelState
from ladsdin.models.lstm import build_network
from ladsdin.models.tiling import TileModel, Tiling
from ladsdin.state.codec import StateFormatError, decode_arrays, encode_arrays

MODEL_KIND = "ladsdin.frame-model"
TILE_MODEL_KIND = "ladsdin.tile-model"
STATE_KIND = "ladsdin.pixel-state"
STATE_MANIFEST_KIND = "ladsdin.state-manifest"
#: Layout of the model blobs' arrays and meta (bump on an incompatible change; the codec's own
#: format version covers the container). 2: tiled model, lean state.
MODEL_SCHEMA = 2
_SINCE_MAX = 255
#: The post-event regime's arrays of a state tile (absent from states written before it).
_REGIME_ARRAYS = ("post", "after_mm", "after_rep")


def _hash(obj: Any, arrays: Sequence[Mapping[str, np.ndarray]] = ()) -> str:
    h = hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    for part in arrays:
        for name in sorted(part):
            h.update(name.encode())
            h.update(np.ascontiguousarray(part[name]).reshape(-1).view(np.uint8))  # no copy of the weights
    return h.hexdigest()[:16]


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A decoded (read-only) array as a tensor on ``device`` that owns its memory."""
    return torch.from_numpy(np.array(a, copy=True)).to(device)


def _require(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], kind: str, names: tuple[str, ...]) -> None:
    if meta.get("kind") != kind:
        raise StateFormatError(f"blob holds {meta.get('kind')!r}, not {kind!r}: blobs of another kind were swapped in")
    missing = [n for n in names if n not in arrays]
    if missing:
        raise StateFormatError(f"{kind} blob lacks arrays {missing}: it is corrupt or from another ladsdin; re-bootstrap the frame")


def _tile_arrays(tiling: Tiling, i: int, t: TileModel) -> dict[str, np.ndarray]:
    r0, r1, c0, c1 = tiling.bounds(i)
    mask = np.zeros((r1 - r0) * (c1 - c0), bool)
    rows, cols = np.divmod(t.index, tiling.n_lon)
    mask[(rows - r0) * (c1 - c0) + (cols - c0)] = True
    return {"mask": np.packbits(mask), "coef": np.asarray(t.coef, np.float32), "scale": np.asarray(t.scale, np.float32),
            "sigma": np.asarray(t.sigma, np.float32)}


def _weights_version(named: Any, base: str, content: str) -> str:
    """The model's version: a name given in ``info`` as is, else the trainer's version (network,
    configuration) with the content hash of the weights and per-pixel arrays, so two fits of
    one frame that differ in any weight never share a version (fencing, DESIGN.md §3)."""
    if named:
        return str(named)
    suffix = f"/w{content}"
    if not base:
        return content
    return base if base.endswith(suffix) else f"{base}{suffix}"


def encode_model(model: FrameModel, info: Mapping[str, Any] | None = None) -> tuple[bytes, list[bytes]]:
    """Serialise a fitted, tiled frame model: (manifest blob, one blob per tile)."""
    fc, tiling = model.forecaster, model.tiling
    if len(model.tiles) != tiling.n_tiles:
        raise ValueError(f"the model has {len(model.tiles)} tiles but its tiling {tiling.n_tiles}")
    net = fc.net
    arrays: dict[str, np.ndarray] = {f"net.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    arrays.update(gap_factor=np.asarray(fc.gap_factor, np.float32), **{"grid.lat": np.asarray(model.grid.lat, np.float64),
                  "grid.lon": np.asarray(model.grid.lon, np.float64)})
    tiles = [_tile_arrays(tiling, i, t) for i, t in enumerate(model.tiles)]
    config = {
        "network": {"kind": net.kind, "layers": int(net.layers), "hidden": int(net.hidden), "n_pixels": model.n_pixels},
        "calendar": {
            "start": np.datetime_as_string(fc.calendar.start),  # keeps the datetime64 unit
            "step_days": int(fc.calendar.step_days),
            "n_slots": int(fc.calendar.n_slots),
        },
        "params": dataclasses.asdict(model.params),
        "tiling": tiling.to_dict(),
        "tile_pixels": [t.n_pixels for t in model.tiles],
        "pixel_area_km2": float(model.pixel_area_km2),
        "track_factor": float(fc.track_factor),
        "cm_bound_mm": float(fc.cm_bound_mm) if np.isfinite(fc.cm_bound_mm) else None,
    }
    content = _hash(config, [arrays, *tiles])
    meta = {
        "kind": MODEL_KIND,
        "schema": MODEL_SCHEMA,
        **config,
        "info": {k: v for k, v in (info or {}).items() if k != "model_version"},
        "report": fc.report,
        "config_hash": _hash({**config, "info": dict(info or {})}),
        "content_hash": content,
        "model_version": _weights_version((info or {}).get("model_version"), model.model_version, content),
    }
    blobs = [encode_arrays(a, {"kind": TILE_MODEL_KIND, "schema": MODEL_SCHEMA, "tile": i}) for i, a in enumerate(tiles)]
    return encode_arrays(arrays, meta), blobs


def decode_model(manifest: bytes, tiles: Sequence[bytes], device: torch.device) -> tuple[FrameModel, dict[str, Any]]:
    """Rebuild (frame model on ``device``, info) from :func:`encode_model`'s blobs.

    ``info`` is the dict given to :func:`encode_model` plus ``model_version``, ``config_hash``
    and ``content_hash`` (the training report is in ``model.forecaster.report``).

    Raises:
        StateFormatError: not a model, tiles missing or not fitting the manifest.
    """
    arrays, meta = decode_arrays(manifest)
    _require(arrays, meta, MODEL_KIND, ("gap_factor", "grid.lat", "grid.lon"))
    if meta.get("schema") != MODEL_SCHEMA:
        raise StateFormatError(f"model schema {meta.get('schema')} is not {MODEL_SCHEMA}; upgrade ladsdin or re-bootstrap the frame")
    try:
        spec, cal, params = meta["network"], meta["calendar"], ScoreParams(**meta["params"])
        tiling = Tiling.from_dict(meta["tiling"])
        net = build_network(spec["kind"], int(spec["layers"]), int(spec["hidden"]), int(spec["n_pixels"]))
        weights = {k[len("net.") :]: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(weights, strict=True)  # on the CPU first, then moved (STYLE.md)
        calendar = Calendar(np.datetime64(cal["start"]), int(cal["step_days"]), int(cal["n_slots"]))
        counts = [int(n) for n in meta["tile_pixels"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StateFormatError(f"model blob does not describe a valid network/calendar/params/tiling ({e}); re-bootstrap the frame") from e
    if len(tiles) != tiling.n_tiles or len(counts) != tiling.n_tiles:
        raise StateFormatError(f"model has {tiling.n_tiles} tiles, {len(tiles)} given; re-bootstrap the frame")
    tile_models = [_decode_tile(tiling, i, blob, counts[i]) for i, blob in enumerate(tiles)]
    empty = np.zeros(0, np.float32)
    fc = Forecaster(net=net.to(device).eval(), calendar=calendar, coef=np.zeros((0, 4), np.float32), scale=empty, sigma=empty,
                    gap_factor=np.array(arrays["gap_factor"]), device=device, report=dict(meta.get("report") or {}),
                    track_factor=float(meta.get("track_factor", TRACK_FACTOR_DEFAULT)),
                    cm_bound_mm=float(meta["cm_bound_mm"]) if meta.get("cm_bound_mm") is not None else float("inf"))
    grid = tiled_grid(np.array(arrays["grid.lat"]), np.array(arrays["grid.lon"]), tile_models)
    version = str(meta.get("model_version") or meta.get("content_hash"))
    model = FrameModel(fc, tiling, tile_models, grid, params, version, float(meta.get("pixel_area_km2", 0.0)))
    out = dict(meta.get("info") or {})
    out.update({k: meta[k] for k in ("model_version", "config_hash", "content_hash") if k in meta})
    return model, out


def _decode_tile(tiling: Tiling, i: int, blob: bytes, n_pixels: int) -> TileModel:
    arrays, meta = decode_arrays(blob)
    _require(arrays, meta, TILE_MODEL_KIND, ("mask", "coef", "scale", "sigma"))
    if meta.get("tile") != i:
        raise StateFormatError(f"model tile {meta.get('tile')} stored as tile {i}: the model's tiles are mixed up; re-bootstrap the frame")
    r0, r1, c0, c1 = tiling.bounds(i)
    h, w = r1 - r0, c1 - c0
    mask = np.unpackbits(arrays["mask"], count=h * w).astype(bool).reshape(h, w)
    index = tiling.global_index(i, mask)
    sizes = {n: arrays[n].shape[0] for n in ("coef", "scale", "sigma")}
    if index.size != n_pixels or any(s != n_pixels for s in sizes.values()):
        raise StateFormatError(f"model tile {i} holds {index.size} pixels and arrays {sizes}, the manifest says {n_pixels}: it is corrupt")
    return TileModel(index, np.array(arrays["coef"]), np.array(arrays["scale"]), np.array(arrays["sigma"]))


def encode_state(state: PixelState) -> bytes:
    """One tile's recurrent state, lean (see the module docstring); moved to the host."""
    since = state.since_obs.detach().cpu().numpy()
    arrays = {
        "h": state.h.detach().to(STATE_DTYPE).cpu().numpy(),
        "c": state.c.detach().to(STATE_DTYPE).cpu().numpy(),
        "since_obs": np.minimum(since, _SINCE_MAX).astype(np.uint8),
        "offset": state.offset.detach().cpu().numpy().astype(np.float32),
        "last_step": state.last_step.detach().to(STEP_DTYPE).cpu().numpy(),
        "post": state.post.detach().to(torch.uint8).cpu().numpy(),
        "after_mm": state.after_mm.detach().to(STEP_DTYPE).cpu().numpy(),
        "after_rep": state.after_rep.detach().to(STEP_DTYPE).cpu().numpy(),
    }
    return encode_arrays(arrays, {"kind": STATE_KIND, "schema": MODEL_SCHEMA, "slot": int(state.slot)})


def decode_state(blob: bytes, device: torch.device) -> PixelState:
    """Rebuild one tile's :class:`PixelState` on ``device`` from :func:`encode_state`'s blob.

    Raises:
        StateFormatError: not a state blob, or inconsistent array shapes.
    """
    arrays, meta = decode_arrays(blob)
    _require(arrays, meta, STATE_KIND, ("h", "c", "since_obs", "offset", "last_step"))
    h, c = arrays["h"], arrays["c"]
    n_p = h.shape[1] if h.ndim == 3 else -1
    regime = [n for n in _REGIME_ARRAYS if n in arrays]
    if regime and len(regime) != len(_REGIME_ARRAYS):
        raise StateFormatError(f"pixel-state blob has {regime} of the post-event arrays {_REGIME_ARRAYS}; it is corrupt")
    if h.shape != c.shape or n_p < 0 or any(arrays[n].shape != (n_p,) for n in ("since_obs", "offset", "last_step", *regime)):
        shapes = {n: a.shape for n, a in arrays.items()}
        raise StateFormatError(f"pixel-state blob has inconsistent shapes {shapes}; expected h, c (K, P, S) and (P,) vectors")
    slot = meta.get("slot")
    if not isinstance(slot, int):
        raise StateFormatError(f"pixel-state blob has no integer slot (got {slot!r})")
    since = torch.from_numpy(arrays["since_obs"].astype(np.int32)).to(device)
    extra = {n: _tensor(arrays[n], device) for n in regime}
    return PixelState(_tensor(h, device), _tensor(c, device), since, _tensor(arrays["offset"], device), slot=slot,
                      last_step=_tensor(arrays["last_step"], device), **extra)


def encode_state_manifest(version: str, n_tiles: int, slot: int, model: str = "") -> bytes:
    """The small blob that names a committed state version and the model version it was made with."""
    return encode_arrays({}, {"kind": STATE_MANIFEST_KIND, "schema": MODEL_SCHEMA, "version": version, "tiles": int(n_tiles), "slot": int(slot),
                              "model": str(model)})


def decode_state_manifest(blob: bytes) -> dict[str, Any]:
    """{"version", "tiles", "slot", "model"} of a state manifest ("model": "" when not recorded).
    Raises StateFormatError otherwise."""
    arrays, meta = decode_arrays(blob)
    _require(arrays, meta, STATE_MANIFEST_KIND, ())
    if meta.get("schema") != MODEL_SCHEMA or not isinstance(meta.get("version"), str):
        raise StateFormatError(f"state manifest schema {meta.get('schema')} is not {MODEL_SCHEMA}; re-bootstrap the frame")
    return {"version": meta["version"], "tiles": int(meta["tiles"]), "slot": int(meta["slot"]), "model": str(meta.get("model", ""))}


def check_state_fits(model: FrameModel, i: int, state: PixelState) -> None:
    """Raise ``ValueError`` if ``state`` was not made for tile ``i`` of ``model``."""
    net = model.forecaster.net
    want = (net.layers, model.tiles[i].n_pixels, net.hidden)
    if tuple(state.h.shape) != want:
        raise ValueError(
            f"pixel state of tile {i} has shape {tuple(state.h.shape)} but the model needs (K, P, S) = {want}: "
            "the state belongs to another model; re-bootstrap the frame's state from its model"
        )
