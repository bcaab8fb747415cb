"""The outbox publisher: messages committed with a frame's state are sent, then acknowledged.

A crash after the state commit but before the send loses nothing: the messages are still in
the outbox and go out when the worker restarts. A crash after the send but before the ack sends
them again; every message has a deterministic id (alerts: ``frame:epoch:rank``) so consumers
de-duplicate. Rejected events (DLQ) change no state and are sent directly.

Each send is one ``publish`` stage observation; acknowledged messages are counted per topic,
and :meth:`OutboxPublisher.backlog` samples the store's unacknowledged messages.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

from kafka import KafkaProducer

from ladsdin.state.store import OutboxMessage, StateStore
from ladsdin.stream.connection import KafkaConnection, client_kwargs
from ladsdin.stream.metrics import MetricsRecorder

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 30.0


def make_producer(bootstrap: str | KafkaConnection, max_message_bytes: int) -> KafkaProducer:
    """A kafka-python producer that waits for the broker's acknowledgement of every message.

    Requests may be twice the largest accepted event plus 1 MiB, so a DLQ record that keeps a
    (capped) copy of a rejected payload always fits.
    """
    return KafkaProducer(**client_kwargs(bootstrap), acks="all", retries=5, linger_ms=5,
                         max_request_size=2 * max_message_bytes + (1 << 20), request_timeout_ms=30_000)


def sample_backlog(store: StateStore, metrics: MetricsRecorder) -> int:
    """Count the store's unacknowledged outbox messages (every frame) into the backlog gauge."""
    n = len(store.pending_outbox(None))
    metrics.outbox_backlog(n)
    return n


class OutboxPublisher:
    """Sends a store's pending outbox messages with a Kafka producer."""

    def __init__(self, store: StateStore, producer: KafkaProducer, metrics: MetricsRecorder | None = None) -> None:
        self.store = store
        self.producer = producer
        self.metrics = metrics or MetricsRecorder()

    def send(self, messages: list[OutboxMessage]) -> None:
        """Send and wait for every acknowledgement (raises on a broker failure)."""
        with self.metrics.stage("publish"):
            futures = [self.producer.send(m.topic, key=m.key.encode(), value=m.value, headers=[("id", m.id.encode())]) for m in messages]
            self.producer.flush(SEND_TIMEOUT_S)
            for f in futures:
                f.get(timeout=SEND_TIMEOUT_S)
        for topic, n in Counter(m.topic for m in messages).items():
            self.metrics.published(topic, n)

    def backlog(self) -> int:
        """Unacknowledged outbox messages of every frame, recorded as the backlog gauge."""
        return sample_backlog(self.store, self.metrics)

    def flush(self, frame: str | None = None) -> int:
        """Publish and acknowledge every pending message (of one frame, or all); returns the count."""
        pending = self.store.pending_outbox(frame)
        if not pending:
            return 0
        self.send(pending)
        by_frame: dict[str, list[str]] = defaultdict(list)
        for m in pending:
            by_frame[m.key].append(m.id)
        for f, ids in by_frame.items():
            self.store.ack_outbox(f, ids)
        log.debug("published %d outbox message(s)", len(pending))
        return len(pending)
