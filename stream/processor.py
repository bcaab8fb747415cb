"""``EpochProcessor.process``: one ``licsar.epochs.v1`` event in, state committed, messages out.

Synchronous and testable without Kafka: the async worker only awaits it in an executor. A
frame's life:

1. **New frame.** Epochs are validated and buffered durably in the state store, downsampled
   (``LADSDIN_DOWNSAMPLE``) and cut into tiles, until ``min_history_epochs`` have arrived. The
   frame's model then bootstraps tile by tile exactly as ``ladsdin detect`` trains
   (:mod:`ladsdin.stream.frames`), and the model, the warm pixel state and the cursor (the last
   buffered epoch) are saved.
2. **Known frame.** Load the model (cached by version) and the state manifest with its cursor,
   score the epoch tile by tile (:func:`ladsdin.models.scoring.score_epoch`: the next tile's
   state loads while one is scored, and each new tile is written to a new state version while
   the next one advances), then commit the new version, the cursor, an applied-log record and
   the outgoing alerts and summary (the outbox) in one atomic compare-and-set. A replay of an
   applied epoch is a no-op; an older epoch is rejected as ``out_of_order``; a gap is stepped
   through as in ``detect --gap-fill native``.

Bad events never change state: they come back as a DLQ message with a machine-readable reason.
Infrastructure failures (the store is down) raise, so the worker restarts and loses nothing.

Every stage is timed into a :class:`~ladsdin.stream.metrics.MetricsRecorder` (a no-op unless
the worker passes a Prometheus one): fetch, model_load, state_load, predict, cluster and
state_write here, publish in the outbox. With tiles, state_load and state_write are the time
spent *waiting* for the store beyond what overlapped with computing.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ladsdin.models.alerts import object_feature
from ladsdin.models.config import DetectConfig
from ladsdin.models.cube import SIGN, UNITS
from ladsdin.models.forecaster import PixelState
from ladsdin.models.scoring import score_epoch
from ladsdin.models.training import TrainConfig
from ladsdin.state.codec import StateFormatError, read_header
from ladsdin.state.frame_model import decode_state, decode_state_manifest, encode_state, encode_state_manifest
from ladsdin.state.store import FrameBootstrapped, OutboxMessage, StateStore, StoreUnavailable
from ladsdin.stream.frames import BootstrapRaced, LoadedModel, bootstrap_from_buffer, buffer_epoch, load_model
from ladsdin.stream.contracts import EventError, iso_to_unix_s, now_iso
from ladsdin.stream.dlq import dlq_record
from ladsdin.stream.events import parse_epoch_event
from ladsdin.stream.failures import fetch_with_retries, is_infrastructure
from ladsdin.stream.metrics import MetricsRecorder
from ladsdin.stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What processing one event did. ``messages`` are to be published (then acked)."""

    status: str  # 'scored' | 'buffered' | 'bootstrapped' | 'duplicate' | 'rejected'
    frame: str | None = None
    epoch: str | None = None
    reason: str | None = None  # DLQ reason when rejected
    messages: list[OutboxMessage] = field(default_factory=list)
    n_alerts: int = 0
    seconds: float = 0.0


#: How often one event is processed again after losing a bootstrap race before the worker restarts.
_RACE_RETRIES = 3


class _StateMoved(Exception):
    """The frame's state changed under this worker while it scored (another worker committed)."""


def detect_config(settings: Settings) -> DetectConfig:
    """The detector the stream runs, from the settings (``LADSDIN_NM`` ... ``LADSDIN_TRAIN_PIXELS``)."""
    return DetectConfig(nm=settings.nm, seismic_area_km2=settings.seismic_area_km2, downsample=settings.downsample,
                        post_event_days=settings.post_event_days, false_alerts_per_year=settings.false_alerts_per_year,
                        tile=settings.state_tile,
                        train=TrainConfig(train_pixels=settings.train_pixels, calibration_pixels=settings.calibration_pixels))


class EpochProcessor:
    """Applies epoch events to per-frame state in a :class:`StateStore`."""

    def __init__(self, store: StateStore, settings: Settings, device: torch.device, cfg: DetectConfig | None = None,
                 metrics: MetricsRecorder | None = None) -> None:
        self.store = store
        self.settings = settings
        self.device = device
        self.cfg = cfg or detect_config(settings)
        self.metrics = metrics or MetricsRecorder()
        self.roots = [Path(settings.data_root).resolve(), *(Path(r.removeprefix("file://")).resolve() for r in settings.allowed_uri_roots)]
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._scoring: set[str] = set()  # frames seen here that have a model
        self._buffering: set[str] = set()  # frames seen here that have no model yet

    # -- entry point -----------------------------------------------------------------------
    def process(self, raw: bytes, *, topic: str = "", partition: int = -1, offset: int = -1) -> Outcome:
        t0 = time.perf_counter()
        m = self.metrics
        m.event_started()
        frame = epoch = None
        try:
            s = self.settings
            event = parse_epoch_event(raw, max_bytes=s.max_message_bytes, epoch_margin_days=s.epoch_margin_days, max_pixels=s.max_frame_pixels)
            frame, epoch = event["frame"], event["epoch"]
            if s.frames and frame not in s.frames:
                raise EventError("unknown_frame", f"frame {frame} is not served here (LADSDIN_FRAMES lists {len(s.frames)} frames)")
            if (parked := self.store.failed(frame)) is not None:
                raise EventError("frame_failed", f"frame {frame} is parked since {parked.get('at')} ({parked.get('detail')}); its events "
                                 f"wait here: fix the data, run `ladsdin frames reset {frame}`, then replay them from the DLQ")
            event["source"] = {"topic": topic, "partition": partition, "offset": offset} if partition >= 0 else None
            try:
                out = self._apply(event)
            except StateFormatError as exc:
                # A model or state this ladsdin cannot read (an older format after an upgrade):
                # retrying would crash-loop, so the frame starts over from this event.
                log.error("frame %s: its stored model or state is unreadable (%s); deleting the frame's stored data so it "
                          "bootstraps again from new epochs", frame, exc)
                self.store.delete_frame(frame)
                self._models.pop(frame, None)
                out = self._apply(event)
            # only now is the frame name a bounded label: valid, allowed, and known to the store
            m.frame_event(frame, self.cfg.step_days * 86400.0)
        except EventError as exc:
            log.warning("rejected event %s/%s@%s (frame %s, epoch %s): %s: %s", topic, partition, offset, frame, epoch, exc.reason, exc)
            out = self._reject(raw, exc, frame, epoch, topic, partition, offset)
        except Exception as exc:  # noqa: BLE001 - sorted below: the event's content, or the infrastructure
            if is_infrastructure(exc):
                raise  # the worker exits for a restart and this event is read again
            # The event passed every check and still broke something deeper (a decoder, the
            # model): retrying it would crash-loop the partition, so it goes to the DLQ. No state
            # changed: scoring discards its unfinished version, and only a commit changes state.
            log.error("event %s/%s@%s (frame %s, epoch %s) failed inside processing; sent to the DLQ", topic, partition, offset,
                      frame, epoch, exc_info=True)
            detail = f"{type(exc).__name__}: {exc}"[:300]
            out = self._reject(raw, EventError("processing_error", f"{detail} (the worker log has the traceback)"), frame, epoch, topic,
                               partition, offset)
        out.seconds = time.perf_counter() - t0
        m.event_finished(out.status, out.seconds)
        return out

    def _apply(self, event: dict[str, Any]) -> Outcome:
        """Buffer or score the event; when another worker's bootstrap wins a race with this one,
        take its model and process the event again (it is then scored, or a replay)."""
        frame = event["frame"]
        for _ in range(_RACE_RETRIES):
            try:
                with self.metrics.stage("model_load"):
                    model = self._model(frame)
                return self._buffer(event) if model is None else self._score(event, model)
            except (BootstrapRaced, FrameBootstrapped) as exc:
                log.info("frame %s epoch %s: %s; processing the event again", frame, event["epoch"], exc)
        # the frame's first state keeps changing under this worker: let a restart sort it out
        raise StoreUnavailable(f"frame {frame}: bootstrapped by another writer {_RACE_RETRIES} times in a row while this worker processed "
                               f"epoch {event['epoch']}; restarting")

    def _reject(self, raw: bytes, exc: EventError, frame: str | None, epoch: str | None, topic: str, partition: int,
                offset: int) -> Outcome:
        record = dlq_record(raw, exc.reason, str(exc), topic, partition, offset, key=frame.encode() if frame else None,
                            max_payload_bytes=min(self.settings.dlq_max_payload_bytes, self.settings.max_message_bytes))
        msg = OutboxMessage(f"dlq:{topic}:{partition}:{offset}", self.settings.dlq_topic, frame or "", json.dumps(record).encode())
        self.metrics.rejected(exc.reason)
        return Outcome("rejected", frame, epoch, exc.reason, [msg])

    def _fetch(self, event: dict[str, Any], expected: dict[str, Any] | None) -> np.ndarray:
        with self.metrics.stage("fetch"):
            return fetch_with_retries(event, self.roots, expected, self.settings.data_retries, self.settings.data_retry_backoff_s)

    # -- known frames ----------------------------------------------------------------------
    def _model(self, frame: str) -> LoadedModel | None:
        # Only the version travels per event; the (large, tiled) model only when it changed.
        version = self.store.model_version(frame)
        if version is None:
            return None
        cached = self._models.get(frame)
        if cached is None or cached.version != version:
            loaded = load_model(self.store, frame, self.device)
            if loaded is None:
                return None
            self._cache(frame, loaded)
            return loaded
        self._models.move_to_end(frame)
        return cached

    def _cache(self, frame: str, loaded: LoadedModel) -> None:
        """Keep the model, dropping the least recently used others beyond LADSDIN_MODEL_CACHE_MB
        (a worker serving many frames reloads a model from the store, ~0.1 s per M pixels)."""
        self._models[frame] = loaded
        self._models.move_to_end(frame)
        self._scoring.add(frame)
        budget = self.settings.model_cache_mb * 2**20
        while len(self._models) > 1 and sum(m.nbytes for m in self._models.values()) > budget:
            evicted, _ = self._models.popitem(last=False)
            log.info("frame %s: model dropped from the cache (LADSDIN_MODEL_CACHE_MB=%d)", evicted, self.settings.model_cache_mb)
        self._track()

    def _score(self, event: dict[str, Any], loaded: LoadedModel) -> Outcome:
        frame, epoch = event["frame"], event["epoch"]
        m, model = self.metrics, loaded.model
        t_load = time.perf_counter()
        blob, cursor = self.store.get_state(frame)
        if blob is None:  # crashed between saving the model and its first state: bootstrap again
            self._models.pop(frame, None)
            return self._buffer(event)
        if cursor is not None and epoch <= cursor:
            return self._replayed(event, cursor)
        current = decode_state_manifest(blob)
        if current["model"] and current["model"] != loaded.version:
            # cannot happen with fenced bootstraps: the state belongs to another model
            raise StateFormatError(f"frame {frame}: the state was made with model {current['model']}, the stored model is {loaded.version}")
        manifest_s = time.perf_counter() - t_load
        slot = model.forecaster.calendar.slot_of(np.datetime64(epoch))
        if slot <= current["slot"]:
            raise EventError("out_of_order", f"epoch {epoch} falls in calendar slot {slot}, not after the last applied slot {current['slot']} ({cursor})")
        expected = {k: loaded.event_grid[k] for k in ("n_lat", "n_lon", "lat0", "lon0", "dlat", "dlon")}
        obs = self._fetch(event, expected)
        t = loaded.downsample
        obs = obs[::t, ::t] if t > 1 else obs
        n = model.tiling.n_tiles
        version = self.store.begin_state(frame, n)
        state_bytes = 0

        def load(i: int) -> PixelState:
            tile = self.store.get_state_tile(frame, current["version"], i)
            if tile is None:
                raise _StateMoved(f"tile {i} of state version {current['version']} is gone")
            return decode_state(tile, self.device)

        def save(i: int, st: PixelState) -> None:
            nonlocal state_bytes
            tile = encode_state(st)
            state_bytes += len(tile)
            if not self.store.put_state_tile(frame, version, i, tile):
                raise _StateMoved(f"state version {version} was discarded")

        try:
            score = score_epoch(model, load, save, obs, slot, epoch)
        except _StateMoved as exc:
            # Another worker applied something first: what we computed is stale, publish nothing.
            log.info("frame %s epoch %s: the state moved under us (%s), not applied", frame, epoch, exc)
            self.store.discard_state(frame, version)
            return Outcome("duplicate", frame, epoch)
        except BaseException:
            self._discard_quietly(frame, version)
            raise
        m.observe_stage("state_load", manifest_s + score.stage_seconds["state_load"])
        m.observe_stage("predict", score.stage_seconds["predict"])
        t_feats = time.perf_counter()
        feats = [
            object_feature(obj, lat=model.grid.lat, lon=model.grid.lon, frame=frame, track=event["track"], epoch=epoch, nm=model.params.nm,
                           n_a=model.params.n_a, model_version=loaded.version,
                           extra={"gap_steps": score.horizon_max - 1, "event_id": event["event_id"],
                                  "min_object_px": model.params.min_object})
            for obj in score.objects
        ]
        # cluster: the labelling inside score_epoch plus turning its objects into alert features
        m.observe_stage("cluster", score.stage_seconds["cluster"] + time.perf_counter() - t_feats)
        latency_s = round(max(time.time() - iso_to_unix_s(event.get("produced_at")), 0.0), 3)
        msgs = [OutboxMessage(f["id"], self.settings.alerts_topic, frame, json.dumps(f).encode()) for f in feats]
        summary = {
            "schema": "ladsdin.epoch-summaries.v1",
            "frame": frame,
            "epoch": epoch,
            "event_id": event["event_id"],
            "c_k": score.n_anomalous,
            "n_a": model.params.n_a,
            "min_object_px": model.params.min_object,
            "n_valid": score.n_valid,
            "largest_object_px": score.largest_object,
            "n_seismic_objects": len(score.objects),
            "examined": score.examined,
            "gap_steps": max(score.horizon_max - 1, 0),
            "common_mode_mm": round(score.common_mode_mm, 3),
            "post_event_pixels": score.post_event_pixels,
            "afterslip_median_mm": round(score.afterslip_median_mm, 3),
            "n_afterslip_objects": len(score.afterslip_objects),
            "latency_s": latency_s,
            "produced_at": now_iso(),
            "model_version": loaded.version,
            "units": UNITS,
            "sign": SIGN,
        }
        msgs.append(OutboxMessage(f"{frame}:{epoch}:summary", self.settings.summaries_topic, frame, json.dumps(summary).encode()))
        applied = {"event_id": event["event_id"], "slot": slot, "c_k": score.n_anomalous, "alerts": [f["id"] for f in feats],
                   "source": event.get("source")}
        t_commit = time.perf_counter()
        committed = self.store.commit_epoch(frame, epoch=epoch, expected_cursor=cursor,
                                            state=encode_state_manifest(version, n, slot, loaded.version),
                                            outbox=msgs, applied=applied, tiles=version)
        m.observe_stage("state_write", score.stage_seconds["state_write"] + time.perf_counter() - t_commit)
        if not committed:
            # Another worker applied something first: what we computed is stale, publish nothing.
            log.info("frame %s epoch %s: cursor moved under us, not applied", frame, epoch)
            self.store.discard_state(frame, version)
            return Outcome("duplicate", frame, epoch)
        loaded.state_bytes = state_bytes
        m.scored(frame, epoch=epoch, c_k=score.n_anomalous, n_a=model.params.n_a, n_valid=score.n_valid, largest_px=score.largest_object,
                 pixel_area_km2=model.pixel_area_km2, n_alerts=len(feats), latency_s=latency_s, state_bytes=state_bytes)
        if feats:
            log.info("frame %s epoch %s: %d alert(s), C_k=%d >= N_a=%d", frame, epoch, len(feats), score.n_anomalous, model.params.n_a)
        return Outcome("scored", frame, epoch, None, msgs, n_alerts=len(feats))

    def _discard_quietly(self, frame: str, version: str) -> None:
        """Best effort after a failure: an orphan version is collected at the next commit anyway."""
        try:
            self.store.discard_state(frame, version)
        except Exception:  # noqa: BLE001 - the original failure is what matters
            log.debug("frame %s: could not discard state version %s", frame, version, exc_info=True)

    def _replayed(self, event: dict[str, Any], cursor: str) -> Outcome:
        frame, epoch = event["frame"], event["epoch"]
        records = self.store.applied_log(frame)
        done = {r.get("epoch"): r for r in records}
        if epoch in done:
            if done[epoch].get("event_id") not in (None, event["event_id"]):
                raise EventError("duplicate", f"epoch {epoch} of {frame} was applied from event {done[epoch]['event_id']}; this event {event['event_id']} carries different data")
            return Outcome("duplicate", frame, epoch)  # an exact replay: nothing to do
        if any(r.get("bootstrap") and r.get("history", {}).get(epoch) == event["event_id"] for r in records):
            return Outcome("duplicate", frame, epoch)  # a replay of an epoch the model trained on
        if epoch == cursor:  # the bootstrap's last buffered epoch
            if self.store.buffered_epoch_names(frame):  # a crash came between the bootstrap's commit and its cleanup
                self.store.clear_buffer(frame)
            return Outcome("duplicate", frame, epoch)
        raise EventError("out_of_order", f"epoch {epoch} of {frame} is older than the last applied epoch {cursor}")

    # -- new frames ------------------------------------------------------------------------
    def _buffer(self, event: dict[str, Any]) -> Outcome:
        frame, epoch = event["frame"], event["epoch"]
        # Names only: a buffering frame must not pull every buffered map for every new epoch.
        known = self.store.buffered_epoch_names(frame)
        if epoch in known:
            if len(known) >= self.settings.min_history_epochs:
                # redelivered after a crash inside the bootstrap it had triggered: bootstrap now,
                # or this epoch would end up in the training of a later, larger bootstrap
                return self._bootstrap_or_park(frame, epoch)
            return Outcome("duplicate", frame, epoch)
        if known and epoch < known[-1]:
            raise EventError("out_of_order", f"epoch {epoch} of new frame {frame} is older than the last buffered epoch {known[-1]}")
        if known:
            first = self.store.buffered_epoch(frame, known[0])
            first_grid = read_header(first)[0]["grid"] if first is not None else event["grid"]
            if first_grid != event["grid"]:
                raise EventError("grid_mismatch", f"grid {event['grid']} differs from the frame's grid {first_grid}")
        if len(known) >= self.settings.max_buffer_epochs:
            raise self._park(frame, epoch, "buffer_full", f"the buffer holds {len(known)} epochs (LADSDIN_MAX_BUFFER_EPOCHS="
                             f"{self.settings.max_buffer_epochs}) and the frame never bootstrapped")
        data = self._fetch(event, None)
        buffer_epoch(self.store, frame, epoch, event, data, self.cfg)
        if len(known) + 1 < self.settings.min_history_epochs:
            self._buffering.add(frame)
            self.metrics.buffered(frame, len(known) + 1)
            self._track()
            return Outcome("buffered", frame, epoch)
        return self._bootstrap_or_park(frame, epoch)

    def _bootstrap_or_park(self, frame: str, epoch: str) -> Outcome:
        """Bootstrap; a failure caused by the frame's data parks the frame (it would fail again)."""
        try:
            self.bootstrap(frame)
            return Outcome("bootstrapped", frame, epoch)
        except BootstrapRaced:  # another worker won: the caller processes the event again
            raise
        except Exception as exc:  # noqa: BLE001 - sorted: infrastructure re-raised, the data's fault parks the frame
            if is_infrastructure(exc):
                raise
            log.error("frame %s: the bootstrap failed on its data", frame, exc_info=True)
            raise self._park(frame, epoch, "bootstrap", f"{type(exc).__name__}: {exc}"[:300]) from None

    def _park(self, frame: str, epoch: str, reason: str, detail: str) -> EventError:
        self.store.mark_failed(frame, {"reason": reason, "detail": detail, "epoch": epoch, "at": now_iso()})
        self.metrics.bootstrap_failed(frame)
        self._buffering.discard(frame)
        self._track()
        return EventError("frame_failed", f"frame {frame} is parked ({reason}: {detail}); fix the data, run `ladsdin frames reset {frame}`, "
                          "then replay its events from the DLQ")

    def _track(self) -> None:
        self.metrics.frames_tracked(len(self._buffering - self._scoring), len(self._scoring))

    def bootstrap(self, frame: str) -> LoadedModel:
        """Train a frame's model on its buffered epochs, tile by tile, and save model, state and cursor."""
        loaded, facts = bootstrap_from_buffer(self.store, frame, self.cfg, self.device)
        log.info("frame %s: bootstrapped on %d epochs (%s..%s), %d pixels in %d tile(s), in %.1f s", frame, facts["epochs"],
                 facts["first"], facts["last"], facts["pixels"], facts["tiles"], facts["seconds"])
        self._buffering.discard(frame)
        self._cache(frame, loaded)
        self.metrics.bootstrapped(frame, facts["seconds"])
        self._track()
        return loaded
