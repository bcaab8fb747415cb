"""The 10,000-event fuzz of issue 11: hostile events through the real processor on a real Valkey.

Runs ``tests/stream/test_fuzz.py`` (strategies and oracle in ``tests/stream/fuzz.py``) with
``--examples`` hypothesis examples from fresh random seeds, and prints what became of them: the
outcome and DLQ-reason counts, uncaught exceptions, and the verdict of the oracle (every event
rejected with a valid DLQ record or an exact no-op; no key of any frame changed). A failure
prints hypothesis's shrunk counterexample.

Usage: python benchmarks/fuzz_bench.py [--examples 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=10_000)
    args = ap.parse_args()
    stats = Path(tempfile.mkdtemp(prefix="fuzz-bench-")) / "stats.json"
    env = dict(os.environ, LADSDIN_FUZZ_EXAMPLES=str(args.examples), LADSDIN_FUZZ_RANDOM="1", LADSDIN_FUZZ_STATS=str(stats))
    print(f"date {time.strftime('%Y-%m-%d')}; command: {' '.join(sys.argv)}\n")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/stream/test_fuzz.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode:
        print(run.stdout[-6000:], run.stderr[-2000:])
    got = json.loads(stats.read_text()) if stats.exists() else {"statuses": {}, "reasons": {}}
    n = sum(got["statuses"].values())
    print("| events | rejected (DLQ, record valid) | exact no-ops | other outcomes | uncaught exceptions | changed keys | wall s |")
    print("|---|---|---|---|---|---|---|")
    other = n - got["statuses"].get("rejected", 0) - got["statuses"].get("duplicate", 0)
    verdict = "0" if run.returncode == 0 else "see above"
    print(f"| {n:,} | {got['statuses'].get('rejected', 0):,} | {got['statuses'].get('duplicate', 0):,} | {other} | {verdict} | {verdict} | {wall:.0f} |")
    print("\n| DLQ reason | events |\n|---|---|")
    for reason, k in sorted(got["reasons"].items(), key=lambda kv: -kv[1]):
        print(f"| {reason} | {k:,} |")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
