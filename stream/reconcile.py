"""Kafka/Redis reconciliation: after a start or a rebalance, re-read what Kafka says was done.

Kafka's committed offset can be ahead of Redis: Redis acknowledged a commit and then lost it (a
restart with ``appendfsync everysec`` drops up to a second of writes; an asynchronous failover
drops the replica's lag), while the worker had already committed the event's offset. Without
reconciliation the lost epoch would be stepped over as a gap at the frame's next epoch, although
its alerts may already have gone out.

So before a worker processes the first event of a partition (after it starts, and after every
rebalance), it reads the ``LADSDIN_RECONCILE_LOOKBACK`` events before that offset again, with a
plain kafka-python consumer outside the group, and processes them in order. Every epoch the store
still has is an exact no-op (the cursor and the applied log say so, DESIGN.md §3); an epoch it
lost is applied again, in its place, with the same deterministic message ids, so downstream
de-duplication sees each alert once. Events that went to the DLQ are not sent there again: the
DLQ lives in Kafka, which lost nothing.

The lookback must cover the events consumed during the longest write loss the store's
persistence allows (README, "Guarantees").
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ladsdin.stream.connection import KafkaConnection, client_kwargs
from ladsdin.stream.processor import EpochProcessor, Outcome
from ladsdin.stream.topics import MAX_FETCH_BYTES

log = logging.getLogger(__name__)


class RereadIncomplete(ConnectionError):
    """The broker stopped serving before the re-read reached the committed offset (an
    infrastructure failure: the worker restarts rather than skip what it could not read)."""


def reread(bootstrap: str | KafkaConnection, topic: str, partition: int, start: int, end: int, *, idle_ms: int = 10_000) -> Iterator[tuple[int, bytes]]:
    """(offset, value) of the records of one partition in ``[start, end)``; offsets the log no
    longer holds (retention) are skipped. Raises RereadIncomplete if the broker goes quiet first."""
    from kafka import KafkaConsumer, TopicPartition

    if end <= start:
        return
    consumer = KafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=idle_ms, max_partition_fetch_bytes=MAX_FETCH_BYTES, fetch_max_bytes=MAX_FETCH_BYTES)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        last = start - 1
        for rec in consumer:
            if rec.offset >= end:
                return
            last = rec.offset
            yield rec.offset, rec.value
            if last == end - 1:
                return
        raise RereadIncomplete(f"re-reading {topic}[{partition}] offsets {start}..{end - 1}: the broker went quiet after offset {last}")
    finally:
        consumer.close()


class Reconciler:
    """Re-reads the lookback of each partition once per assignment (see the module docstring).

    Args:
        processor: the worker's processor (its store is the one to reconcile).
        publish: flushes a re-applied event's outbox (its alerts and summary).
        read: ``(topic, partition, start, end) -> (offset, value) records`` (kafka by default).
    """

    def __init__(self, processor: EpochProcessor, bootstrap: str | KafkaConnection, publish: Callable[[Outcome], None],
                 read: Callable[[str, int, int, int], Iterator[tuple[int, bytes]]] | None = None) -> None:
        self.processor = processor
        self.topic = processor.settings.epochs_topic
        self.lookback = processor.settings.reconcile_lookback
        self.publish = publish
        self._read = read or (lambda t, p, a, b: reread(bootstrap, t, p, a, b))
        self._done: set[int] = set()

    def reset(self) -> None:
        """Partitions were revoked or assigned: reconcile each again at its next event."""
        self._done.clear()

    def before(self, partition: int, offset: int) -> int:
        """Reconcile ``partition`` before its event at ``offset`` (once per assignment); returns
        how many re-read events the store had lost and were applied again."""
        if partition in self._done or self.lookback == 0 or offset <= 0:
            self._done.add(partition)
            return 0
        start = max(offset - self.lookback, 0)
        n_read = n_applied = 0
        for off, raw in self._read(self.topic, partition, start, offset):
            n_read += 1
            out = self.processor.process(raw, topic=self.topic, partition=partition, offset=off)
            if out.status in ("scored", "bootstrapped", "buffered"):
                n_applied += 1
                log.warning("partition %d offset %d: frame %s epoch %s was missing from the store (Redis behind Kafka's committed "
                            "offset); applied again: %s", partition, off, out.frame, out.epoch, out.status)
                self.publish(out)
        self._done.add(partition)
        self.processor.metrics.reconciled(partition, n_read, n_applied)
        log.info("partition %d: reconciled offsets %d..%d before the committed offset: %d re-read, %d applied again", partition, start,
                 offset - 1, n_read, n_applied)
        return n_applied
