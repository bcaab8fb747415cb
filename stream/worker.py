"""``ladsdin worker``: the faust-streaming app over ``licsar.epochs.v1``.

The agent is thin: each event is handed to the synchronous :class:`EpochProcessor` in a
one-thread executor (torch and Redis bulk I/O never run on the event loop), then the outbox is
flushed. Processing is at-least-once; exactly-once effects come from the state store's atomic
cursor (a replayed epoch is a no-op) and deterministic message ids. Offsets are committed only
after an event has been processed and its messages sent.

Faust keeps no state of ours: faust Table changelog recovery loses updates on the embedded
broker (DESIGN.md §4), and the state lives in Redis anyway. A ``exactly_once`` guarantee is not
used because the embedded broker rejects transactional producers.

Before the first event of each partition it is assigned, the worker re-reads the events just
before it and processes them again (:mod:`ladsdin.stream.reconcile`): epochs Redis lost after
Kafka committed them are applied, not stepped over.

Observability: the processor and the outbox record into one metrics object
(:mod:`ladsdin.stream.metrics`); :func:`run_worker` serves it with ``/health`` and ``/ready``
on ``LADSDIN_METRICS_PORT`` (:mod:`ladsdin.stream.telemetry`).
"""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from ladsdin.models.devices import configure_threads, resolve_device
from ladsdin.state.redis_store import RedisStateStore
from ladsdin.stream.connection import KafkaConnection, as_connection
from ladsdin.stream.metrics import build_metrics
from ladsdin.stream.outbox import OutboxPublisher, make_producer, sample_backlog
from ladsdin.stream.processor import EpochProcessor, Outcome
from ladsdin.stream.reconcile import Reconciler
from ladsdin.stream.settings import Settings
from ladsdin.stream.telemetry import HealthMonitor, ReadinessProbe, TelemetryServer

log = logging.getLogger(__name__)
#: Exit status of a worker that stopped on an infrastructure failure (EX_TEMPFAIL): restart it.
EXIT_RESTART = 75


def create_app(settings: Settings, bootstrap: str | KafkaConnection, redis_url: str, *, session_timeout_s: float = 6.0) -> faust.App:
    """Build the worker app (not started).

    Args:
        bootstrap: Kafka bootstrap servers ``host:port[,host:port]`` (PLAINTEXT), or the
            connection with its security settings (``settings.kafka()``), used by every client.
        redis_url: ``redis://host:port/db`` of the state store.
        session_timeout_s: consumer group session timeout; the embedded broker waits half of it
            on every JoinGroup, so it is kept short.
    """
    faust_dir = Path(settings.data_root) / ".faust"
    faust_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.consumer_group,  # the app id is the consumer group
        **as_connection(bootstrap).faust(),  # broker URL(s) and, when secured, broker_credentials
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=1.0,
        broker_commit_every=1,
        producer_max_request_size=settings.max_message_bytes,
        # room for one over-limit event, so it reaches the processor (and the DLQ) instead of
        # stalling the partition
        consumer_max_fetch_size=4 * settings.max_message_bytes,
        web_enabled=False,
        # faust makes a data directory even for memory tables: keep it under the data root, not the CWD
        datadir=str(faust_dir / "{conf.name}-data"),
    )
    configure_threads(settings.threads)
    device = resolve_device(settings.device)
    store = RedisStateStore(redis_url)
    metrics = build_metrics(settings.metrics_enabled, settings.topics[1:], device=device.type)
    processor = EpochProcessor(store, settings, device, metrics=metrics)
    probe = ReadinessProbe(bootstrap, settings.epochs_topic, store.ping, metrics)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ladsdin-score")
    state: dict[str, Any] = {}

    def publisher() -> OutboxPublisher:
        if "pub" not in state:
            state["pub"] = OutboxPublisher(store, make_producer(bootstrap, settings.max_message_bytes), metrics)
        return state["pub"]

    def publish_outbox(out: Outcome) -> None:
        publisher().flush(out.frame)

    reconciler = Reconciler(processor, bootstrap, publish_outbox)

    def handle(raw: bytes, partition: int, offset: int) -> Outcome:
        # Redis may have lost commits Kafka has the offsets of: re-apply them before going on
        reconciler.before(partition, offset)
        out = processor.process(raw, topic=settings.epochs_topic, partition=partition, offset=offset)
        pub = publisher()
        if out.status == "rejected":
            pub.send(out.messages)
        pub.flush(out.frame)
        log.info("partition %d offset %d: %s frame %s epoch %s%s in %.3f s", partition, offset, out.status, out.frame, out.epoch,
                 f" ({out.reason})" if out.reason else "", out.seconds)
        return out

    epochs = app.topic(settings.epochs_topic, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw", partitions=1)

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:  # noqa: ARG001 - faust's signal signature
        reconciler.reset()  # whatever this worker is assigned next is reconciled at its first event

    @app.task
    async def drain_outbox() -> None:
        # Messages committed before a crash go out before anything new is processed.
        n = await asyncio.get_running_loop().run_in_executor(executor, lambda: publisher().flush(None))
        if n:
            log.info("published %d message(s) left in the outbox by a previous run", n)
        probe.mark_started()

    @app.agent(epochs)
    async def consume(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            msg = event.message
            try:
                await loop.run_in_executor(executor, handle, event.value, msg.partition, msg.offset)
            except Exception:  # noqa: BLE001 - an infrastructure failure (Redis or Kafka down)
                # Bad events never get here (they go to the DLQ). Anything else must not be
                # skipped: exit without committing this offset, so the restarted worker
                # processes the event again; the state's cursor makes the retry idempotent.
                log.critical("partition %d offset %d: processing failed; exiting for a restart", msg.partition, msg.offset, exc_info=True)
                logging.shutdown()
                os._exit(EXIT_RESTART)

    app.ladsdin_processor = processor  # type: ignore[attr-defined]  (tests and metrics)
    app.ladsdin_reconciler = reconciler  # type: ignore[attr-defined]
    app.ladsdin_metrics = metrics  # type: ignore[attr-defined]
    app.ladsdin_probe = probe  # type: ignore[attr-defined]
    app.ladsdin_backlog = lambda: sample_backlog(store, metrics)  # type: ignore[attr-defined]  (the health monitor's)
    return app


def run_worker(settings: Settings, bootstrap: str | KafkaConnection, redis_url: str, loglevel: str = "info") -> int:
    """Run the worker until it is stopped (SIGTERM/SIGINT).

    Its four topics are created first when missing (a no-op where they exist): a consumer that
    subscribes before its topic exists may never be assigned a partition. Redis is pinged
    first: StoreUnavailable (Redis) or KafkaError (the broker) at start means an unreachable
    service, which ``ladsdin worker`` answers with one line and status 75.
    """
    from ladsdin.stream.topics import create_topics

    RedisStateStore(redis_url).ping()
    created = create_topics(bootstrap, settings.topics)
    if created:
        log.info("created topics %s", created)
    app = create_app(settings, bootstrap, redis_url)
    server = monitor = None
    if settings.metrics_port:
        try:
            server = TelemetryServer(settings.metrics_host, settings.metrics_port, app.ladsdin_metrics, app.ladsdin_probe,
                                     request_timeout_s=settings.metrics_request_timeout_s, max_threads=settings.metrics_max_threads).start()
        except OSError as exc:
            # Scoring matters more than its metrics: run on, and say how to fix it.
            log.error("cannot serve /metrics, /health, /ready on %s:%d (%s); the worker runs without them: set "
                      "LADSDIN_METRICS_PORT to a free port (0 = none)", settings.metrics_host, settings.metrics_port, exc)
        monitor = HealthMonitor(app.ladsdin_probe, app.ladsdin_backlog, settings.health_interval_s)
        monitor.start()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if monitor is not None:
            monitor.stop()
        if server is not None:
            server.stop()
    return 0
