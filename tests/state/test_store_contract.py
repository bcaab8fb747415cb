"""One contract suite for every StateStore: in memory and on a real Redis-protocol server."""
from __future__ import annotations

import datetime as dt
import itertools
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladsdin.state import OutboxMessage, StateStore, StoreUnavailable
from ladsdin.state.store import FrameBootstrapped, TilesIncomplete
from tests.e2e import dead_port

F = "128A_05172_131313"
G = "005D_05199_131313"
E1, E2, E3 = "2022-01-01", "2022-01-13", "2022-01-25"


def msg(frame: str, epoch: str, n: int, topic: str = "ladsdin.alerts.v1") -> OutboxMessage:
    return OutboxMessage(f"{frame}:{epoch}:alert:{n:03d}", topic, frame, f'{{"epoch":"{epoch}","n":{n}}}'.encode())


def commit(store: StateStore, epoch: str, expected: str | None, frame: str = F, n_msgs: int = 1, **applied) -> bool:
    return store.commit_epoch(
        frame, epoch=epoch, expected_cursor=expected, state=f"state@{epoch}".encode(), outbox=[msg(frame, epoch, i) for i in range(n_msgs)], applied=applied or None
    )


def snapshot(store: StateStore, frame: str = F) -> tuple:
    return store.get_state(frame), store.applied_log(frame), store.pending_outbox(frame)


def test_ping(store):
    store.ping()


def test_model_round_trip_and_replace(store):
    assert store.get_model(F) is None
    blob = bytes(range(256)) * 10
    store.put_model(F, blob, version="v1", config_hash="abc")
    got, meta = store.get_model(F)
    assert got == blob
    assert meta["version"] == "v1" and meta["config_hash"] == "abc"
    saved = dt.datetime.fromisoformat(meta["saved_at"])
    assert saved.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - saved).total_seconds()) < 60
    assert store.model_version(F) == "v1"
    store.put_model(F, b"\x00new", version="v2", config_hash="def")
    got, meta = store.get_model(F)
    assert got == b"\x00new" and (meta["version"], meta["config_hash"]) == ("v2", "def")
    assert store.model_version(F) == "v2"
    assert store.get_model(G) is None and store.model_version(G) is None


def test_first_commit_sets_state_cursor_log_and_outbox_together(store):
    assert store.get_state(F) == (None, None)
    assert store.applied_log(F) == [] and store.pending_outbox(F) == []
    assert commit(store, E1, None, n_msgs=2, c_k=12, seconds=0.5)
    assert store.get_state(F) == (b"state@" + E1.encode(), E1)
    assert store.applied_log(F) == [{"epoch": E1, "c_k": 12, "seconds": 0.5}]
    assert store.pending_outbox(F) == [msg(F, E1, 0), msg(F, E1, 1)]
    assert commit(store, E2, E1)
    assert commit(store, E3, E2, n_msgs=0)
    assert store.get_state(F) == (b"state@" + E3.encode(), E3)
    assert [r["epoch"] for r in store.applied_log(F)] == [E1, E2, E3]


def test_a_stale_expected_cursor_changes_nothing(store):
    assert commit(store, E1, None)
    before = snapshot(store)
    assert not commit(store, E2, None)  # a second writer that read an empty frame
    assert not commit(store, E3, "2021-12-20")  # a writer that read an older cursor
    assert snapshot(store) == before
    assert len(store.pending_outbox(F)) == 1 and len(store.applied_log(F)) == 1


def test_a_replayed_epoch_never_applies_twice(store):
    assert commit(store, E1, None)
    assert commit(store, E2, E1)
    before = snapshot(store)
    assert not commit(store, E2, E1)  # redelivery after the commit: the cursor moved on
    assert not commit(store, E2, E2)  # a confused caller that re-read the cursor: not after it
    assert not commit(store, E1, E2)  # an older epoch
    assert snapshot(store) == before
    assert [r["epoch"] for r in store.applied_log(F)] == [E1, E2]


def test_outbox_keeps_insertion_order_and_acks_are_idempotent(store):
    assert commit(store, E1, None, n_msgs=3)
    assert commit(store, E1, None, frame=G, n_msgs=1)
    assert commit(store, E2, E1, n_msgs=2)
    ids = [m.id for m in store.pending_outbox(F)]
    assert ids == [f"{F}:{E1}:alert:000", f"{F}:{E1}:alert:001", f"{F}:{E1}:alert:002", f"{F}:{E2}:alert:000", f"{F}:{E2}:alert:001"]
    # every frame, frame by frame in sorted order, each in insertion order
    assert [m.id for m in store.pending_outbox()] == [f"{G}:{E1}:alert:000"] + ids
    store.ack_outbox(F, [ids[1], ids[3], "no-such-id"])
    assert [m.id for m in store.pending_outbox(F)] == [ids[0], ids[2], ids[4]]
    store.ack_outbox(F, [ids[1]])
    store.ack_outbox(F, [])
    assert [m.id for m in store.pending_outbox(F)] == [ids[0], ids[2], ids[4]]
    m = store.pending_outbox(F)[0]
    assert (m.topic, m.key, m.value) == ("ladsdin.alerts.v1", F, f'{{"epoch":"{E1}","n":0}}'.encode())
    store.ack_outbox(F, ids)
    assert store.pending_outbox(F) == [] and len(store.pending_outbox()) == 1


def test_a_message_id_already_pending_is_kept_once(store):
    assert commit(store, E1, None, n_msgs=1)
    again = msg(F, E1, 0)
    assert store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"s", outbox=[again, msg(F, E2, 0)])
    assert [m.id for m in store.pending_outbox(F)] == [again.id, msg(F, E2, 0).id]


def test_binary_and_empty_payloads_survive_the_outbox(store):
    value = bytes(range(256)) + b"\x00\r\n"
    m = OutboxMessage("x:1", "ladsdin.epoch-summaries.v1", "", value)
    assert store.commit_epoch(F, epoch=E1, expected_cursor=None, state=b"", outbox=[m, OutboxMessage("x:2", "t", "k", b"")])
    assert store.pending_outbox(F) == [m, OutboxMessage("x:2", "t", "k", b"")]
    assert store.get_state(F) == (b"", E1)


def test_bad_commits_are_refused_before_anything_changes(store):
    assert commit(store, E1, None)
    before = snapshot(store)
    with pytest.raises(ValueError, match="unique"):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"s", outbox=[msg(F, E2, 0), msg(F, E2, 0)])
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.commit_epoch(F, epoch="2022-1-13", expected_cursor=E1, state=b"s", outbox=[])
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.commit_epoch(F, epoch=E2, expected_cursor="yesterday", state=b"s", outbox=[])
    with pytest.raises(TypeError, match="bytes"):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=np.zeros(3), outbox=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'epoch'"):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"s", outbox=[], applied={"epoch": "x"})
    with pytest.raises(ValueError, match="JSON"):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"s", outbox=[], applied={"t": object()})
    assert snapshot(store) == before


def test_buffer_is_idempotent_per_epoch_and_sorted(store):
    assert store.buffer_epoch(F, E3, b"three")
    assert store.buffer_epoch(F, E1, b"one")
    assert not store.buffer_epoch(F, E3, b"other")  # the first copy wins
    assert store.buffer_epoch(F, E2, b"two")
    assert store.buffered_epochs(F) == [(E1, b"one"), (E2, b"two"), (E3, b"three")]
    assert store.buffered_epoch_names(F) == [E1, E2, E3]
    assert store.buffered_epoch(F, E2) == b"two" and store.buffered_epoch(F, "2030-01-01") is None
    assert store.buffered_epochs(G) == [] and store.buffered_epoch_names(G) == []
    store.clear_buffer(F)
    assert store.buffered_epochs(F) == []
    assert store.buffer_epoch(F, E3, b"again")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.buffer_epoch(F, "2022-02-30", b"x")


def test_frames_lists_frames_with_a_model_state_or_buffer(store):
    assert store.frames() == []
    store.put_model("b_model", b"m", version="v", config_hash="h")
    assert commit(store, E1, None, frame="c_state")
    store.buffer_epoch("a_buffer", E1, b"e")
    assert store.frames() == ["a_buffer", "b_model", "c_state"]
    store.clear_buffer("a_buffer")
    assert store.frames() == ["b_model", "c_state"]
    store.delete_frame("c_state")
    assert store.frames() == ["b_model"]
    assert store.get_state("c_state") == (None, None)
    assert store.applied_log("c_state") == [] and store.pending_outbox("c_state") == []
    assert commit(store, E1, None, frame="c_state")  # a deleted frame starts from scratch


def test_keys_carry_the_frame_hash_tag(store):
    assert store.key(F, "state") == "ladsdin:{128A_05172_131313}:state"
    for bad in ["", "a{b}", "x y", "a:b", "../etc", None]:
        with pytest.raises(ValueError, match="frame"):
            store.key(bad, "state")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame"):
        store.put_model("a}b", b"m", version="v", config_hash="h")


def test_large_blobs_round_trip(store):
    big = np.random.default_rng(0).bytes(50 * 2**20)
    store.put_model(F, big, version="v", config_hash="h")
    assert store.get_model(F)[0] == big
    assert store.commit_epoch(F, epoch=E1, expected_cursor=None, state=big, outbox=[])
    state, cursor = store.get_state(F)
    assert cursor == E1 and state == big


def test_racing_writers_exactly_one_wins(store):
    epochs = [(dt.date(2022, 1, 1) + dt.timedelta(days=12 * i)).isoformat() for i in range(15)]
    wins = []
    for prev, epoch in zip([None] + epochs[:-1], epochs):
        barrier = threading.Barrier(2)
        results: dict[int, bool] = {}

        def worker(w: int, epoch: str = epoch, prev: str | None = prev, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            results[w] = store.commit_epoch(F, epoch=epoch, expected_cursor=prev, state=f"{w}".encode(), outbox=[msg(F, epoch, w)], applied={"worker": w})

        threads = [threading.Thread(target=worker, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results.values()) == [False, True], results
        winner = next(w for w, ok in results.items() if ok)
        wins.append(winner)
        assert store.get_state(F) == (f"{winner}".encode(), epoch)
    log = store.applied_log(F)
    assert [r["epoch"] for r in log] == epochs and [r["worker"] for r in log] == wins
    assert [m.id for m in store.pending_outbox(F)] == [msg(F, e, w).id for e, w in zip(epochs, wins)]


_frames = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-1, 5)), max_size=12))
def test_commits_behave_like_a_compare_and_set_register(store, attempts):
    """Any sequence of (epoch, expected cursor) attempts matches a reference CAS register."""
    frame = f"prop{next(_frames)}"  # a fresh frame per example: the store is shared by examples
    day = [(dt.date(2022, 1, 1) + dt.timedelta(days=12 * i)).isoformat() for i in range(6)]
    cursor: str | None = None
    applied: list[str] = []
    for e, x in attempts:
        expected = None if x < 0 else day[x]
        want = expected == cursor and (expected is None or day[e] > expected)
        assert store.commit_epoch(frame, epoch=day[e], expected_cursor=expected, state=day[e].encode(), outbox=[msg(frame, day[e], 0)]) is want
        if want:
            cursor = day[e]
            applied.append(day[e])
    assert store.get_state(frame) == ((cursor.encode(), cursor) if cursor else (None, None))
    assert [r["epoch"] for r in store.applied_log(frame)] == applied
    assert [m.id for m in store.pending_outbox(frame)] == [msg(frame, d, 0).id for d in applied]
    store.delete_frame(frame)


# --- tiled state, model and buffer ---------------------------------------------------------------


def tiled_commit(store: StateStore, epoch: str, expected: str | None, n: int = 3, frame: str = F) -> tuple[bool, str]:
    """Write every tile of a new version, then commit it: (committed, version)."""
    v = store.begin_state(frame, n)
    for i in range(n):
        assert store.put_state_tile(frame, v, i, f"{epoch}/{i}".encode())
    return store.commit_epoch(frame, epoch=epoch, expected_cursor=expected, state=f"manifest@{epoch}".encode(), outbox=[msg(frame, epoch, 0)],
                              tiles=v), v


def tiles_of(store: StateStore, v: str, n: int = 3, frame: str = F) -> list[bytes | None]:
    return [store.get_state_tile(frame, v, i) for i in range(n)]


def test_a_tiled_commit_flips_to_the_new_tiles_and_deletes_the_old(store):
    ok1, v1 = tiled_commit(store, E1, None)
    assert ok1 and store.get_state(F) == (b"manifest@" + E1.encode(), E1)
    assert tiles_of(store, v1) == [f"{E1}/{i}".encode() for i in range(3)]
    ok2, v2 = tiled_commit(store, E2, E1)
    assert ok2 and store.get_state(F) == (b"manifest@" + E2.encode(), E2)
    assert tiles_of(store, v2) == [f"{E2}/{i}".encode() for i in range(3)]
    assert tiles_of(store, v1) == [None] * 3  # the superseded version is gone
    assert [r["epoch"] for r in store.applied_log(F)] == [E1, E2]


@pytest.mark.parametrize("written", [0, 1, 2, 3])
def test_a_crash_between_tile_writes_leaves_the_previous_epoch_whole(store, written):
    ok, v1 = tiled_commit(store, E1, None)
    before = snapshot(store)
    v2 = store.begin_state(F, 3)
    for i in range(written):  # the writer dies after `written` of its 3 tiles, before its commit
        assert store.put_state_tile(F, v2, i, b"half-written")
    assert snapshot(store) == before and tiles_of(store, v1) == [f"{E1}/{i}".encode() for i in range(3)]
    # the restarted worker redoes the epoch under a version of its own; the orphan is collected
    ok3, v3 = tiled_commit(store, E2, E1)
    assert ok3 and store.get_state(F)[1] == E2
    assert tiles_of(store, v2) == [None] * 3 and tiles_of(store, v1) == [None] * 3
    assert [r["epoch"] for r in store.applied_log(F)] == [E1, E2]


def test_a_commit_needs_every_tile_of_its_version(store):
    tiled_commit(store, E1, None)
    before = snapshot(store)
    v = store.begin_state(F, 3)
    store.put_state_tile(F, v, 0, b"x")
    with pytest.raises(TilesIncomplete):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"m", outbox=[], tiles=v)
    assert snapshot(store) == before
    with pytest.raises(ValueError, match="tile version"):
        store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"m", outbox=[], tiles="not-a-version")
    with pytest.raises(ValueError, match="not in 0..2"):
        store.put_state_tile(F, v, 3, b"x")


def test_the_loser_of_a_race_can_neither_write_nor_commit_its_tiles(store):
    tiled_commit(store, E1, None)
    va = store.begin_state(F, 2)  # two workers both took epoch E2
    assert store.put_state_tile(F, va, 0, b"a0")
    ok, vb = tiled_commit(store, E2, E1, n=2)
    assert ok
    assert not store.put_state_tile(F, va, 1, b"a1")  # the winner's commit discarded the loser's version
    assert not store.commit_epoch(F, epoch=E2, expected_cursor=E1, state=b"a", outbox=[], tiles=va)
    assert tiles_of(store, va, 2) == [None, None] and tiles_of(store, vb, 2) == [b"2022-01-13/0", b"2022-01-13/1"]
    assert store.get_state(F) == (b"manifest@" + E2.encode(), E2)


def test_discarding_drops_an_uncommitted_version_only(store):
    ok, v1 = tiled_commit(store, E1, None)
    v2 = store.begin_state(F, 3)
    store.put_state_tile(F, v2, 0, b"x")
    store.discard_state(F, v2)
    store.discard_state(F, v2)  # idempotent
    assert tiles_of(store, v2) == [None] * 3 and not store.put_state_tile(F, v2, 1, b"y")
    store.discard_state(F, v1)  # the committed version stays
    assert tiles_of(store, v1) == [f"{E1}/{i}".encode() for i in range(3)]


def test_model_tiles_round_trip_and_are_replaced(store):
    store.put_model(F, b"manifest1", version="v1", config_hash="h", tiles=[b"t0", b"t1"])
    blob, meta = store.get_model(F)
    t1 = meta["tiles"]
    assert blob == b"manifest1" and [store.get_model_tile(F, t1, i) for i in range(2)] == [b"t0", b"t1"]
    store.put_model(F, b"manifest2", version="v2", config_hash="h", tiles=[b"u0", b"u1", b"u2"])
    blob, meta = store.get_model(F)
    assert blob == b"manifest2" and store.model_version(F) == "v2"
    assert [store.get_model_tile(F, meta["tiles"], i) for i in range(3)] == [b"u0", b"u1", b"u2"]
    assert [store.get_model_tile(F, t1, i) for i in range(2)] == [None, None]  # the old model's tiles are gone
    store.put_model(F, b"untiled", version="v3", config_hash="h")
    assert store.get_model(F)[1]["tiles"] == ""


def test_buffered_tiles_round_trip_and_clear(store):
    assert store.buffer_epoch(F, E1, b"head1", tiles=[b"a", b"b"])
    assert not store.buffer_epoch(F, E1, b"other", tiles=[b"x", b"y"])  # the first copy wins, tiles too
    assert store.buffered_epochs(F) == [(E1, b"head1")]
    assert [store.buffered_epoch_tile(F, E1, i) for i in range(2)] == [b"a", b"b"]
    assert store.buffered_epoch_tile(F, E2, 0) is None
    store.clear_buffer(F)
    assert store.buffered_epochs(F) == [] and store.buffered_epoch_tile(F, E1, 0) is None


# --- Redis only: what is actually on the server, and failures of the server -------------------


@pytest.fixture
def redis_store(redis_url):
    from ladsdin.state import RedisStateStore

    s = RedisStateStore(redis_url)
    s.client.flushdb()
    yield s
    s.close()


def test_redis_keys_share_one_slot_and_hold_raw_bytes(redis_store):
    from redis.crc import key_slot

    r = redis_store.client
    state = b"\x00\xffraw"
    redis_store.buffer_epoch(F, E2, b"event")  # before the first commit: a bootstrapped frame buffers nothing
    redis_store.put_model(F, b"\x01model", version="v", config_hash="h")
    assert redis_store.commit_epoch(F, epoch=E1, expected_cursor=None, state=state, outbox=[msg(F, E1, 0)], applied={"c_k": 1})
    keys = sorted(k.decode() for k in r.scan_iter(count=1000))
    prefix = "ladsdin:{128A_05172_131313}:"
    assert keys == ["ladsdin:frames"] + sorted(prefix + n for n in ["applied", "buffer", "cursor", "model", "outbox", "outbox:messages", "state",
                                                                     "state:version"])
    assert len({key_slot(k.encode()) for k in keys if k.startswith(prefix)}) == 1
    assert r.get(prefix + "state") == state  # stored as is: no base64, no JSON
    assert r.hget(prefix + "model", "blob") == b"\x01model"
    assert r.get(prefix + "cursor") == E1.encode()
    assert r.smembers("ladsdin:frames") == {F.encode()}


def test_redis_commit_checks_key_types_before_writing(redis_store):
    from redis.exceptions import ResponseError

    assert commit(redis_store, E1, None)
    redis_store.client.set(redis_store.key(F, "applied"), b"not a list")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        commit(redis_store, E2, E1)
    assert redis_store.get_state(F) == (b"state@" + E1.encode(), E1)
    assert [m.id for m in redis_store.pending_outbox(F)] == [msg(F, E1, 0).id]


def test_redis_store_accepts_a_client_but_not_a_decoding_one(redis_url):
    import redis

    from ladsdin.state import RedisStateStore

    s = RedisStateStore(redis.Redis.from_url(redis_url))
    s.ping()
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStateStore(redis.Redis.from_url(redis_url, decode_responses=True))


def test_redis_down_raises_store_unavailable_naming_the_url():
    from ladsdin.state import RedisStateStore

    port = dead_port()
    s = RedisStateStore(f"redis://:hunter2@127.0.0.1:{port}/0", connect_timeout=1.0)
    with pytest.raises(StoreUnavailable, match=rf"127\.0\.0\.1:{port}.*check that the server is running") as info:
        s.ping()
    assert "hunter2" not in str(info.value)
    with pytest.raises(StoreUnavailable):
        s.get_state(F)
    with pytest.raises(StoreUnavailable):
        commit(s, E1, None)
    assert not isinstance(info.value, ValueError)  # infrastructure, not bad input


def test_redis_out_of_memory_is_an_infrastructure_failure_and_changes_nothing(redis_store):
    r = redis_store.client
    assert commit(redis_store, E1, None)
    before = snapshot(redis_store)
    r.config_set("maxmemory-policy", "noeviction")  # refuse writes rather than evict the frame
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) // 2)
    try:
        with pytest.raises(StoreUnavailable, match="out of memory.*maxmemory"):
            commit(redis_store, E2, E1)
        with pytest.raises(StoreUnavailable, match="out of memory"):
            redis_store.put_model(F, b"m", version="v", config_hash="h")
    finally:
        r.config_set("maxmemory", 0)
    assert snapshot(redis_store) == before


def test_redis_tile_keys_share_the_frame_slot_and_nothing_is_left_behind(redis_store):
    from redis.crc import key_slot

    r = redis_store.client
    redis_store.buffer_epoch(F, E3, b"head", tiles=[b"a", b"b"])  # (buffered before the frame has a cursor)
    tiled_commit(redis_store, E1, None)
    tiled_commit(redis_store, E2, E1)
    redis_store.put_model(F, b"m", version="v", config_hash="h", tiles=[b"t0", b"t1"])
    redis_store.put_model(F, b"m2", version="v2", config_hash="h", tiles=[b"u0"])
    orphan = redis_store.begin_state(F, 3)
    redis_store.put_state_tile(F, orphan, 0, b"crashed writer")
    keys = {k.decode() for k in r.scan_iter(count=1000)} - {"ladsdin:frames"}
    assert len({key_slot(k.encode()) for k in keys}) == 1
    state_tiles = sorted(k for k in keys if ":state:tile:" in k)
    assert len(state_tiles) == 4  # the committed version's 3 tiles and the orphan's one; E1's are gone
    assert len([k for k in keys if ":model:tile:" in k]) == 1 and len([k for k in keys if ":buffer:tile:" in k]) == 2
    redis_store.clear_buffer(F)
    assert not [k for k in r.scan_iter(match="*buffer*")]
    redis_store.delete_frame(F)
    assert [k.decode() for k in r.scan_iter(count=1000)] == []


def test_a_parked_frame_keeps_its_record_until_cleared_and_deleted(store):
    assert store.failed(F) is None
    store.buffer_epoch(F, E1, b"epoch-1")
    rec = {"reason": "bootstrap", "detail": "ValueError: no pixel is modelled", "at": "2026-12-07T00:00:00Z"}
    store.mark_failed(F, rec)
    assert store.failed(F) == rec and store.failed(G) is None
    assert store.buffered_epoch_names(F) == [E1]  # parking keeps the buffer for a retry
    store.clear_failed(F)
    assert store.failed(F) is None and store.buffered_epoch_names(F) == [E1]
    store.mark_failed(F, rec)
    store.delete_frame(F)
    assert store.failed(F) is None


# --- the fenced bootstrap -------------------------------------------------------------------------


def buffer_history(store: StateStore, epochs=(E1, E2), frame: str = F) -> None:
    for e in epochs:
        assert store.buffer_epoch(frame, e, f"head@{e}".encode(), tiles=[f"{e}/d{i}".encode() for i in range(2)])


def bootstrap_commit(store: StateStore, name: str, buffered=(E1, E2), frame: str = F) -> tuple[bool, str]:
    """One worker's end of a bootstrap: its state tiles, then the fenced commit of model + state."""
    v = store.begin_state(frame, 2)
    for i in range(2):
        if not store.put_state_tile(frame, v, i, f"{name}/s{i}".encode()):
            return False, v
    ok = store.commit_bootstrap(frame, epoch=buffered[-1], model=f"model-{name}".encode(), model_version=f"v-{name}", config_hash="h",
                                model_tiles=[f"{name}/m{i}".encode() for i in range(2)], state=f"manifest-{name}".encode(), tiles=v,
                                applied={"bootstrap": True, "first": buffered[0]}, buffered=list(buffered))
    return ok, v


def test_a_bootstrap_installs_model_state_and_cursor_together_and_empties_the_buffer(store):
    buffer_history(store)
    ok, v = bootstrap_commit(store, "a")
    assert ok and store.get_state(F) == (b"manifest-a", E2) and store.model_version(F) == "v-a"
    blob, meta = store.get_model(F)
    assert blob == b"model-a" and [store.get_model_tile(F, meta["tiles"], i) for i in range(2)] == [b"a/m0", b"a/m1"]
    assert tiles_of(store, v, 2) == [b"a/s0", b"a/s1"]
    assert store.buffered_epoch_names(F) == [] and store.buffered_epoch_tile(F, E1, 0) is None
    assert store.applied_log(F) == [{"epoch": E2, "bootstrap": True, "first": E1}]


def test_a_second_bootstrap_is_refused_and_the_first_model_and_state_stand(store):
    """Two workers both bootstrapped the frame (a rebalance): whoever commits second changes nothing."""
    buffer_history(store)
    va = store.begin_state(F, 2)  # worker a is still writing its tiles when b commits
    assert store.put_state_tile(F, va, 0, b"a/s0")
    ok_b, vb = bootstrap_commit(store, "b")
    assert ok_b
    before = snapshot(store)
    assert not store.put_state_tile(F, va, 1, b"a/s1")  # b's commit discarded a's version
    ok_a = store.commit_bootstrap(F, epoch=E2, model=b"model-a", model_version="v-a", config_hash="h", model_tiles=[b"a/m0"],
                                  state=b"manifest-a", tiles=va, applied={}, buffered=[E1, E2])
    assert not ok_a and snapshot(store) == before and store.model_version(F) == "v-b"
    assert store.get_model(F)[0] == b"model-b" and tiles_of(store, vb, 2) == [b"b/s0", b"b/s1"]  # model and state from one bootstrap


def test_a_bootstrap_is_refused_when_an_epoch_was_buffered_meanwhile(store):
    buffer_history(store)
    buffer_history(store, (E3,))  # arrived at another worker while this one trained on E1, E2
    ok, _ = bootstrap_commit(store, "a", buffered=(E1, E2))
    assert not ok and store.get_state(F) == (None, None) and store.model_version(F) is None
    assert store.buffered_epoch_names(F) == [E1, E2, E3]  # nothing is lost: the next bootstrap trains on all three
    ok, _ = bootstrap_commit(store, "a", buffered=(E1, E2, E3))
    assert ok and store.get_state(F)[1] == E3


def test_a_bootstrapped_frame_buffers_nothing(store):
    buffer_history(store)
    assert bootstrap_commit(store, "a")[0]
    with pytest.raises(FrameBootstrapped):
        store.buffer_epoch(F, E3, b"late", tiles=[b"t"])
    assert store.buffered_epoch_names(F) == [] and store.buffered_epoch_tile(F, E3, 0) is None
    with pytest.raises(ValueError, match="last of its buffered"):
        store.commit_bootstrap(F, epoch=E1, model=b"m", model_version="v", config_hash="h", model_tiles=[], state=b"s",
                               tiles="0123456789abcdef.1", applied={}, buffered=[E1, E2])


def test_redis_bootstrap_leaves_no_buffer_or_loser_keys(redis_store):
    r = redis_store.client
    buffer_history(redis_store)
    va = redis_store.begin_state(F, 2)
    assert bootstrap_commit(redis_store, "b")[0]
    assert not redis_store.commit_bootstrap(F, epoch=E2, model=b"model-a", model_version="v-a", config_hash="h", model_tiles=[b"a/m0"],
                                            state=b"manifest-a", tiles=va, applied={}, buffered=[E1, E2])
    keys = sorted(k.decode().split("}:")[1] for k in r.scan_iter(match="ladsdin:{*"))
    version = r.get(redis_store.key(F, "state:version")).decode()
    tiles = r.hget(redis_store.key(F, "model"), "tiles").decode()
    assert keys == sorted(["applied", "cursor", "model", "model:versions", "state", "state:version", "state:versions",
                           f"state:tile:{version}:0", f"state:tile:{version}:1", f"model:tile:{tiles}:0", f"model:tile:{tiles}:1"])
