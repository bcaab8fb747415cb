"""The command line (``ladsdin.cli``, ``cli/``): ``ladsdin COMMAND``, one thin module per command.

Each module (:mod:`.demo`, :mod:`.simulate`, :mod:`.detect`, :mod:`.publish`, :mod:`.ingest`,
:mod:`.worker`, :mod:`.alerts`, :mod:`.frames`) has ``add_parser`` and ``run``; the work happens in the packages
they call. Heavy imports happen inside each ``run``, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ladsdin.cli import alerts, demo, detect, frames, ingest, publish, simulate, worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ladsdin",
        description="LADSDIn-stream: detect seismic deformation in LiCSAR InSAR time series "
        "(LOS mm, positive towards the satellite).",
    )
    parser.add_argument("--log-level", default=None, help="logging level (env LADSDIN_LOG_LEVEL, default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, simulate, detect, publish, ingest, worker, alerts, frames):
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ladsdin.stream.settings import Settings

    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.settings = settings
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Bad input and impossible requests end with one clear line, not a traceback.
        print(f"ladsdin {args.command}: error: {exc}", file=sys.stderr)
        return 2


