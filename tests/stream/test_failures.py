"""Nothing an event carries stops the worker (issue 11): bounds at the boundary, checked before any
allocation; transient data failures retried; deep content errors to the DLQ; a frame whose
bootstrap fails on its data parked; infrastructure failures still raise for a restart."""
from __future__ import annotations

import copy
import json
import threading
import time
import tracemalloc
from pathlib import Path

import h5netcdf
import numpy as np
import pytest
import torch

from ladsdin.ingest.cube import epoch_events
from ladsdin.models.simulation import simulate
from ladsdin.state import MemoryStateStore, StoreUnavailable
from ladsdin.stream import objects
from ladsdin.stream.events import encode_event
from ladsdin.stream.processor import EpochProcessor
from ladsdin.stream.settings import Settings

CPU = torch.device("cpu")
HISTORY = 24


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    cube, _ = simulate("menyuan", "A", n_lat=20, n_lon=24, n_epochs=30, seed=5)
    root = tmp_path_factory.mktemp("failures") / "data"
    events = [ev for _, _, ev in epoch_events(cube, root)]
    return cube, root, events


def _processor(root: Path, store=None, **kw) -> EpochProcessor:
    s = Settings(**{"data_root": root, "min_history_epochs": HISTORY, "seismic_area_km2": 20.0, "data_retry_backoff_s": 0.05, **kw})
    return EpochProcessor(store or MemoryStateStore(), s, CPU)


def _bootstrapped(frame) -> tuple[EpochProcessor, list[dict]]:
    _, root, events = frame
    proc = _processor(root)
    outs = [proc.process(encode_event(e)) for e in events[:HISTORY]]
    assert outs[-1].status == "bootstrapped"
    return proc, events[HISTORY:]


def _dump(store: MemoryStateStore) -> str:
    """Everything the store holds, as text (a changed key changes it)."""
    with store._lock:
        return repr(sorted((k, repr(v)) for k, v in store._frames.items()))


def _reasons(out) -> tuple[str, str]:
    rec = json.loads(out.messages[0].value)
    return rec["reason"], rec["detail"]


@pytest.mark.parametrize("epoch", ["9999-12-31", "0001-01-01", "2014-04-02", "2099-01-01"])
def test_dates_outside_the_sentinel_1_era_are_rejected_and_allocate_nothing(frame, epoch):
    proc, later = _bootstrapped(frame)
    ev = dict(later[0], epoch=epoch, event_id=f"{later[0]['frame']}:{epoch}:{later[0]['event_id'][-12:]}")
    before = _dump(proc.store)
    tracemalloc.start()
    out = proc.process(encode_event(ev))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.status == "rejected" and out.reason == "out_of_range", out
    assert "Sentinel-1 era" in _reasons(out)[1]
    assert peak < 2 << 20  # memory flat: no calendar, no gap steps allocated
    assert _dump(proc.store) == before


@pytest.mark.parametrize("change,needle", [
    ({"n_lat": 40_000, "n_lon": 40_000}, "LADSDIN_MAX_FRAME_PIXELS"),
    ({"dlat": -1e-9}, "spacing"),
    ({"dlon": 5.0}, "spacing"),
    ({"lat0": 89.99, "dlat": 0.01}, "outside -90..90"),
    ({"lon0": 359.9, "dlon": 0.1}, "outside -180..360"),
])
def test_grids_off_the_earth_or_too_large_are_rejected_before_allocation(frame, change, needle):
    _, root, events = frame
    proc = _processor(root)
    ev = copy.deepcopy(events[0])
    ev["grid"].update(change)
    tracemalloc.start()
    out = proc.process(encode_event(ev))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.reason == "out_of_range" and needle in _reasons(out)[1], _reasons(out)
    assert peak < 2 << 20
    assert proc.store.frames() == []


def test_a_declared_huge_data_object_is_rejected_before_its_values_are_read(frame, tmp_path):
    cube, root, events = frame
    path = root / cube.attrs["frame"] / "huge.nc"
    with h5netcdf.File(path, "w") as f:  # 1.6 GB declared, a few KB on disk: no chunk is written
        f.dimensions = {"lat": 20_000, "lon": 20_000}
        f.create_variable("displacement", ("lat", "lon"), "f4", chunks=(1000, 1000)).attrs["units"] = "mm"
    assert path.stat().st_size < 64 * 1024
    ev = copy.deepcopy(events[0])
    ev["data"].update(uri=path.as_uri(), sha256=objects.object_sha256(path))
    proc = _processor(root)
    tracemalloc.start()
    out = proc.process(encode_event(ev))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.reason == "grid_mismatch" and "declared (20000, 20000)" in _reasons(out)[1], _reasons(out)
    assert peak < 64 << 20


def test_a_zarr_store_may_not_link_outside_itself(frame, tmp_path):
    import xarray as xr

    cube, root, events = frame
    store = root / cube.attrs["frame"] / "linked.zarr"
    d = cube["displacement"][0]
    xr.Dataset({"displacement": d.drop_vars("time", errors="ignore")}).to_zarr(store, consolidated=False)
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    (store / "secret").symlink_to(secret)
    ev = copy.deepcopy(events[0])
    ev["data"].update(uri=store.as_uri(), sha256=objects.object_sha256(store), format="zarr")
    out = _processor(root).process(encode_event(ev))
    assert out.reason == "uri_disallowed" and "outside the store" in _reasons(out)[1], _reasons(out)


def test_a_data_file_missing_for_a_moment_is_retried_then_used(frame):
    _, root, events = frame
    ev = events[0]
    path = Path(ev["data"]["uri"].removeprefix("file://"))
    hidden = path.with_suffix(".later")
    path.rename(hidden)
    threading.Timer(0.2, hidden.rename, args=(path,)).start()  # the copy lands 0.2 s late
    proc = _processor(root, data_retries=4)
    t0 = time.monotonic()
    out = proc.process(encode_event(ev))
    assert out.status == "buffered", out
    assert time.monotonic() - t0 >= 0.2
    assert proc.store.buffered_epoch_names(ev["frame"]) == [ev["epoch"]]


def test_a_scored_epochs_data_file_missing_for_a_moment_is_retried_then_scored(frame):
    proc, later = _bootstrapped(frame)
    ev = later[0]
    path = Path(ev["data"]["uri"].removeprefix("file://"))
    hidden = path.with_suffix(".later")
    path.rename(hidden)
    threading.Timer(0.2, hidden.rename, args=(path,)).start()
    out = proc.process(encode_event(ev))
    assert out.status == "scored", out  # retried (data_retries 3, from 0.5 s), not sent to the DLQ
    assert proc.store.get_state(ev["frame"])[1] == ev["epoch"]


def test_a_data_file_that_never_comes_is_given_up_after_the_retries(frame):
    _, root, events = frame
    ev = copy.deepcopy(events[0])
    ev["data"]["uri"] = ev["data"]["uri"].replace(".nc", "-never.nc")
    t0 = time.monotonic()
    out = _processor(root, data_retries=2).process(encode_event(ev))
    assert out.reason == "uri_missing"
    assert time.monotonic() - t0 >= 0.05 + 0.1  # two waits, doubling


def test_a_permission_error_is_permanent_not_a_crash(frame, monkeypatch):
    _, root, events = frame

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    out = _processor(root, data_retries=3).process(encode_event(events[0]))
    assert out.reason == "unreadable_data" and "permission denied" in _reasons(out)[1]


def test_an_error_deep_inside_scoring_goes_to_the_dlq_and_changes_nothing(frame, monkeypatch):
    proc, later = _bootstrapped(frame)
    before = _dump(proc.store)

    def broken(*a, **k):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("ladsdin.stream.processor.score_epoch", broken)
    out = proc.process(encode_event(later[0]))
    assert out.reason == "processing_error" and "ValueError: operands" in _reasons(out)[1]
    assert _dump(proc.store) == before  # the unfinished state version was discarded
    monkeypatch.undo()
    assert proc.process(encode_event(later[0])).status == "scored"  # the same event, once the cause is gone


def test_an_infrastructure_failure_still_raises_for_a_restart(frame, monkeypatch):
    proc, later = _bootstrapped(frame)

    def down(*a, **k):
        raise StoreUnavailable("Redis at redis://x is unavailable during get_state")

    monkeypatch.setattr(proc.store, "get_state", down)
    with pytest.raises(StoreUnavailable):
        proc.process(encode_event(later[0]))


def test_a_frame_whose_bootstrap_fails_on_its_data_is_parked_then_reset(frame, monkeypatch):
    _, root, events = frame
    proc = _processor(root)

    def no_pixels(*a, **k):
        raise ValueError("no pixel of the frame is coherent enough to model")

    monkeypatch.setattr("ladsdin.stream.processor.bootstrap_from_buffer", no_pixels)
    outs = [proc.process(encode_event(e)) for e in events[:HISTORY + 2]]
    assert [o.status for o in outs[:HISTORY - 1]] == ["buffered"] * (HISTORY - 1)
    assert [o.reason for o in outs[HISTORY - 1:]] == ["frame_failed"] * 3  # the trigger, then parked
    parked = proc.store.failed(events[0]["frame"])
    assert parked["reason"] == "bootstrap" and "coherent" in parked["detail"]
    assert "ladsdin frames reset" in _reasons(outs[-1])[1]
    assert len(proc.store.buffered_epoch_names(events[0]["frame"])) == HISTORY  # the buffer is kept, not grown
    monkeypatch.undo()
    proc.store.clear_failed(events[0]["frame"])  # what `ladsdin frames reset` does
    assert proc.process(encode_event(events[HISTORY])).status == "bootstrapped"


def test_the_pre_bootstrap_buffer_is_capped(frame):
    _, root, events = frame
    store = MemoryStateStore()
    # a deployment that needed 100 epochs of history left 20 buffered; this one caps the buffer at 15
    first = _processor(root, store, min_history_epochs=100, max_buffer_epochs=100)
    assert {first.process(encode_event(e)).status for e in events[:20]} == {"buffered"}
    out = _processor(root, store, min_history_epochs=15, max_buffer_epochs=15).process(encode_event(events[20]))
    assert out.reason == "frame_failed" and "LADSDIN_MAX_BUFFER_EPOCHS=15" in _reasons(out)[1]
    assert store.failed(events[0]["frame"])["reason"] == "buffer_full"
    assert len(store.buffered_epoch_names(events[0]["frame"])) == 20


def test_the_buffer_cap_cannot_be_below_the_history():
    with pytest.raises(ValueError, match="LADSDIN_MAX_BUFFER_EPOCHS"):
        Settings(min_history_epochs=40, max_buffer_epochs=30)
