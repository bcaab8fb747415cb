"""A cube's epochs as ``licsar.epochs.v1`` events: the producer behind ``ladsdin publish``, the demo
and the LiCSBAS/MintPy replays (:mod:`ladsdin.ingest.replay`).

Each epoch's map (LOS mm, positive towards the satellite) is written under the data root as a
NetCDF object and referenced by its event, or carried inline for small frames.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ladsdin.stream.connection import KafkaConnection

log = logging.getLogger(__name__)


def epoch_events(cube: Any, data_root: Path, *, date_from: str | None = None, date_to: str | None = None, inline: bool = False,
                 skip: Callable[[str], bool] | None = None, quality: dict | None = None) -> Iterator[tuple[str, str, dict]]:
    """Yield (frame, epoch, event) for each epoch of a normalised cube in time order, writing
    each epoch's data object under ``data_root`` unless it travels inline. Epochs for which
    ``skip(epoch)`` is true are passed over before anything is written."""
    import numpy as np

    from ladsdin.stream.events import build_epoch_event, inline_payload
    from ladsdin.stream.objects import write_epoch_object

    frame, track = str(cube.attrs["frame"]), str(cube.attrs["track"])
    lat, lon = cube["lat"].values, cube["lon"].values
    for i, t in enumerate(cube["time"].values):
        epoch = str(np.datetime64(t, "D"))
        if (date_from and epoch < date_from) or (date_to and epoch > date_to) or (skip and skip(epoch)):
            continue
        d = np.ascontiguousarray(cube["displacement"][i].values, dtype=np.float32)  # one epoch: a lazy cube reads only it
        if inline:
            event = build_epoch_event(frame, track, epoch, lat, lon, inline=inline_payload(d), quality=quality)
        else:
            uri, sha = write_epoch_object(data_root, frame, epoch, d, lat, lon, track)
            event = build_epoch_event(frame, track, epoch, lat, lon, uri=uri, sha256=sha, quality=quality)
        yield frame, epoch, event


def publish_cube(cube: Any, settings: Any, bootstrap: str | KafkaConnection, *, rate: float = 0.0, date_from: str | None = None, date_to: str | None = None, inline: str = "never") -> int:
    """Publish every selected epoch; returns the number sent."""
    from ladsdin.stream.events import encode_event
    from ladsdin.stream.outbox import make_producer

    n_pix = cube.sizes["lat"] * cube.sizes["lon"]
    use_inline = inline == "always" or (inline == "auto" and n_pix <= settings.inline_max_pixels)
    producer = make_producer(bootstrap, settings.max_message_bytes)
    sent = 0
    t0 = time.perf_counter()
    try:
        for frame, epoch, event in epoch_events(cube, Path(settings.data_root), date_from=date_from, date_to=date_to, inline=use_inline):
            if rate > 0:
                time.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
            producer.send(settings.epochs_topic, key=frame.encode(), value=encode_event(event)).get(timeout=30)
            sent += 1
            log.info("published %s %s (%s)", frame, epoch, event["event_id"])
    finally:
        producer.flush(30)
        producer.close(30)
    return sent
