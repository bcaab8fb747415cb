"""Fenced bootstraps on a real Valkey: two processors that both believe they own a frame (a
rebalance) race to bootstrap it. The loser's writes are refused, no epoch is lost or applied
twice, and the stored model is the one the stored state was made with."""
from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator

import pytest
import torch

from ladsdin.ingest.cube import epoch_events
from ladsdin.models.simulation import simulate
from ladsdin.state.frame_model import decode_state_manifest
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.embedded import EmbeddedRedis
from ladsdin.stream.events import encode_event
from ladsdin.stream.processor import EpochProcessor, detect_config
from ladsdin.stream.settings import Settings

CPU = torch.device("cpu")
HISTORY = 40


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    cube, truth = simulate("menyuan", "D", n_lat=64, n_lon=64, n_epochs=80, seed=4, event_index=70)
    root = tmp_path_factory.mktemp("fencing") / "data"
    events = [encode_event(ev) for _, _, ev in epoch_events(cube, root)]
    return cube, truth, root, events


@pytest.fixture(scope="module")
def valkey() -> Iterator[str]:
    with EmbeddedRedis() as srv:
        yield srv.url


class Paused:
    """The store as one worker sees it, held just before its bootstrap commit until released
    (the other worker runs meanwhile)."""

    def __init__(self, store: RedisStateStore) -> None:
        self._store = store
        self.reached, self.go = threading.Event(), threading.Event()

    def commit_bootstrap(self, *a, **k):
        self.reached.set()
        assert self.go.wait(120), "never released"
        return self._store.commit_bootstrap(*a, **k)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _processors(frame, url: str):
    _, _, root, _ = frame
    store = RedisStateStore(url)
    store.client.flushdb()
    s = Settings(data_root=root, min_history_epochs=HISTORY, seismic_area_km2=40.0, state_tile=16)
    cfg = detect_config(s)
    paused = Paused(store)
    # the two workers' fits differ in their seeds, so their weights (and model versions) differ
    a = EpochProcessor(paused, s, CPU, cfg=dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=1)))
    b = EpochProcessor(store, s, CPU, cfg=cfg)
    return store, paused, a, b, s


def _check(store: RedisStateStore, frame, outs, s: Settings) -> None:
    cube, truth, _, _ = frame
    name = cube.attrs["frame"]
    epochs = [str(t)[:10] for t in cube.time.values]
    log = store.applied_log(name)
    assert sum(1 for r in log if r.get("bootstrap")) == 1  # one bootstrap stands
    scored = [r["epoch"] for r in log if not r.get("bootstrap")]
    boot = next(r for r in log if r.get("bootstrap"))
    assert scored == epochs[epochs.index(boot["epoch"]) + 1 :]  # every later epoch once, in order: none lost or doubled
    state, cursor = store.get_state(name)
    assert cursor == epochs[-1]
    assert decode_state_manifest(state)["model"] == store.model_version(name)  # the state belongs to the stored model
    assert "/w" in store.model_version(name)  # the version carries the weights' hash
    alerts = {json.loads(m.value)["properties"]["epoch"] for o in outs for m in o.messages if m.topic == s.alerts_topic}
    assert alerts == {truth.attrs["first_post_event"]}
    assert not store.buffered_epoch_names(name)


def test_the_second_of_two_racing_bootstraps_is_refused_and_nothing_is_lost(frame, valkey):
    _, _, _, events = frame
    store, paused, a, b, s = _processors(frame, valkey)
    for raw in events[: HISTORY - 1]:
        assert a.process(raw).status == "buffered"
    # a trains on the history; before its commit, the partition moves to b, which gets the same
    # event again (a had not committed the offset), bootstraps, and scores on
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", a.process(events[HISTORY - 1])))
    t.start()
    assert paused.reached.wait(300)
    outs = [b.process(raw) for raw in events[HISTORY - 1 : HISTORY + 5]]
    assert [o.status for o in outs] == ["bootstrapped"] + ["scored"] * 5
    winner = store.model_version(frame[0].attrs["frame"])
    paused.go.set()
    t.join(300)
    assert got["a"].status == "duplicate"  # refused, then seen for what it is: an epoch of b's history
    assert store.model_version(frame[0].attrs["frame"]) == winner  # a's model never replaced b's
    # the zombie a still holds some later events, and b the rest: each is applied once
    for i, raw in enumerate(events[HISTORY + 5 :]):
        first, second = (a, b) if i % 2 else (b, a)
        outs.append(first.process(raw))
        assert second.process(raw).status == "duplicate"
    _check(store, frame, outs, s)


def test_an_epoch_buffered_during_a_bootstrap_is_not_lost(frame, valkey):
    _, _, _, events = frame
    store, paused, a, b, s = _processors(frame, valkey)
    for raw in events[: HISTORY - 1]:
        a.process(raw)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", a.process(events[HISTORY - 1])))
    t.start()
    assert paused.reached.wait(300)
    # b takes the next epoch while a trains: b buffers it and bootstraps on one epoch more
    assert b.process(events[HISTORY]).status == "bootstrapped"
    paused.go.set()
    t.join(300)
    assert got["a"].status == "duplicate"  # a's bootstrap on fewer epochs was refused
    outs = [b.process(raw) for raw in events[HISTORY + 1 :]]
    assert all(o.status == "scored" for o in outs)
    _check(store, frame, outs, s)
    assert next(r for r in store.applied_log(frame[0].attrs["frame"]) if r.get("bootstrap"))["n_epochs"] == HISTORY + 1
