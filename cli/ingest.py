"""``ladsdin ingest {licsar,licsbas,mintpy}``: products on disk -> ``licsar.epochs.v1`` events, once each."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
#: exit status when Kafka is unreachable (EX_TEMPFAIL): restart later, nothing was lost
EXIT_INFRA = 75


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="publish new epochs from a LiCSAR frame directory (interferograms) or a LiCSBAS/MintPy time series",
        description="Publish every epoch not yet published as a licsar.epochs.v1 event on LADSDIN_KAFKA_BOOTSTRAP "
        "(LOS mm, positive towards the satellite). What was consumed and published is kept in a per-frame ledger "
        "(LADSDIN_INGEST_STATE_DIR, default <LADSDIN_DATA_ROOT>/<frame>/.ingest), so a rerun or a restart "
        "publishes each epoch exactly once.",
    )
    kinds = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    lic = kinds.add_parser("licsar", help="a LiCSAR frame directory: invert new interferograms epoch by epoch",
                           description="Invert each new epoch of FRAME_DIR (interferograms/D1_D2/D1_D2.geo.{unw,cc}.tif) "
                           "by coherence-weighted least squares against the stored epochs, flag loop-closure errors, "
                           "and publish it with its quality layers. Bad files are reported and skipped.")
    lic.add_argument("frame_dir", type=Path, help="LiCSAR frame directory, e.g. .../128A_05172_131313")
    lic.add_argument("--watch", action="store_true", help="keep polling for new interferograms (LADSDIN_INGEST_POLL_S)")
    lic.add_argument("--frame", default=None, help="frame ID when the directory name carries none")
    lic.add_argument("--ref", default=None, help="reference area 'x1:x2/y1:y2' (pixels) or 'lon1/lon2/lat1/lat2' "
                     "(degrees); default LADSDIN_INGEST_REF, else chosen automatically (fixed at the first run)")
    lic.add_argument("--since", default=None, help="ignore interferograms whose first date is before YYYY-MM-DD")
    lic.add_argument("--poll", type=float, default=None, help="--watch: seconds between scans (LADSDIN_INGEST_POLL_S)")
    lic.add_argument("--gap-sigma-mm", default=None, metavar="MM|off",
                     help="bridge per-pixel network gaps with 'no motion' of this std (LADSDIN_INGEST_GAP_SIGMA_MM, "
                     "default 20); 'off' leaves such pixels NaN, exactly as a batch inversion would")
    lic.add_argument("--checkpoint-every", type=int, default=None,
                     help="write the inversion checkpoint every N epochs (LADSDIN_INGEST_CHECKPOINT_EVERY, default 5); "
                     "a restart replays at most N-1 epochs")
    for name, helptext in (("licsbas", "a LiCSBAS cum.h5 / cum_filt.h5"), ("mintpy", "a geocoded MintPy timeseries.h5")):
        q = kinds.add_parser(name, help=f"replay {helptext} as epoch events",
                             description=f"Publish each epoch of {helptext} that this frame's ledger does not list yet.")
        q.add_argument("path", type=Path, help=helptext)
        q.add_argument("--frame", default=None, help="frame ID when the file carries none")
        q.add_argument("--track", choices=("A", "D"), default=None, help="track when the file carries none")
        q.add_argument("--rate", type=float, default=0.0, help="epochs per second (0 = as fast as possible)")


def _state_dir(settings: Any, frame: str, source: str) -> Path:
    base = Path(settings.ingest_state_dir) / frame if settings.ingest_state_dir else Path(settings.data_root) / frame / ".ingest"
    return base / source


def _frame_of(frame_dir: Path, frame: str | None) -> tuple[str, str]:
    from ladsdin.models.cube import parse_frame

    found = parse_frame(frame or frame_dir.resolve().name)
    if found is None:
        raise ValueError(f"no LiCSAR frame ID (TTTP_CCCCC_IIJJKK) in {frame or frame_dir.resolve().name!r}; "
                         "pass --frame 128A_05172_131313")
    return found


def _producer(settings: Any) -> Any:
    from ladsdin.stream.outbox import make_producer

    if not settings.kafka_bootstrap:
        raise RuntimeError("no broker: set LADSDIN_KAFKA_BOOTSTRAP=host:port")
    return make_producer(settings.kafka(), settings.max_message_bytes)


def _publisher(settings: Any, ledger: Any, producer: Any) -> Any:
    from ladsdin.ingest.publisher import EventPublisher, published_event_ids

    return EventPublisher(producer, settings.epochs_topic, ledger,
                          id_reader=lambda frame: published_event_ids(settings.kafka(), settings.epochs_topic, frame))


def _positive(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{flag} {text!r}: give a number of mm > 0, or 'off'")
    return value


def _run_licsar(args: argparse.Namespace, settings: Any) -> int:
    from ladsdin.ingest.ledger import Ledger
    from ladsdin.ingest.scheduler import IngestOptions, LicsarIngest

    frame, track = _frame_of(args.frame_dir, args.frame)
    since = dt.date.fromisoformat(args.since) if args.since else None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every {args.checkpoint_every}: must be >= 1")
    opts = IngestOptions.from_settings(settings, ref=args.ref, since=since, watch=args.watch,
                                       checkpoint_every=args.checkpoint_every)
    if args.gap_sigma_mm is not None:
        off = args.gap_sigma_mm.strip().lower() in ("off", "none", "null")
        opts = replace(opts, gap_sigma_mm=None if off else _positive(args.gap_sigma_mm, "--gap-sigma-mm"))
    stop = {"now": False}

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current epoch", signum)
        stop["now"] = True

    producer = _producer(settings)
    try:
        with Ledger(_state_dir(settings, frame, "licsar"), frame, track, "licsar") as ledger:
            ingest = LicsarIngest(args.frame_dir, frame, track, opts, ledger, _publisher(settings, ledger, producer),
                                  Path(settings.data_root))
            if args.watch:
                signal.signal(signal.SIGTERM, _stop)
                signal.signal(signal.SIGINT, _stop)
                ingest.run(args.poll or settings.ingest_poll_s, stop=lambda: stop["now"])
            else:
                reports = ingest.step()
                n_pub = sum(r.published for r in reports)
                print(f"{frame}: inverted {len(reports)} epoch(s), published {ingest.publisher.sent} event(s) "
                      f"({n_pub} new epoch map(s)); {len(ledger.data['published'])} epoch(s) published in all")
            for exc in ingest.errors:
                print(f"ladsdin ingest: error: {exc} [{exc.reason}] (skipped)", file=sys.stderr)
            return 2 if ingest.errors and not args.watch else 0
    finally:
        producer.close(30)


def _run_replay(args: argparse.Namespace, settings: Any) -> int:
    from ladsdin.ingest.ledger import Ledger
    from ladsdin.ingest.replay import replay_cube
    from ladsdin.formats import open_cube

    cube = open_cube(args.path, frame=args.frame, track=args.track)
    frame, track = str(cube.attrs["frame"]), str(cube.attrs["track"])
    producer = _producer(settings)
    try:
        with Ledger(_state_dir(settings, frame, args.source), frame, track, args.source) as ledger:
            publisher = _publisher(settings, ledger, producer)
            publisher.recover()
            n = replay_cube(cube, publisher, Path(settings.data_root), args.source, rate=args.rate)
            print(f"{frame}: published {n} new epoch(s) of {cube.sizes['time']} from {args.path}; "
                  f"{len(ledger.data['published'])} published in all")
    finally:
        producer.close(30)
    return 0


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    try:
        return _run_licsar(args, args.settings) if args.source == "licsar" else _run_replay(args, args.settings)
    except KafkaError as exc:
        # nothing is lost: the ledger holds what was not confirmed, and the next run resumes it
        print(f"ladsdin ingest: Kafka unavailable ({type(exc).__name__}: {exc}); rerun when it is back", file=sys.stderr)
        return EXIT_INFRA
