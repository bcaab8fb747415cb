"""``ladsdin alerts``: print ``ladsdin.alerts.v1`` alerts as JSON lines (a reference consumer)."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any


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


def read_alerts(bootstrap: str, topic: str, *, follow: bool = False, idle_s: float = 5.0, frame: str | None = None, min_area_km2: float = 0.0) -> Iterator[dict[str, Any]]:
    """Yield alert features from the start of the topic, each id once.

    Reads with manual partition assignment from offset 0 (no consumer group: a reader that
    prints must not steal partitions from others, and the embedded broker's "latest" offset is
    unreliable).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=int(idle_s * 1000) if not follow else 1000)
    parts = consumer.partitions_for_topic(topic) or {0}
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    seen: set[str] = set()
    try:
        while True:
            for msg in consumer:
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
            if not follow:
                return
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    settings = args.settings
    if not settings.kafka_bootstrap:
        raise RuntimeError("no broker: set LADSDIN_KAFKA_BOOTSTRAP=host:port")
    for feat in read_alerts(settings.kafka_bootstrap, settings.alerts_topic, follow=args.follow, idle_s=args.idle_s, frame=args.frame, min_area_km2=args.min_area_km2):
        sys.stdout.write(json.dumps(feat) + "\n")
        sys.stdout.flush()
    return 0
