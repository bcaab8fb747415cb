"""Every Prometheus metric of the streaming worker, defined in this one module.

Naming follows Prometheus: the ``ladsdin_`` prefix, base units in the name (``_seconds``,
``_bytes``, ``_square_meters``), ``_total`` on counters. Labels are bounded: ``frame`` (the
frames a deployment serves, set only after an event passed validation and the frames
allow-list), ``reason`` (the DLQ enum), ``stage``, ``status``, ``topic``, ``phase``,
``dependency``. Never a pixel, an epoch or an offset.

Two implementations share one recording interface:

- :class:`MetricsRecorder` records nothing: ``LADSDIN_METRICS_ENABLED=false`` (and the
  overhead benchmark's "off" runs).
- :class:`PrometheusMetrics` owns its instruments in its own ``CollectorRegistry`` (one per
  worker, so tests can build several), with the process and Python collectors.

Epoch dates are exported as unix timestamps (``ladsdin_last_scored_epoch_timestamp_seconds``),
because Prometheus plots scrape time, not acquisition time: a panel of that gauge shows *which*
epoch was scored or alerted. Per-frame gauges are "as last seen by this worker"; dashboards take
``max by (frame)`` across workers.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterable
from typing import Any, ContextManager

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, GCCollector, PlatformCollector,
                               ProcessCollector)

from ladsdin.stream.contracts import REASONS

#: Stages of one scored epoch (``ladsdin_stage_duration_seconds{stage}``):
#: fetch = read and check the epoch's map (``load_epoch_data``); model_load = the model version
#: check (and the blob when it changed); state_load = pixel state + cursor from the store;
#: predict = ``models.detector.score_epoch`` (forecast, eq. 4 threshold, eq. 5 screen and
#: component labelling); cluster = seismic objects to alert features (outlines, D_s range);
#: state_write = encode + the atomic commit; publish = outbox send and acknowledge.
STAGES = ("fetch", "model_load", "state_load", "predict", "cluster", "state_write", "publish")
STATUSES = ("scored", "buffered", "bootstrapped", "duplicate", "rejected")
PHASES = ("buffering", "scoring")
DEPENDENCIES = ("kafka", "redis")
#: Seconds: sub-millisecond stages up to a minute-long fetch of a huge map.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Seconds from the event's produced_at; 5 s is the 1M-pixel latency target (docs/BENCHMARKS.md).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)
BOOTSTRAP_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_NULL = contextlib.nullcontext()


def epoch_timestamp(epoch: str) -> float:
    """Unix seconds of an epoch date ``YYYY-MM-DD`` (00:00 UTC)."""
    return dt.datetime.fromisoformat(epoch).replace(tzinfo=dt.timezone.utc).timestamp()


class MetricsRecorder:
    """The recording interface; this base records nothing (metrics disabled)."""

    enabled = False
    registry: CollectorRegistry | None = None
    #: wall-clock start of the event in progress, None when idle (kept only when enabled)
    busy_since: float | None = None

    def stage(self, name: str) -> ContextManager[object]:
        """Time a block as one observation of ``ladsdin_stage_duration_seconds{stage=name}``."""
        return _NULL

    def observe_stage(self, name: str, seconds: float) -> None:
        """One observation of ``ladsdin_stage_duration_seconds{stage=name}`` timed by the caller."""

    def event_started(self) -> None:
        """An event was taken from ``licsar.epochs.v1`` and handed to the processor."""

    def event_finished(self, status: str, seconds: float) -> None:
        """The processor returned ``status`` (one of :data:`STATUSES`) after ``seconds``."""

    def rejected(self, reason: str) -> None:
        """An event went to the DLQ with ``reason``."""

    def frame_event(self, frame: str, revisit_s: float) -> None:
        """A valid event of ``frame`` arrived (its wall-clock time feeds the no-epochs rule)."""

    def buffered(self, frame: str, n_buffered: int) -> None:
        """A new frame holds ``n_buffered`` epochs towards its bootstrap."""

    def bootstrapped(self, frame: str, seconds: float) -> None:
        """A frame's model was trained in ``seconds``."""

    def bootstrap_failed(self, frame: str) -> None:
        """A frame's bootstrap failed on its data: the frame is parked."""

    def reconciled(self, partition: int, n_reread: int, n_applied: int) -> None:
        """After a start or a rebalance, ``n_reread`` events before the partition's committed
        offset were read again, and ``n_applied`` of them were missing from the store."""

    def scored(self, frame: str, *, epoch: str, c_k: int, n_a: int, n_valid: int, largest_px: int,
               pixel_area_km2: float, n_alerts: int, latency_s: float, state_bytes: int) -> None:
        """A scored epoch was committed (its alerts and summary are in the outbox)."""

    def frames_tracked(self, buffering: int, scoring: int) -> None:
        """Frames this worker has seen, by phase."""

    def published(self, topic: str, n: int) -> None:
        """``n`` outbox (or DLQ) messages were acknowledged by the broker on ``topic``."""

    def outbox_backlog(self, n: int) -> None:
        """Messages committed to the outbox and not yet acknowledged (every frame)."""

    def dependency(self, name: str, up: bool) -> None:
        """Result of the last connectivity check of ``kafka`` or ``redis``."""

    def ready(self, ready: bool) -> None:
        """Result of the last readiness check (the ``/ready`` answer)."""


class PrometheusMetrics(MetricsRecorder):
    """The worker's instruments in their own registry.

    Args:
        topics: the output topics (alerts, summaries, DLQ), pre-created as ``topic`` labels.
        version: the package version, for ``ladsdin_build_info``.
        device: the resolved torch device type (``cpu`` or ``cuda``).
        registry: where to register; default a new one with the process/Python collectors.
    """

    enabled = True

    def __init__(self, topics: Iterable[str] = (), *, version: str = "", device: str = "",
                 registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = r = registry
        # -- flow ------------------------------------------------------------------------
        self.consumed = Counter("ladsdin_epochs_consumed_total", "Events read from licsar.epochs.v1 and handed to the processor.", registry=r)
        self.processed = Counter("ladsdin_epochs_processed_total", "Events processed, by outcome.", ["status"], registry=r)
        self.scored_total = Counter("ladsdin_epochs_scored_total", "Epochs scored and committed, per frame.", ["frame"], registry=r)
        self.rejected_total = Counter("ladsdin_epochs_rejected_total", "Events sent to licsar.epochs.v1.dlq, by DLQ reason.", ["reason"], registry=r)
        self.alerts_total = Counter("ladsdin_alerts_emitted_total", "Seismic-object alerts committed for ladsdin.alerts.v1, per frame.", ["frame"], registry=r)
        self.published_total = Counter("ladsdin_outbox_messages_published_total", "Messages acknowledged by the broker, per topic.", ["topic"], registry=r)
        # -- latency ---------------------------------------------------------------------
        self.stage_seconds = Histogram("ladsdin_stage_duration_seconds", "Wall time of one stage of one event (see stream/metrics.py STAGES).",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.event_seconds = Histogram("ladsdin_event_duration_seconds", "Wall time of processing one event, by outcome.",
                                       ["status"], buckets=STAGE_BUCKETS, registry=r)
        self.latency = Histogram("ladsdin_publish_to_alert_seconds", "Event produced_at to its epoch's summary and alerts being "
                                 "committed (the summary's latency_s).", buckets=LATENCY_BUCKETS, registry=r)
        self.bootstrap_seconds = Histogram("ladsdin_model_bootstrap_duration_seconds", "Wall time of training a frame's model.",
                                           buckets=BOOTSTRAP_BUCKETS, registry=r)
        self.bootstraps = Counter("ladsdin_model_bootstraps_total", "Frame models trained (bootstrapped), per frame.", ["frame"], registry=r)
        self.bootstrap_failures = Counter("ladsdin_model_bootstrap_failures_total", "Bootstraps that failed on the frame's data (the frame is "
                                          "parked: its events go to the DLQ as frame_failed until `ladsdin frames reset`).", ["frame"], registry=r)
        self.reread = Counter("ladsdin_reconcile_reread_events_total", "Events read again from Kafka before a partition's committed offset, "
                              "after a start or rebalance (LADSDIN_RECONCILE_LOOKBACK).", registry=r)
        self.recovered = Counter("ladsdin_reconcile_recovered_events_total", "Re-read events the store had lost (Redis behind Kafka: an AOF "
                                 "everysec restart or an asynchronous failover) and that were applied again.", registry=r)
        # -- science (per frame, the last scored epoch) -------------------------------------
        self.c_k = Gauge("ladsdin_epoch_anomalous_pixels", "C_k: anomalous pixels of the last scored epoch (eq. 4).", ["frame"], registry=r)
        self.n_a = Gauge("ladsdin_epoch_n_a_pixels", "N_a: the temporal screen's pixel count (eq. 5).", ["frame"], registry=r)
        self.n_valid = Gauge("ladsdin_epoch_valid_pixels", "Modelled pixels with data in the last scored epoch.", ["frame"], registry=r)
        self.largest_px = Gauge("ladsdin_epoch_largest_object_pixels", "Pixels of the largest connected anomaly object of the last scored epoch.",
                                ["frame"], registry=r)
        self.largest_area = Gauge("ladsdin_epoch_largest_object_area_square_meters", "Area of the largest connected anomaly object "
                                  "of the last scored epoch (pixels x A_p).", ["frame"], registry=r)
        self.last_scored = Gauge("ladsdin_last_scored_epoch_timestamp_seconds", "Acquisition date of the last scored epoch (unix s, 00:00 UTC).",
                                 ["frame"], registry=r)
        self.last_alert = Gauge("ladsdin_last_alert_epoch_timestamp_seconds", "Acquisition date of the last epoch with an alert (unix s, 00:00 UTC).",
                                ["frame"], registry=r)
        # -- frames and state ------------------------------------------------------------
        self.last_event = Gauge("ladsdin_frame_last_event_timestamp_seconds", "Wall-clock time the last valid event of the frame arrived.",
                                ["frame"], registry=r)
        self.revisit = Gauge("ladsdin_frame_revisit_seconds", "The frame's acquisition calendar step.", ["frame"], registry=r)
        self.state_bytes = Gauge("ladsdin_frame_state_bytes", "Size of the frame's pixel-state blob as last committed.", ["frame"], registry=r)
        self.buffered_epochs = Gauge("ladsdin_frame_buffered_epochs", "Epochs a new frame holds towards its bootstrap.", ["frame"], registry=r)
        self.tracked = Gauge("ladsdin_frames_tracked", "Frames this worker has seen, by phase.", ["phase"], registry=r)
        self.backlog = Gauge("ladsdin_outbox_backlog_messages", "Outbox messages committed and not yet acknowledged (every frame, as last sampled).",
                             registry=r)
        # -- worker health ---------------------------------------------------------------
        self.in_progress = Gauge("ladsdin_events_in_progress", "Events being processed now (0 or 1 per worker).", registry=r)
        self.started_at = Gauge("ladsdin_event_started_timestamp_seconds", "Wall-clock start of the event in progress (or of the last one).",
                                registry=r)
        self.last_done = Gauge("ladsdin_last_event_processed_timestamp_seconds", "Wall-clock time the worker last finished an event "
                               "(its start time before the first).", registry=r)
        self.dep_up = Gauge("ladsdin_dependency_up", "1 when the last connectivity check of the dependency succeeded.", ["dependency"], registry=r)
        self.ready_gauge = Gauge("ladsdin_worker_ready", "1 when the worker is started and connected to Kafka and Redis (/ready).", registry=r)
        self.build = Gauge("ladsdin_build_info", "Constant 1, labelled with the package version and torch device.", ["version", "device"], registry=r)
        # Bounded label sets exist from the start, so rates and DLQ panels read 0, not "no data";
        # their children are kept, since a labels() lookup costs more than the observation.
        self._stages = {name: self.stage_seconds.labels(name) for name in STAGES}
        self._status = {st: (self.processed.labels(st), self.event_seconds.labels(st)) for st in STATUSES}
        self._frames: dict[str, dict[str, Any]] = {}
        for reason in REASONS:
            self.rejected_total.labels(reason)
        for topic in topics:
            self.published_total.labels(topic)
        for phase in PHASES:
            self.tracked.labels(phase)
        for dep in DEPENDENCIES:
            self.dep_up.labels(dep)
        self.build.labels(version, device).set(1)
        self.last_done.set(time.time())

    def stage(self, name: str) -> ContextManager[object]:
        return _StageTimer(self._stages[name])

    def observe_stage(self, name: str, seconds: float) -> None:
        self._stages[name].observe(seconds)

    def _frame(self, frame: str) -> dict[str, Any]:
        """The frame's children of every per-frame metric, created on its first valid event."""
        got = self._frames.get(frame)
        if got is None:
            names = ("scored_total", "alerts_total", "c_k", "n_a", "n_valid", "largest_px", "largest_area", "last_scored",
                     "last_event", "revisit", "state_bytes", "buffered_epochs")
            got = self._frames[frame] = {n: getattr(self, n).labels(frame) for n in names}
        return got

    def event_started(self) -> None:
        self.busy_since = now = time.time()
        self.consumed.inc()
        self.in_progress.set(1)
        self.started_at.set(now)

    def event_finished(self, status: str, seconds: float) -> None:
        count, duration = self._status[status]
        count.inc()
        duration.observe(seconds)
        self.in_progress.set(0)
        self.busy_since = None
        self.last_done.set(time.time())

    def rejected(self, reason: str) -> None:
        self.rejected_total.labels(reason).inc()

    def frame_event(self, frame: str, revisit_s: float) -> None:
        f = self._frame(frame)
        f["last_event"].set(time.time())
        f["revisit"].set(revisit_s)

    def buffered(self, frame: str, n_buffered: int) -> None:
        self._frame(frame)["buffered_epochs"].set(n_buffered)

    def bootstrapped(self, frame: str, seconds: float) -> None:
        self.bootstraps.labels(frame).inc()
        self.bootstrap_seconds.observe(seconds)
        self._frame(frame)["buffered_epochs"].set(0)

    def bootstrap_failed(self, frame: str) -> None:
        self.bootstrap_failures.labels(frame).inc()

    def reconciled(self, partition: int, n_reread: int, n_applied: int) -> None:
        self.reread.inc(n_reread)
        self.recovered.inc(n_applied)

    def scored(self, frame: str, *, epoch: str, c_k: int, n_a: int, n_valid: int, largest_px: int,
               pixel_area_km2: float, n_alerts: int, latency_s: float, state_bytes: int) -> None:
        f = self._frame(frame)
        f["scored_total"].inc()
        f["c_k"].set(c_k)
        f["n_a"].set(n_a)
        f["n_valid"].set(n_valid)
        f["largest_px"].set(largest_px)
        f["largest_area"].set(largest_px * pixel_area_km2 * 1e6)
        ts = epoch_timestamp(epoch)
        f["last_scored"].set(ts)
        # the counter exists (at 0) for every scored frame, so "alerts per frame" is never empty
        f["alerts_total"].inc(n_alerts)
        if n_alerts:
            self.last_alert.labels(frame).set(ts)
        self.latency.observe(latency_s)
        f["state_bytes"].set(state_bytes)

    def frames_tracked(self, buffering: int, scoring: int) -> None:
        self.tracked.labels("buffering").set(buffering)
        self.tracked.labels("scoring").set(scoring)

    def published(self, topic: str, n: int) -> None:
        self.published_total.labels(topic).inc(n)

    def outbox_backlog(self, n: int) -> None:
        self.backlog.set(n)

    def dependency(self, name: str, up: bool) -> None:
        self.dep_up.labels(name).set(1 if up else 0)

    def ready(self, ready: bool) -> None:
        self.ready_gauge.set(1 if ready else 0)


class _StageTimer:
    """``with``-block timer observing into one histogram child (cheaper than a generator)."""

    __slots__ = ("child", "t0")

    def __init__(self, child: Any) -> None:
        self.child = child

    def __enter__(self) -> _StageTimer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.child.observe(time.perf_counter() - self.t0)


def build_metrics(enabled: bool, topics: Iterable[str] = (), *, device: str = "") -> MetricsRecorder:
    """The worker's recorder: :class:`PrometheusMetrics`, or the no-op base when disabled."""
    if not enabled:
        return MetricsRecorder()
    from ladsdin import __version__

    return PrometheusMetrics(topics, version=__version__, device=device)


def metric_names(metrics: PrometheusMetrics | None = None) -> set[str]:
    """Every series name the worker's registry can expose (counters with ``_total``, histograms
    with ``_bucket``/``_sum``/``_count``, the process and Python collectors included): what a
    dashboard panel or an alerting rule may name."""
    m = metrics or PrometheusMetrics(["topic"])
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    names: set[str] = set()
    for family in m.registry.collect():  # labelled families without children have no samples yet
        if family.type not in suffixes:  # a counter or histogram family's own name is no series
            names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names
