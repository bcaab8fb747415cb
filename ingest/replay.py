"""``ladsdin ingest licsbas|mintpy FILE``: replay an existing time series as epoch events.

Unlike ``ladsdin publish`` (a one-off replay), ingest remembers what it published in the frame's
ledger, so running it again after new epochs were appended to the file, or after a crash, sends
only the epochs not yet published, each exactly once.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ladsdin.ingest.cube import epoch_events
from ladsdin.ingest.publisher import EventPublisher

log = logging.getLogger(__name__)


def replay_cube(cube: Any, publisher: EventPublisher, data_root: Path, source: str, *, rate: float = 0.0,
                date_from: str | None = None, date_to: str | None = None, inline: bool = False) -> int:
    """Publish every epoch of the normalised ``cube`` the ledger does not list; returns how many.

    ``source`` ('licsbas' or 'mintpy') goes into each event's ``quality.source``.
    """
    t0 = time.perf_counter()
    sent = 0
    for _, _, event in epoch_events(cube, data_root, date_from=date_from, date_to=date_to, inline=inline,
                                    skip=publisher.is_published, quality={"source": source}):
        if rate > 0:
            time.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
        publisher.publish([event])
        sent += 1
    return sent
