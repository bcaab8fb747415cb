"""A frame's model and state in the store: buffering a new frame's epochs, bootstrapping its model
tile by tile, and loading a known frame's model.

Buffered epochs are stored as they will be modelled: downsampled by ``LADSDIN_DOWNSAMPLE`` (the
paper's t) and cut into ``LADSDIN_STATE_TILE``-pixel tiles, each a small blob in the store. The
bootstrap then reads one tile of every buffered epoch at a time (:mod:`ladsdin.models.bootstrap`),
so neither the worker's memory nor any stored value grows with the frame beyond the tiles and the
per-pixel results.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ladsdin.models.bootstrap import TileSeries
from ladsdin.models.config import DetectConfig
from ladsdin.models.detector import FrameModel
from ladsdin.models.frame import bootstrap_frame, frame_pixel_area, prepare_frame
from ladsdin.models.tiling import Tiling
from ladsdin.state.codec import decode_arrays, encode_arrays, read_header
from ladsdin.state.frame_model import decode_model, encode_model, encode_state, encode_state_manifest
from ladsdin.state.store import StateStore

log = logging.getLogger(__name__)


class BootstrapRaced(RuntimeError):
    """Another worker committed the frame's first state, or buffered an epoch, while this one
    bootstrapped: not the data's fault. Nothing of this bootstrap was kept; the event is
    processed again, against the winner's model or with a new bootstrap."""


def grid_coords(grid: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre lat (n_lat,) and lon (n_lon,) of an event's grid description."""
    lat = grid["lat0"] + grid["dlat"] * np.arange(grid["n_lat"])
    lon = grid["lon0"] + grid["dlon"] * np.arange(grid["n_lon"])
    return lat.astype(np.float64), lon.astype(np.float64)


def model_grid_shape(grid: dict[str, Any], downsample: int) -> tuple[int, int]:
    """The modelled (downsampled) grid's shape for an event's native grid."""
    t = max(int(downsample), 1)
    return (-(-int(grid["n_lat"]) // t), -(-int(grid["n_lon"]) // t))


@dataclass
class LoadedModel:
    """A frame's model as the worker holds it: the model, its version, and the native event grid
    it scores (``downsample``-th rows and columns of it are modelled)."""

    model: FrameModel
    version: str
    event_grid: dict[str, Any]
    downsample: int
    state_bytes: int = 0

    @property
    def nbytes(self) -> int:
        """Memory the model holds (its per-pixel arrays, the grid index and the sigma map)."""
        m = self.model
        per_tile = sum(t.index.nbytes + t.coef.nbytes + t.scale.nbytes + t.sigma.nbytes for t in m.tiles)
        return per_tile + m.grid.index.nbytes + 4 * m.tiling.n_lat * m.tiling.n_lon


def buffer_epoch(store: StateStore, frame: str, epoch: str, event: dict[str, Any], data: np.ndarray, cfg: DetectConfig) -> bool:
    """Keep a new frame's epoch (its map downsampled and cut into tiles) until the bootstrap."""
    t = max(int(cfg.downsample), 1)
    d = np.ascontiguousarray(data[::t, ::t] if t > 1 else data, np.float32)
    tiling = Tiling.of(d.shape, cfg.tile)
    tiles = [encode_arrays({"displacement": np.ascontiguousarray(d[tiling.window(i)])}, {"tile": i}) for i in range(tiling.n_tiles)]
    header = encode_arrays({}, {"grid": event["grid"], "track": event["track"], "event_id": event["event_id"],
                                "downsample": t, "tiling": tiling.to_dict()})
    return store.buffer_epoch(frame, epoch, header, tiles)


def bootstrap_from_buffer(store: StateStore, frame: str, cfg: DetectConfig, device: torch.device) -> tuple[LoadedModel, dict[str, Any]]:
    """Train a frame's model on its buffered epochs, tile by tile, and save model, state and cursor.

    Returns:
        (the loaded model, facts for the log and metrics: epochs, seconds, pixels).
    """
    t0 = time.perf_counter()
    buffered = store.buffered_epochs(frame)
    epochs = [e for e, _ in buffered]
    headers = [decode_arrays(b)[1] for _, b in buffered]
    last = headers[-1]
    tiling = Tiling.from_dict(last["tiling"])
    t = int(last.get("downsample", 1))
    if any(Tiling.from_dict(h["tiling"]) != tiling or int(h.get("downsample", 1)) != t for h in headers):
        raise ValueError(f"frame {frame}: buffered epochs were cut differently (LADSDIN_STATE_TILE or LADSDIN_DOWNSAMPLE "
                         "changed while buffering); delete the frame's buffer and publish its history again")
    cfg = dataclasses.replace(cfg, downsample=t)
    lat, lon = grid_coords(last["grid"])
    # every buffered epoch trains: the model's calendar ends at the last one
    prep = prepare_frame(np.array(epochs, dtype="datetime64[D]"), lat, lon, cfg, n_train=len(epochs))
    kept = [e for e, k in zip(epochs, prep.keep) if k]

    def read(i: int) -> TileSeries:
        d = np.stack([_tile_data(store, frame, e, i) for e in kept])
        return prep.tile_training(d, None, tiling, i, cfg)

    version = store.begin_state(frame, tiling.n_tiles)
    state_bytes = 0

    def save(i: int, state: Any) -> None:
        nonlocal state_bytes
        blob = encode_state(state)
        state_bytes += len(blob)
        if not store.put_state_tile(frame, version, i, blob):
            raise BootstrapRaced(f"frame {frame}: another worker committed a state while this one bootstrapped; it will use that one")

    a_p = frame_pixel_area(lat, abs(last["grid"]["dlat"]), abs(last["grid"]["dlon"]))
    model = bootstrap_frame(read, tiling, prep.lat, prep.lon, prep.train_calendar, a_p, cfg, device, save)
    manifest, model_tiles = encode_model(model, {"pixel_area_km2": a_p, "track": last["track"], "grid": last["grid"], "downsample": t})
    model.model_version = read_header(manifest)[0]["model_version"]  # with the weights' hash
    # Fenced: model, first state, cursor and the buffer's deletion in one compare-and-set that
    # holds only if no other worker bootstrapped and no epoch was buffered since we read it.
    ok = store.commit_bootstrap(frame, epoch=epochs[-1], model=manifest, model_version=model.model_version, config_hash=cfg.digest(),
                                model_tiles=model_tiles, state=encode_state_manifest(version, tiling.n_tiles, prep.split - 1, model.model_version),
                                tiles=version, applied={"event_id": last["event_id"], "bootstrap": True, "n_epochs": len(epochs),
                                                        "history": {e: h["event_id"] for e, h in zip(epochs, headers)}},
                                buffered=epochs)
    if not ok:
        store.discard_state(frame, version)
        raise BootstrapRaced(f"frame {frame}: another worker bootstrapped it, or an epoch was buffered, while this one trained; "
                             "this worker takes the stored model, or trains again")
    facts = {"epochs": len(epochs), "first": epochs[0], "last": epochs[-1], "pixels": model.n_pixels, "tiles": tiling.n_tiles,
             "seconds": time.perf_counter() - t0}
    return LoadedModel(model, model.model_version, last["grid"], t, state_bytes), facts


def _tile_data(store: StateStore, frame: str, epoch: str, i: int) -> np.ndarray:
    blob = store.buffered_epoch_tile(frame, epoch, i)
    if blob is None:
        if store.get_state(frame)[1] is not None:  # another worker's bootstrap committed and deleted the buffer
            raise BootstrapRaced(f"frame {frame}: another worker bootstrapped it while this one read the buffer")
        raise RuntimeError(f"frame {frame}: tile {i} of buffered epoch {epoch} is missing from the store; "
                           "delete the frame's buffer and publish its history again")
    return np.asarray(decode_arrays(blob)[0]["displacement"], np.float32)


def load_model(store: StateStore, frame: str, device: torch.device) -> LoadedModel | None:
    """The frame's stored model with its tiles, or None if it has none (or it changed while read)."""
    got = store.get_model(frame)
    if got is None:
        return None
    manifest, meta = got
    tiles_id = meta.get("tiles", "")
    n = int(tiles_id.split(".")[1]) if tiles_id else 0
    blobs = [store.get_model_tile(frame, tiles_id, i) for i in range(n)]
    if any(b is None for b in blobs):
        return None  # replaced while we read it: the caller reads it again
    model, info = decode_model(manifest, blobs, device)
    return LoadedModel(model, meta.get("version", model.model_version), dict(info["grid"]), int(info.get("downsample", 1)))
