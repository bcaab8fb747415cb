"""Kafka helpers shared by the tools, the demo, the ingest and the tests: creating topics and reading
a topic from its beginning.

Readers assign every partition by hand and start at offset 0: they belong to no consumer group
(a tool that prints must not steal partitions from the workers), and the embedded broker's
"latest" offset is unreliable (:mod:`ladsdin.stream.embedded`), so where a topic ends is learnt
from a quiet interval, never from ``end_offsets``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from ladsdin.stream.connection import KafkaConnection, client_kwargs

log = logging.getLogger(__name__)
#: Largest fetch of a reader: an inline epoch event or a DLQ record may be tens of MB.
MAX_FETCH_BYTES = 64 * 1024 * 1024


def create_topics(bootstrap: str | KafkaConnection, names: Iterable[str], partitions: int = 1, replication_factor: int = 1) -> list[str]:
    """Create the missing topics among ``names``; return the ones created. Existing topics are
    left as they are (tansu cannot add partitions later, so create them with their final count)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**client_kwargs(bootstrap), client_id="ladsdin-admin", request_timeout_ms=10_000)
    created = []
    try:
        existing = set(admin.list_topics())
        for name in dict.fromkeys(names):
            if name in existing:
                continue
            try:
                # One request per topic: a batch request raises on the first "already exists"
                # (a concurrent creator) and would hide whether the others were created.
                admin.create_topics([NewTopic(name, partitions, replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    if created:
        log.info("created topics %s (%d partition(s)) on %s", ", ".join(created), partitions, bootstrap)
    return created


def read_topics(bootstrap: str | KafkaConnection, topics: str | Iterable[str], *, idle_ms: int = 1500, follow: bool = False) -> Iterator[Any]:
    """Every record of ``topics``, from offset 0 of each partition (kafka-python ``ConsumerRecord``).

    Without ``follow`` it stops once no record arrived for ``idle_ms``. With ``follow`` it never
    stops by itself and yields ``None`` after each quiet ``idle_ms``, so the caller can check a
    deadline or a child process between records.
    """
    from kafka import KafkaConsumer, TopicPartition

    names = [topics] if isinstance(topics, str) else list(topics)
    consumer = KafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False, consumer_timeout_ms=idle_ms,
                             max_partition_fetch_bytes=MAX_FETCH_BYTES, fetch_max_bytes=MAX_FETCH_BYTES)
    try:
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        while True:
            yield from consumer  # ends after idle_ms without a record
            if not follow:
                return
            yield None
    finally:
        consumer.close()
