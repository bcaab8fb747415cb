"""``ladsdin publish CUBE``: send a cube's epochs, in order, as ``licsar.epochs.v1`` events."""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="publish a cube's epochs as licsar.epochs.v1 events (data by reference under LADSDIN_DATA_ROOT)",
        description="Write each epoch of CUBE to the data root as a NetCDF object and send its event (keyed by "
        "frame) to the epochs topic of LADSDIN_KAFKA_BOOTSTRAP. Displacement is LOS mm, positive towards the satellite.",
    )
    p.add_argument("cube", help="cube file (NetCDF/Zarr, LiCSBAS cum.h5, MintPy timeseries.h5)")
    p.add_argument("--rate", type=float, default=0.0, help="epochs per second (0 = as fast as possible)")
    p.add_argument("--from", dest="date_from", default=None, help="first epoch to publish, YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", default=None, help="last epoch to publish, YYYY-MM-DD")
    p.add_argument("--inline", choices=("auto", "always", "never"), default="never", help="carry the data in the event (small frames only)")
    p.add_argument("--frame", default=None, help="frame ID when the file carries none")
    p.add_argument("--track", choices=("A", "D"), default=None, help="track when the file carries none")


def epoch_events(cube: Any, data_root: Path, *, date_from: str | None = None, date_to: str | None = None, inline: bool = False,
                 skip: Callable[[str], bool] | None = None, quality: dict | None = None) -> Iterator[tuple[str, str, dict]]:
    """Yield (frame, epoch, event) for each epoch of a normalised cube in time order, writing
    each epoch's data object under ``data_root`` unless it travels inline. Epochs for which
    ``skip(epoch)`` is true are passed over before anything is written."""
    import numpy as np

    from .events import build_epoch_event, inline_payload, write_epoch_object

    frame, track = str(cube.attrs["frame"]), str(cube.attrs["track"])
    lat, lon = cube["lat"].values, cube["lon"].values
    for i, t in enumerate(cube["time"].values):
        epoch = str(np.datetime64(t, "D"))
        if (date_from and epoch < date_from) or (date_to and epoch > date_to) or (skip and skip(epoch)):
            continue
        d = np.ascontiguousarray(cube["displacement"].values[i], dtype=np.float32)
        if inline:
            event = build_epoch_event(frame, track, epoch, lat, lon, inline=inline_payload(d), quality=quality)
        else:
            uri, sha = write_epoch_object(data_root, frame, epoch, d, lat, lon, track)
            event = build_epoch_event(frame, track, epoch, lat, lon, uri=uri, sha256=sha, quality=quality)
        yield frame, epoch, event


def publish_cube(cube: Any, settings: Any, bootstrap: str, *, rate: float = 0.0, date_from: str | None = None, date_to: str | None = None, inline: str = "never") -> int:
    """Publish every selected epoch; returns the number sent."""
    from .events import encode_event
    from .outbox import make_producer

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


def run(args: argparse.Namespace) -> int:
    from .readers import open_cube

    settings = args.settings
    if not settings.kafka_bootstrap:
        raise RuntimeError("no broker: set LADSDIN_KAFKA_BOOTSTRAP=host:port (or run `ladsdin demo`, which starts an embedded one)")
    cube = open_cube(args.cube, frame=args.frame, track=args.track)
    n = publish_cube(cube, settings, settings.kafka_bootstrap, rate=args.rate, date_from=args.date_from, date_to=args.date_to, inline=args.inline)
    print(f"published {n} epoch(s) of {cube.attrs['frame']} to {settings.epochs_topic}")
    return 0
