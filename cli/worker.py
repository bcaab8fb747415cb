"""``ladsdin worker``: run the streaming detector against LADSDIN_KAFKA_BOOTSTRAP and LADSDIN_REDIS_URL."""
from __future__ import annotations

import argparse
import sys

#: Kafka or Redis unreachable at start: the supervisor should restart the worker (EX_TEMPFAIL).
EXIT_INFRA = 75


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "worker",
        help="run the streaming worker (licsar.epochs.v1 -> ladsdin.alerts.v1, state in Redis)",
        description="Consume licsar.epochs.v1 from LADSDIN_KAFKA_BOOTSTRAP, keep per-pixel state in LADSDIN_REDIS_URL, "
        "and publish alerts and epoch summaries. Stop with SIGTERM/SIGINT; a restart resumes where it stopped.",
    )


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from ladsdin.state.store import StoreUnavailable
    from ladsdin.stream.worker import run_worker

    s = args.settings
    if not s.kafka_bootstrap or not s.redis_url:
        raise RuntimeError("the worker needs LADSDIN_KAFKA_BOOTSTRAP and LADSDIN_REDIS_URL (or run `ladsdin demo` for embedded ones)")
    try:
        return run_worker(s, s.kafka(), s.redis_url, loglevel=(args.log_level or s.log_level).lower())
    except StoreUnavailable as exc:
        print(f"ladsdin worker: {exc}; exiting for a restart (status {EXIT_INFRA})", file=sys.stderr)
    except KafkaError as exc:
        print(f"ladsdin worker: Kafka at {s.kafka_bootstrap} is unavailable ({type(exc).__name__}: {exc}); check that the broker "
              f"is running and that LADSDIN_KAFKA_BOOTSTRAP names it; exiting for a restart (status {EXIT_INFRA})", file=sys.stderr)
    return EXIT_INFRA
