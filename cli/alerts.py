"""``ladsdin alerts``: print ``ladsdin.alerts.v1`` alerts as JSON lines (a reference consumer)."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ladsdin.stream.connection import KafkaConnection


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="print seismic-deformation alerts (GeoJSON Features) as JSON lines",
        description="Read ladsdin.alerts.v1 from the beginning and print one GeoJSON Feature per line, "
        "de-duplicated by id (D_s in LOS mm, positive towards the satellite).",
    )
    p.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    p.add_argument("--frame", default=None, help="only this frame")
    p.add_argument("--min-area-km2", type=float, default=0.0, help="only objects at least this large")
    p.add_argument("--idle-s", type=float, default=5.0, help="without --follow, stop after this long without a message")


def read_alerts(bootstrap: str | KafkaConnection, topic: str, *, follow: bool = False, idle_s: float = 5.0, frame: str | None = None, min_area_km2: float = 0.0) -> Iterator[dict[str, Any]]:
    """Yield alert features from the start of the topic, each id once.

    Reads every partition from offset 0 (:func:`ladsdin.stream.topics.read_topics`).
    """
    from ladsdin.stream.topics import read_topics

    seen: set[str] = set()
    for msg in read_topics(bootstrap, topic, idle_ms=1000 if follow else int(idle_s * 1000), follow=follow):
        if msg is None:
            continue
        feat = json.loads(msg.value)
        props = feat.get("properties", {})
        if props.get("id") in seen:
            continue
        seen.add(props.get("id"))
        if frame and props.get("frame") != frame:
            continue
        if props.get("area_km2", 0.0) < min_area_km2:
            continue
        yield feat


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    if not settings.kafka_bootstrap:
        raise RuntimeError("no broker: set LADSDIN_KAFKA_BOOTSTRAP=host:port")
    for feat in read_alerts(settings.kafka(), settings.alerts_topic, follow=args.follow, idle_s=args.idle_s, frame=args.frame, min_area_km2=args.min_area_km2):
        sys.stdout.write(json.dumps(feat) + "\n")
        sys.stdout.flush()
    return 0
