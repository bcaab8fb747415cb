"""Two kinds of failure, one rule: the infrastructure's, and the event's.

- **Infrastructure** (Redis or Kafka unreachable or timing out, the machine out of memory):
  :func:`is_infrastructure` is true, and the worker exits for a restart without committing the
  event's offset, so nothing is lost.
- **The event's content**, at any depth (parsing, decoding its data, the bootstrap on its
  frame's data, scoring): the event goes to the DLQ with a reason and the worker goes on. A data
  object that is missing or fails with an I/O error may be a copy still arriving or a flaky
  mount: :func:`fetch_with_retries` retries it with backoff before it counts.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ladsdin.state.store import StoreUnavailable
from ladsdin.stream.contracts import EventError
from ladsdin.stream.objects import load_epoch_data

log = logging.getLogger(__name__)

#: Modules whose exceptions are the services' failures, never an event's.
_SERVICE_MODULES = ("redis", "kafka", "aiokafka", "faust", "mode")


def is_infrastructure(exc: BaseException) -> bool:
    """A failure of the services or the machine (Redis, Kafka, memory), never of an event's
    content: the worker exits for a restart instead of sending the event to the DLQ."""
    if isinstance(exc, (StoreUnavailable, MemoryError, ConnectionError, TimeoutError)):
        return True  # (a data object's I/O errors never get here: they are EventErrors by then)
    return type(exc).__module__.split(".")[0] in _SERVICE_MODULES


def fetch_with_retries(event: Mapping[str, Any], roots: Sequence[Path], expected: Mapping[str, Any] | None, retries: int,
                       backoff_s: float) -> np.ndarray:
    """The event's map (:func:`~ladsdin.stream.objects.load_epoch_data`), retried up to ``retries``
    times (waits ``backoff_s``, then doubling) while the failure is transient."""
    wait = backoff_s
    for attempt in range(retries + 1):
        try:
            return load_epoch_data(event, roots, expected)
        except EventError as exc:
            if not exc.transient or attempt == retries:
                raise
            log.warning("frame %s epoch %s: %s; retry %d of %d in %.1f s", event.get("frame"), event.get("epoch"), exc, attempt + 1,
                        retries, wait)
        time.sleep(wait)
        wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
