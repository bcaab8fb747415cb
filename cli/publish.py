"""``ladsdin publish CUBE``: send a cube's epochs, in order, as ``licsar.epochs.v1`` events."""
from __future__ import annotations

import argparse


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


def run(args: argparse.Namespace) -> int:
    from ladsdin.formats import open_cube
    from ladsdin.ingest.cube import publish_cube

    settings = args.settings
    if not settings.kafka_bootstrap:
        raise RuntimeError("no broker: set LADSDIN_KAFKA_BOOTSTRAP=host:port (or run `ladsdin demo`, which starts an embedded one)")
    cube = open_cube(args.cube, frame=args.frame, track=args.track)
    n = publish_cube(cube, settings, settings.kafka(), rate=args.rate, date_from=args.date_from, date_to=args.date_to, inline=args.inline)
    print(f"published {n} epoch(s) of {cube.attrs['frame']} to {settings.epochs_topic}")
    return 0
