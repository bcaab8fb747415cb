"""The stream on tiled state, in process (memory store): tiling changes nothing, LADSDIN_DOWNSAMPLE
works as ``detect --downsample``, buffered epochs are stored in tiles, and a crash inside the
bootstrap loses no epoch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ladsdin.ingest.cube import epoch_events
from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.simulation import simulate
from ladsdin.models.thresholds import seismic_pixel_count
from ladsdin.state import MemoryStateStore
from ladsdin.stream.events import encode_event
from ladsdin.stream.processor import EpochProcessor
from ladsdin.stream.settings import Settings

CPU = torch.device("cpu")
AREA = 40.0


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    cube, truth = simulate("menyuan", "A", n_lat=96, n_lon=100, n_epochs=86, seed=3)
    root = tmp_path_factory.mktemp("frames") / "data"
    events = [encode_event(ev) for _, _, ev in epoch_events(cube, root)]
    return cube, truth, root, events


def _run(frame, store=None, **settings):
    cube, _, root, events = frame
    history = int(round(0.85 * cube.sizes["time"]))
    s = Settings(data_root=root, min_history_epochs=history, seismic_area_km2=AREA, **settings)
    proc = EpochProcessor(store or MemoryStateStore(), s, CPU)
    outs = [proc.process(raw) for raw in events]
    alerts = [json.loads(m.value) for o in outs for m in o.messages if m.topic == s.alerts_topic]
    summaries = [json.loads(m.value) for o in outs for m in o.messages if m.topic == s.summaries_topic]
    return proc, outs, alerts, summaries


def test_tiling_changes_no_alert_and_no_count(frame):
    _, truth, _, _ = frame
    _, outs1, alerts1, sums1 = _run(frame, state_tile=512)
    proc, outs2, alerts2, sums2 = _run(frame, state_tile=16)
    assert [o.status for o in outs1] == [o.status for o in outs2]
    assert {a["properties"]["epoch"] for a in alerts1} == {truth.attrs["first_post_event"]}
    strip = lambda fs: [(f["id"], f["geometry"], f["properties"]["n_pixels"], f["properties"]["los_min_mm"]) for f in fs]  # noqa: E731
    assert strip(alerts1) == strip(alerts2)
    assert [(s["epoch"], s["c_k"], s["common_mode_mm"]) for s in sums1] == [(s["epoch"], s["c_k"], s["common_mode_mm"]) for s in sums2]
    model = next(iter(proc._models.values())).model
    assert model.tiling.n_tiles == 6 * 7  # 96 x 100 pixels in 16-pixel tiles


def test_downsample_models_every_t_th_pixel_like_detect(frame):
    cube, truth, _, _ = frame
    proc, outs, alerts, sums = _run(frame, downsample=2, state_tile=20)
    loaded = next(iter(proc._models.values()))
    assert loaded.downsample == 2 and loaded.model.tiling.shape == (48, 50)
    assert np.allclose(loaded.model.grid.lat, cube["lat"].values[::2])
    want_na = seismic_pixel_count(AREA, loaded.model.pixel_area_km2, 2)  # eq. 5 with t = 2
    assert loaded.model.params.n_a == want_na and all(s["n_a"] == want_na for s in sums)
    assert {a["properties"]["epoch"] for a in alerts} == {truth.attrs["first_post_event"]}
    n_obs = cube.sizes["time"]
    batch = detect_cube(cube, DetectConfig(seismic_area_km2=AREA, downsample=2, train_fraction=int(round(0.85 * n_obs)) / n_obs), CPU)
    assert batch.alert_epochs() == [truth.attrs["first_post_event"]] and batch.n_a == want_na


def test_buffered_epochs_are_stored_in_tiles(frame):
    cube, _, _, events = frame
    store = MemoryStateStore()
    s = Settings(data_root=frame[2], min_history_epochs=1000, max_buffer_epochs=1000, seismic_area_km2=AREA, state_tile=32)
    proc = EpochProcessor(store, s, CPU)
    for raw in events[:3]:
        assert proc.process(raw).status == "buffered"
    name = cube.attrs["frame"]
    epoch = store.buffered_epoch_names(name)[0]
    tiles = store._frames[name].buffer_tiles[epoch]
    assert len(tiles) == 3 * 4  # 96 x 100 pixels in 32-pixel tiles
    assert max(len(t) for t in tiles) <= 32 * 32 * 4 + 1024  # one tile of float32 and a small header
    assert len(store.buffered_epoch(name, epoch)) < 2048  # the epoch's own blob holds no data


def test_a_crash_inside_the_bootstrap_loses_no_epoch(frame, monkeypatch):
    cube, truth, _, events = frame
    store = MemoryStateStore()
    history = int(round(0.85 * cube.sizes["time"]))
    s = Settings(data_root=frame[2], min_history_epochs=history, seismic_area_km2=AREA, state_tile=32)
    proc = EpochProcessor(store, s, CPU)
    for raw in events[: history - 1]:
        proc.process(raw)
    real = store.commit_bootstrap

    def down(*a, **k):
        raise ConnectionError("Redis went away")  # an infrastructure failure: the worker exits for a restart

    monkeypatch.setattr(store, "commit_bootstrap", down)
    with pytest.raises(ConnectionError):
        proc.process(events[history - 1])
    monkeypatch.setattr(store, "commit_bootstrap", real)
    restarted = EpochProcessor(store, s, CPU)  # the event is delivered again to a new worker
    assert restarted.process(events[history - 1]).status == "bootstrapped"
    outs = [restarted.process(raw) for raw in events[history:]]
    assert all(o.status == "scored" for o in outs)
    assert [r["epoch"] for r in store.applied_log(cube.attrs["frame"])][1:] == [o.epoch for o in outs]
    assert store.buffered_epoch_names(cube.attrs["frame"]) == []


def test_the_model_cache_is_bounded_and_reloads_from_the_store(frame):
    cube, _, root, events = frame
    proc, outs, _, _ = _run(frame, state_tile=32)
    loaded = next(iter(proc._models.values()))
    assert 40 * loaded.model.n_pixels <= loaded.nbytes < (1 << 20) / 2  # ~40 bytes per modelled pixel: two fit in 1 MB
    small = EpochProcessor(proc.store, Settings(data_root=root, seismic_area_km2=AREA, model_cache_mb=1), CPU)
    small._cache("frame_a", loaded)
    small._cache("frame_b", loaded)
    assert list(small._models) == ["frame_a", "frame_b"]
    again = small._model(cube.attrs["frame"])  # not cached here: loaded from the store; the least recently used goes
    assert again is not None and again.version == loaded.version
    assert list(small._models) == ["frame_b", cube.attrs["frame"]]
    assert small._scoring == {"frame_a", "frame_b", cube.attrs["frame"]}


def test_a_frame_stored_in_an_older_format_starts_over_instead_of_crash_looping(frame):
    cube, _, root, events = frame
    store = MemoryStateStore()
    store.put_model(cube.attrs["frame"], b"not a model this version reads", version="ladsdin-0", config_hash="x")
    s = Settings(data_root=root, min_history_epochs=1000, max_buffer_epochs=1000, seismic_area_km2=AREA)
    out = EpochProcessor(store, s, CPU).process(events[0])
    assert out.status == "buffered" and store.model_version(cube.attrs["frame"]) is None
