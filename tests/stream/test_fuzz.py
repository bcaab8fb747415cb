"""Issue 11's fuzz: hostile events through the real processor on a real Valkey (``tests/stream/fuzz.py``).

CI runs LADSDIN_FUZZ_EXAMPLES (1,000 by default, derandomized so a run is reproducible);
``benchmarks/fuzz_bench.py`` runs 10,000 with fresh seeds and records the figures.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from ladsdin.ingest.cube import epoch_events
from ladsdin.models.simulation import simulate
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.embedded import EmbeddedRedis
from ladsdin.stream.events import encode_event
from ladsdin.stream.processor import EpochProcessor
from ladsdin.stream.settings import Settings

from tests.stream.fuzz import FuzzTarget, hostile_messages

pytestmark = pytest.mark.slow
EXAMPLES = int(os.environ.get("LADSDIN_FUZZ_EXAMPLES", "1000"))
HISTORY = 20


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    (work / "outside-chunk").write_bytes(b"\x00" * 64)
    cube, _ = simulate("menyuan", "A", n_lat=20, n_lon=24, n_epochs=30, seed=9)
    f, g = "128A_05172_131313", "128A_05172_131314"
    root = work / "data"
    cube.attrs["frame"] = f
    events = [ev for _, _, ev in epoch_events(cube, root)]
    cube_g = cube.copy()
    cube_g.attrs["frame"] = g
    with EmbeddedRedis() as redis_srv:
        store = RedisStateStore(redis_srv.url)
        s = Settings(data_root=root, min_history_epochs=HISTORY, seismic_area_km2=20.0, frames=(f, g), data_retries=1,
                     data_retry_backoff_s=0.01)
        proc = EpochProcessor(store, s, torch.device("cpu"))
        statuses = [proc.process(encode_event(e)).status for e in events[:HISTORY + 2]]
        assert statuses[HISTORY - 1] == "bootstrapped" and statuses[-2:] == ["scored", "scored"]
        for e in [ev for _, _, ev in epoch_events(cube_g, root)][:10]:  # a second frame, buffering
            assert proc.process(encode_event(e)).status == "buffered"
        t = FuzzTarget(proc, store.client, events[HISTORY + 1], events[HISTORY + 2], cube, work)
        yield t
        stats = os.environ.get("LADSDIN_FUZZ_STATS")
        if stats:
            with open(stats, "w") as fh:
                json.dump({"statuses": t.statuses, "reasons": t.reasons}, fh)


def test_hostile_events_are_rejected_or_no_ops_and_change_no_key(target):
    before = target.snapshot()
    assert any(b"{128A_05172_131314}" in k for k in before) and any(b"state:tile" in k for k in before)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize="LADSDIN_FUZZ_RANDOM" not in os.environ, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_messages())
    def run(msg):
        target.check(*msg, before)

    run()
    n = sum(target.statuses.values())
    assert n >= 0.9 * EXAMPLES and target.statuses["rejected"] > 0.8 * n
    # every family of hostile content was exercised and answered with a reason
    assert {"schema_violation", "out_of_range", "unknown_frame", "invalid_json", "unreadable_data", "grid_mismatch"} <= set(target.reasons)
