"""Write-ahead publication of epoch events: each epoch reaches the topic exactly once.

Kafka here offers no transactions (the embedded broker refuses idempotent producers, and the
product must run on it), so exactly-once comes from the ledger:

1. the events are recorded as ``pending`` in the ledger (fsync) *before* the first send;
2. each send waits for the broker's acknowledgement;
3. the epochs go to ``published`` and ``pending`` is cleared (fsync).

A crash between 1 and 3 leaves ``pending``. On restart, :meth:`EventPublisher.recover` reads the
topic back and sends only the pending events it does not find, byte-identical to the first
attempt (same data object, same ``event_id``), so a consumer never sees an epoch twice.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ladsdin.stream.events import encode_event
from ladsdin.ingest.ledger import Ledger

if TYPE_CHECKING:
    from ladsdin.stream.connection import KafkaConnection

log = logging.getLogger(__name__)


def published_event_ids(bootstrap: str | KafkaConnection, topic: str, frame: str, *, idle_ms: int = 3000) -> set[str]:
    """Every ``event_id`` of ``frame`` on ``topic``, read from the beginning of each partition.

    Only used to resolve a pending publication after a crash (rare), so a full scan is fine.
    The scan stops when no message arrived for ``idle_ms`` (the embedded broker's end offsets are
    not reliable, so they are not used).
    """
    from ladsdin.stream.topics import read_topics

    key = frame.encode()
    ids: set[str] = set()
    for msg in read_topics(bootstrap, topic, idle_ms=idle_ms):
        if msg.key == key:
            try:
                ids.add(json.loads(msg.value)["event_id"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours to judge: the worker sends such messages to the DLQ
    return ids


class EventPublisher:
    """Sends a frame's epoch events through a kafka-python producer, recording them in the ledger."""

    def __init__(self, producer: Any, topic: str, ledger: Ledger, *,
                 id_reader: Callable[[str], set[str]] | None = None) -> None:
        """``id_reader(frame)`` returns the event ids already on the topic (used by :meth:`recover`)."""
        self.producer, self.topic, self.ledger = producer, topic, ledger
        self._id_reader = id_reader
        self.sent = 0

    @property
    def frame(self) -> str:
        return self.ledger.data["frame"]

    def is_published(self, epoch: str) -> bool:
        return epoch in self.ledger.data["published"]

    def recover(self) -> int:
        """Finish a publication a crash interrupted; returns the number of events sent now."""
        pending = self.ledger.data.get("pending")
        if not pending:
            return 0
        on_topic = self._id_reader(self.frame) if self._id_reader else set()
        todo = [e for e in pending if e["event_id"] not in on_topic]
        log.warning("frame %s: resuming an interrupted publication of %d event(s); %d already on %s",
                    self.frame, len(pending), len(pending) - len(todo), self.topic)
        self._send(todo)
        self._done(pending)
        return len(todo)

    def publish(self, events: Sequence[dict[str, Any]], ledger_update: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Commit ``events`` (and ``ledger_update``'s changes) as pending, send them, mark them published."""
        if self.ledger.data.get("pending"):
            raise RuntimeError("a publication is still pending; call recover() first")
        if ledger_update is not None:
            ledger_update(self.ledger.data)
        self.ledger.data["pending"] = list(events)
        self.ledger.save()
        self._send(events)
        self._done(events)

    def _send(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            t0 = time.perf_counter()
            self.producer.send(self.topic, key=event["frame"].encode(), value=encode_event(event)).get(timeout=60)
            self.sent += 1
            log.info("frame %s epoch %s: published %s (%.2f s)", event["frame"], event["epoch"], event["event_id"],
                     time.perf_counter() - t0)

    def _done(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            self.ledger.data["published"][event["epoch"]] = event["event_id"]
        self.ledger.data["pending"] = None
        self.ledger.save()
