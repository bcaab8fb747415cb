"""``ladsdin frames``: the frames in LADSDIN_REDIS_URL, and un-parking a frame whose bootstrap failed."""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "frames",
        help="list the frames in the state store, or reset a parked frame",
        description="Without arguments, print one JSON line per frame in LADSDIN_REDIS_URL: its last applied epoch, the "
        "epochs buffered towards its bootstrap and, for a parked frame (its bootstrap failed on its data), why. "
        "'reset FRAME' un-parks a frame: the next event retries the bootstrap on the kept buffer.",
    )
    p.add_argument("action", nargs="?", choices=("list", "reset"), default="list")
    p.add_argument("frame", nargs="?", default=None, help="the frame to reset")


def run(args: argparse.Namespace) -> int:
    from ladsdin.state.redis_store import RedisStateStore

    settings = args.settings
    if not settings.redis_url:
        raise RuntimeError("no state store: set LADSDIN_REDIS_URL=redis://host:port/0")
    store = RedisStateStore(settings.redis_url)
    if args.action == "reset":
        if not args.frame:
            raise ValueError("reset needs the FRAME to un-park")
        was = store.failed(args.frame)
        store.clear_failed(args.frame)
        print(f"{args.frame}: " + ("un-parked; replay its events from the DLQ" if was else "was not parked"))
        return 0
    for frame in store.frames():
        _, cursor = store.get_state(frame)
        print(json.dumps({"frame": frame, "cursor": cursor, "buffered_epochs": len(store.buffered_epoch_names(frame)),
                          "parked": store.failed(frame)}))
    return 0
