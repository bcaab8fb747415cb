"""What the processor records: one simulated frame through EpochProcessor (the in-memory state
store, the real model), read back from the Prometheus registry."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from ladsdin.models.frame import frame_pixel_area
from ladsdin.models.simulation import simulate
from ladsdin.state import MemoryStateStore
from ladsdin.stream.contracts import REASONS
from ladsdin.stream.events import encode_event
from ladsdin.stream.metrics import STAGES, MetricsRecorder, PrometheusMetrics, build_metrics, epoch_timestamp, metric_names
from ladsdin.stream.processor import EpochProcessor
from ladsdin.ingest.cube import epoch_events
from ladsdin.stream.settings import Settings

HISTORY = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Replay a 48x48 Menyuan frame (earthquake in the scored part) plus two bad events."""
    tmp = tmp_path_factory.mktemp("metrics")
    cube, truth = simulate("menyuan", "A", n_lat=48, n_lon=48, n_epochs=60, seed=5, event_index=55, missing_fraction=0.0)
    s = Settings(data_root=tmp, min_history_epochs=HISTORY, seismic_area_km2=20.0, device="cpu")
    metrics = PrometheusMetrics(s.topics[1:], version="test", device="cpu")
    proc = EpochProcessor(MemoryStateStore(), s, torch.device("cpu"), metrics=metrics)
    outcomes = [proc.process(encode_event(ev), topic=s.epochs_topic, partition=0, offset=i)
                for i, (_, _, ev) in enumerate(epoch_events(cube, tmp, inline=True))]
    outcomes.append(proc.process(b"{not json", topic=s.epochs_topic, partition=0, offset=1000))
    _, _, first = next(epoch_events(cube, tmp, inline=True))
    outcomes.append(proc.process(encode_event(first), topic=s.epochs_topic, partition=0, offset=1001))  # a replay: a no-op
    other = dict(first, event_id=first["event_id"][:-12] + "0" * 12)  # another event for that history epoch: older than the cursor
    outcomes.append(proc.process(encode_event(other), topic=s.epochs_topic, partition=0, offset=1002))
    return cube, truth, metrics, outcomes


def _value(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    assert v is not None, f"{name}{labels} not exposed"
    return v


def test_flow_counters_match_the_outcomes(run):
    cube, _, m, outcomes = run
    statuses = [o.status for o in outcomes]
    assert _value(m, "ladsdin_epochs_consumed_total") == len(outcomes) == cube.sizes["time"] + 3
    for status in ("scored", "buffered", "bootstrapped", "duplicate", "rejected"):
        assert _value(m, "ladsdin_epochs_processed_total", status=status) == statuses.count(status)
    assert statuses.count("scored") == cube.sizes["time"] - HISTORY
    assert _value(m, "ladsdin_epochs_rejected_total", reason="invalid_json") == 1
    assert _value(m, "ladsdin_epochs_rejected_total", reason="out_of_order") == 1
    assert sum(_value(m, "ladsdin_epochs_rejected_total", reason=r) for r in REASONS) == 2
    assert _value(m, "ladsdin_event_duration_seconds_count", status="scored") == statuses.count("scored")


def test_every_stage_is_timed_once_per_scored_epoch(run):
    cube, _, m, outcomes = run
    n_scored = sum(o.status == "scored" for o in outcomes)
    for stage in ("state_load", "predict", "cluster", "state_write"):
        assert _value(m, "ladsdin_stage_duration_seconds_count", stage=stage) == n_scored, stage
    # fetch: every buffered epoch and every scored one; model_load: every valid event
    assert _value(m, "ladsdin_stage_duration_seconds_count", stage="fetch") == cube.sizes["time"]
    assert _value(m, "ladsdin_stage_duration_seconds_count", stage="model_load") == cube.sizes["time"] + 2
    assert _value(m, "ladsdin_stage_duration_seconds_count", stage="publish") == 0  # the worker's outbox publishes
    assert _value(m, "ladsdin_stage_duration_seconds_sum", stage="predict") > 0
    assert _value(m, "ladsdin_publish_to_alert_seconds_count") == n_scored


def test_science_gauges_show_the_earthquake_epoch(run):
    cube, truth, m, outcomes = run
    frame = cube.attrs["frame"]
    alert_epochs = sorted({o.epoch for o in outcomes if o.n_alerts})
    assert alert_epochs == [truth.attrs["first_post_event"]]
    assert _value(m, "ladsdin_last_alert_epoch_timestamp_seconds", frame=frame) == epoch_timestamp(truth.attrs["first_post_event"])
    assert _value(m, "ladsdin_last_scored_epoch_timestamp_seconds", frame=frame) == epoch_timestamp(str(cube.time.values[-1])[:10])
    assert _value(m, "ladsdin_alerts_emitted_total", frame=frame) == sum(o.n_alerts for o in outcomes)
    last = json.loads(next(msg.value for msg in reversed([x for o in outcomes for x in o.messages]) if msg.topic.endswith("summaries.v1")))
    assert _value(m, "ladsdin_epoch_anomalous_pixels", frame=frame) == last["c_k"]
    assert _value(m, "ladsdin_epoch_n_a_pixels", frame=frame) == last["n_a"]
    assert _value(m, "ladsdin_epoch_largest_object_pixels", frame=frame) == last["largest_object_px"]
    area = _value(m, "ladsdin_epoch_largest_object_area_square_meters", frame=frame)
    a_p = frame_pixel_area(cube["lat"].values, 0.002, 0.002)  # km2, at the frame's latitude
    assert area == pytest.approx(last["largest_object_px"] * a_p * 1e6, rel=1e-6) and area > 0


def test_frame_and_state_gauges(run):
    cube, _, m, _ = run
    frame = cube.attrs["frame"]
    assert _value(m, "ladsdin_model_bootstraps_total", frame=frame) == 1
    assert _value(m, "ladsdin_model_bootstrap_duration_seconds_count") == 1
    assert _value(m, "ladsdin_frame_state_bytes", frame=frame) > 48 * 48 * 4
    assert _value(m, "ladsdin_frame_revisit_seconds", frame=frame) == 12 * 86400
    assert _value(m, "ladsdin_frame_buffered_epochs", frame=frame) == 0
    assert _value(m, "ladsdin_frames_tracked", phase="scoring") == 1
    assert _value(m, "ladsdin_frames_tracked", phase="buffering") == 0
    assert _value(m, "ladsdin_events_in_progress") == 0


def test_labels_stay_bounded(run):
    """No label value is a pixel, an epoch, an offset or a rejected event's frame."""
    cube, _, m, _ = run
    families = list(text_string_to_metric_families(generate_latest(m.registry).decode()))
    allowed = {"frame": {cube.attrs["frame"]}, "reason": set(REASONS), "stage": set(STAGES),
               "status": {"scored", "buffered", "bootstrapped", "duplicate", "rejected"}, "topic": set(Settings().topics[1:]),
               "phase": {"buffering", "scoring"}, "dependency": {"kafka", "redis"}, "le": None, "version": None, "device": None,
               "generation": None, "implementation": None, "major": None, "minor": None, "patchlevel": None}
    for fam in families:
        for sample in fam.samples:
            for key, value in sample.labels.items():
                assert key in allowed, f"{sample.name}: unexpected label {key}"
                assert allowed[key] is None or value in allowed[key], f"{sample.name}{{{key}={value!r}}}"


def test_every_metric_is_prefixed_and_named_by_convention():
    names = {n for n in metric_names() if n.startswith("ladsdin_")}
    assert len(names) > 40
    m = PrometheusMetrics()
    for fam in m.registry.collect():
        if not fam.name.startswith(("process_", "python_")):
            assert fam.name.startswith("ladsdin_"), fam.name
            assert fam.documentation, fam.name
            if fam.type == "histogram":
                assert fam.name.endswith("_seconds"), fam.name


def test_disabled_metrics_record_nothing(tmp_path):
    off = build_metrics(False)
    assert type(off) is MetricsRecorder and off.registry is None and not off.enabled
    with off.stage("predict"):
        pass
    off.scored("F", epoch="2020-01-01", c_k=1, n_a=1, n_valid=1, largest_px=1, pixel_area_km2=1.0, n_alerts=1, latency_s=1.0, state_bytes=1)
    s = Settings(data_root=tmp_path)
    proc = EpochProcessor(MemoryStateStore(), s, torch.device("cpu"))
    assert type(proc.metrics) is MetricsRecorder
    assert proc.process(b"[]").reason == "schema_violation"
    on = build_metrics(True, s.topics[1:], device="cpu")
    assert isinstance(on, PrometheusMetrics) and on.registry.get_sample_value("ladsdin_build_info", {"version": "0.1.0", "device": "cpu"}) == 1


def test_epoch_timestamp_is_utc_midnight():
    assert epoch_timestamp("1970-01-02") == 86400.0
    assert epoch_timestamp("2022-01-08") == float(np.datetime64("2022-01-08", "s").astype(int))
