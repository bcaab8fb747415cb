"""The streaming detector end to end: a real Kafka-protocol broker (tansu) and a real Redis-protocol
server (Valkey), both started here; the worker runs as a separate process, as in production."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

from ladsdin.models.batch import DetectConfig, detect_cube
from ladsdin.models.simulation import simulate
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.ingest.cube import publish_cube
from ladsdin.stream.settings import Settings

from tests.e2e import e2e_settings, read_json, settings_env, start_worker, stop_process, wait_summaries

pytestmark = pytest.mark.slow


def _pixels(features: list[dict], lat: np.ndarray, lon: np.ndarray) -> set[tuple[str, int]]:
    """Rasterise alert polygons on the grid: {(epoch, flat pixel index)}."""
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    out: set[tuple[str, int]] = set()
    for f in features:
        ring = np.array(f["geometry"]["coordinates"][0])
        inside = MplPath(ring).contains_points(pts)
        out |= {(f["properties"]["epoch"], int(i)) for i in np.flatnonzero(inside)}
    return out


def test_stream_matches_detect(services, tmp_path):
    bootstrap, redis_url = services
    cube, truth = simulate("menyuan", "A", n_lat=120, n_lon=120, n_epochs=90, seed=3)
    n_obs = cube.sizes["time"]
    history = int(round(0.85 * n_obs))
    batch = detect_cube(cube, DetectConfig(seismic_area_km2=40.0), torch.device("cpu"))
    assert batch.alert_epochs() == [truth.attrs["first_post_event"]]

    s = e2e_settings(tmp_path, bootstrap, redis_url, history, "parity")
    log = tmp_path / "worker.log"
    proc = start_worker(s, log)
    try:
        publish_cube(cube, s, bootstrap)
        summaries = wait_summaries(bootstrap, s, cube.attrs["frame"], n_obs - history, proc, log)
    finally:
        stop_process(proc)
    alerts = [f for _, f in read_json(bootstrap, s.alerts_topic) if f["properties"]["frame"] == cube.attrs["frame"]]
    assert sorted({f["properties"]["epoch"] for f in alerts}) == batch.alert_epochs()
    assert sorted(r["epoch"] for r in summaries if r["n_seismic_objects"]) == batch.alert_epochs()
    lat, lon = cube["lat"].values, cube["lon"].values
    a, b = _pixels(batch.features(), lat, lon), _pixels(alerts, lat, lon)
    overlap = len(a & b) / max(len(a | b), 1)
    assert overlap >= 0.95, f"alerted-pixel overlap {overlap:.3f}"
    store = RedisStateStore(redis_url)
    _, cursor = store.get_state(cube.attrs["frame"])
    assert cursor == str(cube.time.values[-1])[:10]
    # the documented downstream consumer (`ladsdin alerts`) sees the same alerts, once each
    from ladsdin.cli.alerts import read_alerts

    got = list(read_alerts(bootstrap, s.alerts_topic, idle_s=2.0, frame=cube.attrs["frame"]))
    assert sorted(f["properties"]["id"] for f in got) == sorted({f["properties"]["id"] for f in alerts})
    assert not list(read_alerts(bootstrap, s.alerts_topic, idle_s=2.0, frame=cube.attrs["frame"], min_area_km2=1e9))


def _crash_frame(frame: str):
    cube, truth = simulate("menyuan", "D", n_lat=64, n_lon=64, n_epochs=80, seed=4, event_index=70)
    cube.attrs["frame"] = frame
    return cube, truth


def _assert_every_epoch_once(store: RedisStateStore, bootstrap: str, s: Settings, cube, truth, history: int, summaries: list[dict]) -> None:
    frame = cube.attrs["frame"]
    applied = [r["epoch"] for r in store.applied_log(frame) if not r.get("bootstrap")]
    expected = [str(t)[:10] for t in cube.time.values[history:]]
    assert applied == expected  # every epoch once, in order
    _, cursor = store.get_state(frame)
    assert cursor == expected[-1]
    assert not store.pending_outbox(frame)
    alerts = [f for _, f in read_json(bootstrap, s.alerts_topic) if f["properties"]["frame"] == frame]
    ids = [f["properties"]["id"] for f in alerts]
    assert ids, "the simulated earthquake was not alerted"
    assert {f["properties"]["epoch"] for f in alerts} == {truth.attrs["first_post_event"]}
    recorded = [a for r in store.applied_log(frame) for a in r.get("alerts", [])]
    assert sorted(set(ids)) == sorted(recorded)  # after de-duplication, exactly the applied alerts
    assert len({r["epoch"] for r in summaries}) == len(expected)
    # only the committed state version's tiles are left: crashed writers' tiles were collected
    r = store.client
    tiles = {k.decode().split(":")[-2] for k in r.scan_iter(match=f"ladsdin:{{{frame}}}:state:tile:*")}
    assert len(tiles) == 1 and r.get(store.key(frame, "state:version")).decode() in tiles
    assert not list(r.scan_iter(match=f"ladsdin:{{{frame}}}:buffer*"))


def test_kill_9_mid_replay_applies_every_epoch_once(services, tmp_path):
    bootstrap, redis_url = services
    cube, truth = _crash_frame("026D_05217_131314")
    n_obs = cube.sizes["time"]
    history = 40
    n_scored = n_obs - history
    assert n_scored >= 30
    s = e2e_settings(tmp_path, bootstrap, redis_url, history, "crash", state_tile=16)  # 16 tiles
    log = tmp_path / "worker.log"
    proc = start_worker(s, log)
    # paced replay, so the kill lands in the middle of it; events keep arriving while it is down
    publisher = threading.Thread(target=publish_cube, args=(cube, s, bootstrap), kwargs={"rate": 4.0}, daemon=True)
    store = RedisStateStore(redis_url)
    try:
        publisher.start()
        # let it bootstrap and score some epochs, then kill -9 in the middle of the replay
        deadline = time.monotonic() + 180
        n_done = 0
        while time.monotonic() < deadline:
            n_done = sum(1 for r in store.applied_log(cube.attrs["frame"]) if not r.get("bootstrap"))
            if n_done >= 8:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        stop_process(proc, signal.SIGKILL)
        assert n_done < n_scored, "the worker finished before it could be killed"
        proc = start_worker(s, log)
        publisher.join(120)
        summaries = wait_summaries(bootstrap, s, cube.attrs["frame"], n_scored, proc, log)
    finally:
        stop_process(proc)
    _assert_every_epoch_once(store, bootstrap, s, cube, truth, history, summaries)


@pytest.mark.parametrize("where,after", [("bootstrap", 7), ("scoring", 16 + 3 * 16 + 7)])
def test_a_kill_between_tile_writes_loses_and_doubles_nothing(services, tmp_path, where, after):
    """The worker dies right after its ``after``-th state tile write: inside the bootstrap, or in
    the 4th scored epoch with 7 of its 16 tiles written; a restarted worker takes over."""
    bootstrap, redis_url = services
    cube, truth = _crash_frame(f"026D_05217_13132{len(where)}")
    frame, history = cube.attrs["frame"], 40
    s = e2e_settings(tmp_path, bootstrap, redis_url, history, f"tilecrash-{where}", state_tile=16)
    log = tmp_path / "worker.log"
    env = settings_env(s)
    crash = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_worker.py")), str(after)], env=env,
                             stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    store = RedisStateStore(redis_url)
    proc = crash
    try:
        publish_cube(cube, s, bootstrap)
        assert crash.wait(240) == 137, log.read_text()[-3000:]
        state, cursor = store.get_state(frame)
        if where == "scoring":  # the previous epoch is whole: its manifest and every one of its tiles
            from ladsdin.state.frame_model import decode_state_manifest

            version = decode_state_manifest(state)["version"]
            assert cursor == str(cube.time.values[history + 2])[:10]
            assert all(store.get_state_tile(frame, version, i) is not None for i in range(16))
            assert len(list(store.client.scan_iter(match=f"ladsdin:{{{frame}}}:state:tile:*"))) == 16 + 7  # and the orphan's 7
        else:
            assert cursor is None and store.model_version(frame) is None
        proc = start_worker(s, log)
        summaries = wait_summaries(bootstrap, s, frame, cube.sizes["time"] - history, proc, log)
    finally:
        stop_process(proc)
    _assert_every_epoch_once(store, bootstrap, s, cube, truth, history, summaries)


def _bad_events(cube, s: Settings, tmp: Path) -> list[tuple[str, bytes]]:
    """(expected DLQ reason, raw value) for 11 kinds x 20 malformed events against a bootstrapped frame."""
    from ladsdin.stream.events import build_epoch_event, encode_event
    from ladsdin.stream.objects import write_epoch_object

    frame, track = cube.attrs["frame"], cube.attrs["track"]
    lat, lon = cube["lat"].values, cube["lon"].values
    d_last = cube["displacement"].values[-1]
    applied = [str(t)[:10] for t in cube.time.values]
    future = [str(np.datetime64(applied[-1]) + np.timedelta64(12 * (i + 1), "D")) for i in range(20)]
    out: list[tuple[str, bytes]] = []
    for i in range(20):
        ep = future[i]
        good = lambda **kw: build_epoch_event(frame, track, ep, lat, lon, **kw)  # noqa: E731
        uri, sha = write_epoch_object(Path(s.data_root), frame, ep, d_last, lat, lon, track)
        out.append(("invalid_json", b"{not json " + str(i).encode()))
        ev = good(uri=uri, sha256=sha)
        ev["units"] = "m"
        out.append(("schema_violation", encode_event(ev) if False else json.dumps(ev).encode()))
        out.append(("grid_mismatch", encode_event(build_epoch_event(frame, track, ep, lat[:-1], lon, inline=d_last[:-1].astype(np.float32)))))
        out.append(("all_nan", encode_event(good(inline=np.full(d_last.shape, np.nan, np.float32)))))
        # a different map for an already applied epoch
        out.append(("duplicate", encode_event(build_epoch_event(frame, track, applied[-1 - (i % 5)], lat, lon, inline=(d_last + 1 + i).astype(np.float32)))))
        # an epoch of the bootstrap history, older than the cursor and never scored
        out.append(("out_of_order", encode_event(build_epoch_event(frame, track, applied[5 + i], lat, lon, inline=d_last.astype(np.float32)))))
        other = f"999A_0{i:04d}_000000"
        out.append(("unknown_frame", encode_event(build_epoch_event(other, "A", ep, lat, lon, inline=d_last.astype(np.float32)))))
        missing = Path(s.data_root).resolve() / frame / f"missing-{i}.nc"
        out.append(("uri_missing", encode_event(good(uri=missing.as_uri(), sha256="0" * 64))))
        bad_uri = ["file:///etc/passwd", f"file://{Path(s.data_root).resolve()}/../../etc/hosts", "http://example.org/x.nc", "s3://bucket/x.nc", "file://otherhost/data/x.nc"][i % 5]
        out.append(("uri_disallowed", encode_event(good(uri=bad_uri, sha256="0" * 64))))
        out.append(("sha256_mismatch", encode_event(good(uri=uri, sha256=("f" * 63) + str(i % 10)))))
        big = good(uri=uri, sha256=sha)
        big["padding"] = "x" * (s.max_message_bytes + 10)
        out.append(("oversize", json.dumps(big).encode()))
    return out


def test_two_hundred_bad_events_land_in_the_dlq_and_change_no_state(services, tmp_path):
    import redis
    from kafka import KafkaProducer

    bootstrap, redis_url = services
    cube, _ = simulate("null", "A", n_lat=48, n_lon=48, n_epochs=60, seed=6, missing_fraction=0.0)
    cube.attrs["frame"] = "128A_05217_131399"
    s = e2e_settings(tmp_path, bootstrap, redis_url, 45, "badinput").model_copy(update={"frames": (cube.attrs["frame"],), "max_message_bytes": 256 * 1024})
    log = tmp_path / "worker.log"
    proc = start_worker(s, log)
    try:
        publish_cube(cube, s, bootstrap)
        wait_summaries(bootstrap, s, cube.attrs["frame"], cube.sizes["time"] - 45, proc, log)
        r = redis.Redis.from_url(redis_url)
        keys = sorted(k for k in r.scan_iter(match=f"ladsdin:{{{cube.attrs['frame']}}}:*"))
        before = {k: r.dump(k) for k in keys}
        bad = _bad_events(cube, s, tmp_path)
        assert len(bad) >= 200 and len({reason for reason, _ in bad}) == 11
        n_dlq0 = len(read_json(bootstrap, s.dlq_topic))
        producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * s.max_message_bytes)
        for reason, raw in bad:
            producer.send(s.epochs_topic, key=cube.attrs["frame"].encode(), value=raw)
        # exact replays of applied epochs are no-ops: no DLQ record, no state change
        from ladsdin.ingest.cube import epoch_events

        replays = list(epoch_events(cube, Path(s.data_root)))[-3:]
        for frame, _, ev in replays:
            producer.send(s.epochs_topic, key=frame.encode(), value=json.dumps(ev).encode())
        producer.flush()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            dlq = [rec for _, rec in read_json(bootstrap, s.dlq_topic)][n_dlq0:]
            if len(dlq) >= len(bad):
                break
            assert proc.poll() is None, f"the worker died:\n{log.read_text()[-3000:]}"
            time.sleep(1.0)
        time.sleep(2.0)  # the replays come after the bad events: let them pass too
        dlq = [rec for _, rec in read_json(bootstrap, s.dlq_topic)][n_dlq0:]
        assert proc.poll() is None, "the worker must stay up"
        assert [rec["reason"] for rec in dlq] == [reason for reason, _ in bad]
        assert all(rec["source"]["topic"] == s.epochs_topic and rec["detail"] for rec in dlq)
        after = {k: r.dump(k) for k in sorted(r.scan_iter(match=f"ladsdin:{{{cube.attrs['frame']}}}:*"))}
        assert after == before, "a rejected event changed state"
        assert not list(r.scan_iter(match="ladsdin:{999A_*"))
    finally:
        stop_process(proc)
